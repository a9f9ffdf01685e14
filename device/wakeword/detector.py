"""Wake-word detection: several openWakeWord-format heads on one incremental front end.

A head is any ONNX model taking (1, 16, 96) float embeddings and returning a
score in [0, 1] (openWakeWord's format; the project's own heads are trained by
`voxlens wakeword train`). Audio is 16 kHz mono int16 in 80 ms frames, fed to
the front end at int16 scale (see device/wakeword/frontend.py for why).

Decision rule per head: a detection fires when the score has been >= threshold
for `patience_frames` consecutive frames, and not again for `refractory_s`.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.wakeword.frontend import (
    EMBEDDING_DIM,
    FRAME_SAMPLES,
    HEAD_EMBEDDINGS,
    SAMPLE_RATE_HZ,
    FrontEnd,
    StreamingFeatures,
)
from voxlens.onnx import session as onnx_session

logger = logging.getLogger(__name__)

__all__ = ["Detection", "WakeHead", "WakeWordDetector", "WakeWordError", "FRAME_SAMPLES", "SAMPLE_RATE_HZ"]


class WakeWordError(ValueError):
    """A head file is missing, corrupt or of the wrong shape, or a frame is malformed; the message names which and the fix."""


HISTORY_S = 3.0      # audio kept for the verifier (it reads the last ~2 s before a fire)
_HISTORY_SAMPLES = int(HISTORY_S * SAMPLE_RATE_HZ)
_HISTORY_FRAMES = -(-_HISTORY_SAMPLES // FRAME_SAMPLES)


@dataclass(frozen=True)
class Detection:
    name: str        # head name: catalog name, or the file's stem
    score: float     # the head's score on the frame that fired
    sample: int      # end offset of that frame in the stream, in samples at 16 kHz (since start or reset())
    audio: np.ndarray | None = field(default=None, repr=False)    # the last HISTORY_S of int16 audio up to `sample`
    window: np.ndarray | None = field(default=None, repr=False)   # the (1, 16, 96) window the head scored


class WakeHead:
    """One openWakeWord-format head: checks the file and its input shape at load, scores (N, 16, 96) windows."""

    def __init__(self, name_or_path: str | Path) -> None:
        from models.catalog import ModelError, resolve

        try:
            path = resolve(str(name_or_path))
        except ModelError as exc:
            raise WakeWordError(f"wake-word head {name_or_path}: {exc}") from None
        if not Path(path).is_file():
            raise WakeWordError(f"wake-word head file {path} does not exist; give a path to an openWakeWord-format .onnx head or a catalog name (voxlens models list)")
        self.path = Path(path)
        self.name = self.path.stem if Path(path) == Path(name_or_path) else str(name_or_path)
        try:
            self._session = onnx_session(self.path)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise WakeWordError(
                f"wake-word head {self.path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:200]}); "
                f"retrain it with `voxlens wakeword train` or restore the file"
            ) from None
        inputs = self._session.get_inputs()
        shape = list(inputs[0].shape) if inputs else []
        if len(inputs) != 1 or len(shape) != 3 or shape[1:] != [HEAD_EMBEDDINGS, EMBEDDING_DIM]:
            raise WakeWordError(
                f"wake-word head {self.path} has input {[(i.name, i.shape) for i in inputs]}, expected one input of shape "
                f"(1, {HEAD_EMBEDDINGS}, {EMBEDDING_DIM}) (openWakeWord format); this file is not a wake-word head"
            )
        self._input = inputs[0].name
        self._batch_ok = not isinstance(shape[0], int) or shape[0] != 1
        meta = self._session.get_modelmeta().custom_metadata_map or {}
        self.phrase: str = meta.get("phrase") or " ".join(self.path.stem.replace("-", "_").split("_"))

    def score(self, windows: np.ndarray) -> np.ndarray:
        """(N, 16, 96) -> (N,) scores."""
        x = np.asarray(windows, dtype=np.float32)
        if self._batch_ok:
            return self._session.run(None, {self._input: x})[0].reshape(len(x), -1)[:, 0].astype(np.float32)
        return np.array([self._session.run(None, {self._input: w[np.newaxis]})[0].reshape(-1)[0] for w in x], np.float32)


@dataclass
class Trigger:
    """The decision rule for one head: `patience_frames` consecutive scores >= threshold, then `refractory_samples` of quiet.

    Shared by the live detector and the evaluator, so measured numbers mean what the device does.
    """
    threshold: float = 0.5
    patience_frames: int = 1
    refractory_samples: int = 2 * SAMPLE_RATE_HZ
    run_frames: int = 0
    last_fire_sample: int | None = None

    def update(self, score: float, sample: int) -> bool:
        self.run_frames = self.run_frames + 1 if score >= self.threshold else 0
        refractory = self.last_fire_sample is not None and sample - self.last_fire_sample < self.refractory_samples
        if self.run_frames >= self.patience_frames and not refractory:
            self.last_fire_sample = sample
            return True
        return False

    def reset(self) -> None:
        self.run_frames = 0
        self.last_fire_sample = None


def count_triggers(scores: np.ndarray, trigger: Trigger) -> list[int]:
    """Frame indices where `trigger` fires over a score sequence (one score per 80 ms frame)."""
    trigger.reset()
    return [i for i, s in enumerate(scores) if trigger.update(float(s), (i + 1) * FRAME_SAMPLES)]


@dataclass
class _HeadState:
    head: WakeHead
    trigger: Trigger


class WakeWordDetector:
    """Feed 80 ms int16 frames; get a Detection when a wake phrase ends. Not thread-safe (one stream)."""

    def __init__(
        self,
        heads: list[str | Path] | tuple[str | Path, ...] = ("hey-vox-lens",),
        threshold: float = 0.5,
        patience_frames: int = 1,
        refractory_s: float = 2.0,
        front: FrontEnd | None = None,
    ) -> None:
        if not heads:
            raise WakeWordError("no wake-word heads given; pass at least one catalog name or .onnx path (default: hey-vox-lens)")
        if not 0.0 < threshold < 1.0:
            raise WakeWordError(f"wake-word threshold {threshold} must be between 0 and 1")
        self.threshold = threshold
        self.patience_frames = max(1, int(patience_frames))
        self.refractory_samples = int(refractory_s * SAMPLE_RATE_HZ)
        self.front = front or FrontEnd()
        self._states = [
            _HeadState(WakeHead(h), Trigger(threshold, self.patience_frames, self.refractory_samples)) for h in heads
        ]
        self._features = StreamingFeatures(self.front)
        self._history: deque[np.ndarray] = deque(maxlen=_HISTORY_FRAMES)   # joined only when a head fires
        self.samples_seen = 0
        self.last_scores: dict[str, float] = {}

    @property
    def names(self) -> list[str]:
        return [s.head.name for s in self._states]

    @property
    def heads(self) -> list[WakeHead]:
        return [s.head for s in self._states]

    def reset(self) -> None:
        """Forget all audio (e.g. after a turn), as if the stream restarted after silence."""
        self._features.reset()
        self._history.clear()
        self.samples_seen = 0
        self.last_scores = {}
        for s in self._states:
            s.trigger.reset()

    def process(self, frame: np.ndarray) -> list[Detection]:
        frame = np.asarray(frame)
        if frame.shape != (FRAME_SAMPLES,) or frame.dtype != np.int16:
            raise WakeWordError(
                f"wake-word frames must be int16 arrays of {FRAME_SAMPLES} samples (80 ms at 16 kHz), got {frame.dtype} {frame.shape}"
            )
        self._features.push(frame)
        self._history.append(frame.copy())
        self.samples_seen += FRAME_SAMPLES
        window = self._features.window()
        found = []
        for s in self._states:
            score = float(s.head.score(window)[0])
            self.last_scores[s.head.name] = score
            if s.trigger.update(score, self.samples_seen):
                found.append(Detection(s.head.name, score, self.samples_seen, self.recent_audio(), window))
                logger.info("wake word %s at %.2f s (score %.3f)", s.head.name, self.samples_seen / SAMPLE_RATE_HZ, score)
        return found

    def forget_audio(self) -> None:
        """Drop the audio kept for the verifier (after a wake), so the next fire is never confirmed by the
        phrase that already woke the device (its 3 s window outlasts the 2 s refractory time)."""
        self._history.clear()

    def recent_audio(self) -> np.ndarray:
        """The last HISTORY_S of audio, zero-padded at the start after a reset (the stream began in silence)."""
        have = np.concatenate(self._history) if self._history else np.zeros(0, np.int16)
        return np.concatenate([np.zeros(max(0, _HISTORY_SAMPLES - len(have)), np.int16), have])[-_HISTORY_SAMPLES:]

    def process_audio(self, audio: np.ndarray) -> list[Detection]:
        """Whole int16 clip, frame by frame (the tail shorter than a frame is zero-padded)."""
        audio = np.asarray(audio, dtype=np.int16)
        pad = (-len(audio)) % FRAME_SAMPLES
        audio = np.concatenate([audio, np.zeros(pad, np.int16)])
        found: list[Detection] = []
        for i in range(0, len(audio), FRAME_SAMPLES):
            found.extend(self.process(audio[i:i + FRAME_SAMPLES]))
        return found
