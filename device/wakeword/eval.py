"""Evaluate a wake-word head, alone and with its verifier: false rejects per clip, false accepts per hour.

Positives: each clip counts once; it is a hit when the head fires anywhere in
it (the clip follows silence and gets 1 s of silence after it, as a short
utterance in a live stream would) and, with a verifier, the verifier accepts
that fire. Negatives: each file is a stream from silence, scored frame by
frame with the decision rule the live detector uses (`Trigger`); every fire
that the verifier accepts is a false accept. Features are computed in batches
(the tests prove them equal to the streaming path) and cached per file, so a
sweep over heads, thresholds and verifiers costs the front end once.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from device.wakeword.detector import HISTORY_S, SAMPLE_RATE_HZ, Trigger, WakeHead, WakeWordError, count_triggers
from device.wakeword.features_cache import EmbeddingCache, windows_of
from device.wakeword.frontend import FRAME_SAMPLES, FrontEnd

logger = logging.getLogger(__name__)

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
BARS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)   # the STT verifier's similarity bar, swept at the threshold


def read_wav_16k(path: str | Path) -> np.ndarray:
    """Any WAV -> 16 kHz mono int16, as the live device reads it; errors name the file."""
    from device.audio import AudioFormatError, read_wav

    try:
        return read_wav(path)
    except (AudioFormatError, OSError) as exc:
        raise WakeWordError(f"{exc}") from None


def wav_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise WakeWordError(f"{folder} is not a folder of WAV files")
    files = sorted(folder.rglob("*.wav"))
    if not files:
        raise WakeWordError(f"{folder} holds no .wav files")
    return files


def stream_scores(fe: FrontEnd, head: WakeHead, audio: np.ndarray) -> np.ndarray:
    """Per-80 ms-frame scores of `audio` streamed from silence (batched; equal to WakeWordDetector's)."""
    n = len(audio) // FRAME_SAMPLES
    if n == 0:
        return np.zeros(0, np.float32)
    return clip_scores(head, fe.embeddings_batch(audio[np.newaxis, : n * FRAME_SAMPLES])[0], fe.silence_embedding())


def clip_scores(head: WakeHead, emb: np.ndarray, silence: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Per-frame scores of one stream's embeddings (silence before it), in bounded-memory chunks."""
    out = np.zeros(len(emb), np.float32)
    for s in range(0, len(emb), chunk):
        out[s:s + chunk] = head.score(windows_of(emb, silence, start=s, stop=s + chunk))
    return out


@dataclass
class EvalResult:
    model: str
    threshold: float
    patience_frames: int
    positives: int
    false_rejects: int
    frr: float
    negative_hours: float
    false_accepts: int
    fa_per_hour: float
    verifier: str = "none"
    positive_max_score_percentiles: dict[str, float] = field(default_factory=dict)
    negative_frame_score_percentiles: dict[str, float] = field(default_factory=dict)
    sweep: list[dict[str, float]] = field(default_factory=list)   # FRR and FA/h at other thresholds, both stages
    bar_sweep: list[dict[str, float]] = field(default_factory=list)   # STT verifier: FRR and FA/h at other similarity bars
    missed: list[str] = field(default_factory=list)
    verifier_ms: dict[str, float] = field(default_factory=dict)  # cost per fire (p50/p90/max)
    false_accept_texts: list[str] = field(default_factory=list)  # what the STT verifier heard on accepted negatives
    negative_verifier_top: list[tuple[float, str]] = field(default_factory=list)  # the verifier's highest scores on negatives

    def to_dict(self) -> dict:
        return asdict(self)


def _percentiles(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {}
    return {f"p{p}": round(float(np.percentile(x, p)), 4) for p in (1, 5, 25, 50, 75, 95, 99)} | {"max": round(float(x.max()), 4)}


class _Fires:
    """Fires of one head over a set of clips, with the verifier's verdict on each (asked once per fire)."""

    def __init__(self, clips: list[np.ndarray], embs: list[np.ndarray], scores: list[np.ndarray], silence: np.ndarray,
                 verify: Callable | None, second_look_frames: int = 0) -> None:
        self.clips, self.embs, self.scores, self.silence, self.verify = clips, embs, scores, silence, verify
        self.second_look_frames = second_look_frames
        self._verdicts: dict[tuple[int, int], object] = {}

    def accepted(self, c: int, frame: int, threshold: float, bar: float | None = None) -> bool:
        """The verifier's decision on a fire, with the device's second look when the first says no.
        `bar`: decide by the verdict's score against this bar instead (a sweep without re-verifying)."""
        def yes(v) -> bool:
            return v.accepted if bar is None else v.score >= bar

        if yes(self.verdict(c, frame)):
            return True
        again = second_look_frame(self.scores[c], frame, threshold, self.second_look_frames)
        return again is not None and yes(self.verdict(c, again))

    def verdict(self, c: int, frame: int):
        key = (c, frame)
        if key not in self._verdicts:
            end = (frame + 1) * FRAME_SAMPLES   # the audio and window the live detector hands its verifier
            window = windows_of(self.embs[c], self.silence, start=frame, stop=frame + 1)
            self._verdicts[key] = self.verify(self.clips[c][max(0, end - int(HISTORY_S * SAMPLE_RATE_HZ)):end], window)
        return self._verdicts[key]

    def count(self, trigger: Trigger, verified: bool, bar: float | None = None) -> tuple[int, list[int]]:
        """(number of fires, indices of clips with at least one) at this trigger, before or after verification."""
        total, hit = 0, []
        for c, s in enumerate(self.scores):
            fires = count_triggers(s, trigger)
            if verified and self.verify is not None:
                fires = [f for f in fires if self.accepted(c, f, trigger.threshold, bar)]
            total += len(fires)
            if fires:
                hit.append(c)
        return total, hit

    def verdicts(self) -> list:
        return list(self._verdicts.values())


def second_look_frame(scores: np.ndarray, fire: int, threshold: float, max_frames: int) -> int | None:
    """Where a rejected fire is verified again: the frame the first stage's score falls below its threshold
    (the phrase has ended), at most `max_frames` after the fire; None when there is no later frame to look at.

    Why: the first stage crosses its threshold before a slow speaker has finished the phrase, so the
    verifier hears "jar-" instead of "jarvis" and says no; shared with the live listener."""
    if max_frames <= 0:
        return None
    last = min(len(scores) - 1, fire + max_frames)
    for frame in range(fire + 1, last + 1):
        if scores[frame] < threshold:
            return frame
    return last if last > fire else None


def evaluate(model: str | Path, positives: list[Path], negatives: list[np.ndarray] | np.ndarray, threshold: float = 0.5,
             patience_frames: int = 1, refractory_s: float = 2.0, fe: FrontEnd | None = None,
             verifier=None, thresholds: tuple[float, ...] = THRESHOLDS, cache=None,
             second_look_s: float = 0.0) -> EvalResult:
    """Score `model` (and `verifier`, when given) on positive files and negative clips (one stream each)."""
    fe = fe or FrontEnd()
    cache = cache or EmbeddingCache(fe)
    head = WakeHead(model)
    silence = fe.silence_embedding()
    refractory = int(refractory_s * SAMPLE_RATE_HZ)
    pad = np.zeros(SAMPLE_RATE_HZ, np.int16)
    if isinstance(negatives, np.ndarray):
        negatives = [negatives]
    pos_audio = [np.concatenate([read_wav_16k(p), pad]) for p in positives]
    pos_emb = [cache.embeddings(a) for a in pos_audio]
    neg_emb = [cache.embeddings(a) for a in negatives]
    pos_scores = [clip_scores(head, e, silence) for e in pos_emb]
    neg_scores = [clip_scores(head, e, silence) for e in neg_emb]
    verify = verifier.verify if verifier is not None else None
    look = int(round(second_look_s * SAMPLE_RATE_HZ / FRAME_SAMPLES))
    pos = _Fires(pos_audio, pos_emb, pos_scores, silence, verify, look)
    neg = _Fires(list(negatives), neg_emb, neg_scores, silence, verify, look)
    hours = sum(len(a) for a in negatives) / SAMPLE_RATE_HZ / 3600.0
    n_pos = max(1, len(positives))

    def at(th: float, verified: bool) -> tuple[int, int, list[int]]:
        trig = Trigger(th, patience_frames, refractory)
        _, hit = pos.count(trig, verified)
        fas, _ = neg.count(trig, verified)
        return len(positives) - len(hit), fas, hit

    misses, fas, hit = at(threshold, verifier is not None)
    sweep = []
    for th in thresholds:
        row: dict[str, float] = {"threshold": th}
        m, f, _ = at(th, False)
        row |= {"frr": round(m / n_pos, 4), "fa_per_hour": round(f / hours, 3) if hours else 0.0, "misses": m, "fa": f}
        if verifier is not None:
            m, f, _ = at(th, True)
            row |= {"frr_verified": round(m / n_pos, 4), "fa_per_hour_verified": round(f / hours, 3) if hours else 0.0,
                    "misses_verified": m, "fa_verified": f}
        sweep.append(row)
    bar_sweep = []
    if getattr(verifier, "kind", "") == "stt":
        trig = Trigger(threshold, patience_frames, refractory)
        for bar in BARS:
            _, h = pos.count(trig, True, bar)
            f, _ = neg.count(trig, True, bar)
            bar_sweep.append({"bar": bar, "misses": len(positives) - len(h), "fa": f,
                              "frr": round((len(positives) - len(h)) / n_pos, 4),
                              "fa_per_hour": round(f / hours, 3) if hours else 0.0})
    hit_set = set(hit)
    result = EvalResult(
        model=str(model), threshold=threshold, patience_frames=patience_frames,
        positives=len(positives), false_rejects=misses, frr=round(misses / n_pos, 4),
        negative_hours=round(hours, 4), false_accepts=fas, fa_per_hour=round(fas / hours, 3) if hours else 0.0,
        verifier=getattr(verifier, "kind", "none"),
        positive_max_score_percentiles=_percentiles(np.array([s.max() if len(s) else 0.0 for s in pos_scores])),
        negative_frame_score_percentiles=_percentiles(np.concatenate(neg_scores) if neg_scores else np.zeros(0)),
        sweep=sweep, bar_sweep=bar_sweep, missed=[p.name for i, p in enumerate(positives) if i not in hit_set],
    )
    if verifier is not None:
        ms = np.array([v.ms for v in pos.verdicts() + neg.verdicts()])
        result.verifier_ms = {"fires": int(len(ms)), "p50": round(float(np.percentile(ms, 50)), 1),
                              "p90": round(float(np.percentile(ms, 90)), 1), "max": round(float(ms.max()), 1)} if len(ms) else {}
        top = sorted(((round(v.score, 3), v.text) for v in neg.verdicts()), reverse=True)[:15]
        result.negative_verifier_top = top
        trig = Trigger(threshold, patience_frames, refractory)
        result.false_accept_texts = [neg.verdict(c, f).text for c, s in enumerate(neg_scores)
                                     for f in count_triggers(s, trig) if neg.accepted(c, f, threshold)][:50]
    return result
