"""The second stage: every first-stage fire is confirmed before the device wakes.

Why: the always-on head is small and cheap (about 2 % of a core) and has to be
generous to catch real voices it never heard; ordinary speech then fires it
tens of times an hour. A verifier runs only on those fires, so it may cost a
hundred times more per decision. Two are built and measured
(models/wakeword/README.md):

- `stt`: the device's own Whisper transcribes the last ~3 s (prompted with the
  phrase, so a rare name is spelled one way); the fire stands when the
  transcript's espeak-ng phonemes end with the phrase's phonemes
  (device/wakeword/phonetic.py). It reuses the loaded STT model: no memory.
- `head`: a second, larger network over the same front-end window, trained on
  the first head's mined hard negatives (openWakeWord's verifier approach).
  Its file sits beside the head as `<head>.verifier.onnx`.

A verifier that cannot be loaded never stops the device from waking: the
loader logs a warning naming the file and the fix, and the first stage runs alone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from device.wakeword.detector import SAMPLE_RATE_HZ, WakeHead, WakeWordError
from device.wakeword.phonetic import phonemes, similarity
from voxlens.timing import monotonic

logger = logging.getLogger(__name__)

KINDS = ("stt", "head", "none")
STT_WINDOW_S = 3.0       # the last 3 s before the fire: 2 s cut the start of slow speakers' phrases (README)
DEFAULT_MIN_SIMILARITY = 0.75
TAIL_S = 1.5             # the phrase must still be sounding this close to the fire
TAIL_DROP_DB = 25.0      # ... no quieter than this below the loudest part of the window
DEFAULT_HEAD_THRESHOLD = 0.5


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    score: float          # phonetic similarity (stt) or the second head's score
    verifier: str         # "stt" | "head"
    text: str = ""        # what the STT verifier heard
    ms: float = 0.0       # how long the decision took

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "score": round(self.score, 3), "verifier": self.verifier,
                "text": self.text, "ms": round(self.ms, 1)}


class Verifier(Protocol):
    kind: str

    def verify(self, audio: np.ndarray, window: np.ndarray | None = None) -> Verdict: ...


class SttVerifier:
    """Whisper on the last `window_s` of audio, phonetic match against the phrase."""

    kind = "stt"

    def __init__(self, stt, phrase: str, min_similarity: float = DEFAULT_MIN_SIMILARITY,
                 window_s: float = STT_WINDOW_S, clock: Callable[[], float] = monotonic) -> None:
        self.stt = stt
        self.phrase = phrase
        self.target = phonemes(phrase)
        if not self.target:
            raise WakeWordError(f"wake phrase {phrase!r} has no phonemes; give the phrase as words (wakeword.phrases)")
        self.min_similarity = min_similarity
        self.window_s = window_s
        self.clock = clock
        # The phrase as Whisper's prompt: it spells a rare name the way we match it ("chatterbox", not
        # "chatter bucks"); measured to lift real positives without lifting ordinary speech (README).
        self.prompt = phrase.strip().capitalize() + "."

    def score(self, audio: np.ndarray) -> tuple[float, str]:
        clip = np.asarray(audio)[-int(self.window_s * SAMPLE_RATE_HZ):]
        if not sounding_at_the_end(clip):
            return 0.0, ""
        text = self.stt.transcribe(clip, prompt=self.prompt).text
        return similarity(self.target, text), text

    def verify(self, audio: np.ndarray, window: np.ndarray | None = None) -> Verdict:
        t0 = self.clock()
        score, text = self.score(audio)
        return Verdict(score >= self.min_similarity, score, self.kind, text, (self.clock() - t0) * 1000)


def sounding_at_the_end(clip: np.ndarray, tail_s: float = TAIL_S, drop_db: float = TAIL_DROP_DB) -> bool:
    """Is there sound in the last `tail_s` within `drop_db` of the loudest 50 ms of the clip?

    Why: a fire is the end of a phrase, so the phrase is at the end of the window. Whisper given the
    phrase as its prompt writes the prompt back on silence ("Hey chatterbox." on a quiet room), so
    audio that has gone quiet before the fire is refused before it is transcribed."""
    block = SAMPLE_RATE_HZ // 20
    x = np.asarray(clip, dtype=np.float64)
    n = len(x) // block
    if n == 0:
        return False
    rms = np.sqrt(np.mean(x[: n * block].reshape(n, block) ** 2, axis=1) + 1e-9)
    tail = max(1, int(tail_s * 20))
    return 20 * np.log10(rms[-tail:].max() / rms.max()) > -drop_db and rms.max() > 3.0  # > ~ -80 dBFS: not digital silence


class HeadVerifier:
    """A second openWakeWord-format head over the same (16, 96) window as the first."""

    kind = "head"

    def __init__(self, path: str | Path, threshold: float = DEFAULT_HEAD_THRESHOLD,
                 clock: Callable[[], float] = monotonic) -> None:
        self.head = WakeHead(path)
        self.threshold = threshold
        self.clock = clock

    def verify(self, audio: np.ndarray, window: np.ndarray | None = None) -> Verdict:
        if window is None:
            raise WakeWordError("the head verifier needs the first stage's (1, 16, 96) window")
        t0 = self.clock()
        score = float(self.head.score(window)[0])
        return Verdict(score >= self.threshold, score, self.kind, "", (self.clock() - t0) * 1000)


def verifier_path(head: WakeHead) -> Path:
    """Where a head's second-stage network lives: beside it, `<stem>.verifier.onnx`."""
    return head.path.with_name(head.path.stem + ".verifier.onnx")


def load_verifier(kind: str, head: WakeHead, stt_factory: Callable[[], object] | None = None, *,
                  min_similarity: float = DEFAULT_MIN_SIMILARITY, head_threshold: float = DEFAULT_HEAD_THRESHOLD,
                  phrase: str = "", window_s: float = STT_WINDOW_S) -> Verifier | None:
    """The verifier for one head, or None (first stage alone) when it is off or cannot be loaded.

    Never raises for a missing or corrupt verifier: a device that cannot confirm
    still wakes; the warning says which file and what to run.
    """
    if kind not in KINDS:
        raise WakeWordError(f"wakeword.verifier is {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "none":
        return None
    if kind == "head":
        path = verifier_path(head)
        try:
            return HeadVerifier(path, head_threshold)
        except WakeWordError as exc:
            logger.warning("wake word %s: second-stage verifier unavailable, running the first stage alone: %s "
                           "(fix: voxlens wakeword train %r -o %s, which writes the verifier beside the head, "
                           "or set wakeword.verifier = \"stt\")", head.name, exc, head.phrase, head.path)
            return None
    phrase = phrase or head.phrase
    try:
        stt = stt_factory() if stt_factory else None
        if stt is None:
            raise WakeWordError("no speech-to-text model to verify with")
        return SttVerifier(stt, phrase, min_similarity, window_s)
    except Exception as exc:  # a broken STT model or phonemizer must not stop the device from waking
        logger.warning("wake word %s: STT verifier unavailable, running the first stage alone: %s "
                       "(fix: voxlens models verify)", head.name, exc)
        return None
