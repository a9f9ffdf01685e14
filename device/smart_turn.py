"""Semantic end of turn: Pipecat's Smart Turn v3 says whether the user has finished, from how they spoke.

Why: silence alone cannot tell "what's the weather in … Lisbon" from "what's the weather in Lisbon.";
waiting 400 ms after every phrase costs every turn, cutting at 150 ms cuts people off. Smart Turn (a
Whisper-tiny encoder with a classifier, int8 ONNX, 8.7 MB) reads the prosody and words of the last 8 s
and gives P(turn complete); the endpointer asks it after a short silence (device/vad.py).

Input contract (pipecat 1.14 `local_smart_turn_v3.py`): 16 kHz float audio, the last 8 s, zero-padded
at the front; Whisper log-mel features (80 x 800) computed with waveform normalisation; one input
`input_features` [1, 80, 800]; output [1, 1] sigmoid probability. The feature code below is a numpy port
of Pipecat's vendored `_whisper_features.py` (itself from transformers' WhisperFeatureExtractor, Apache-2.0),
so neither pipecat nor transformers is a dependency.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.audio import SAMPLE_RATE_HZ
from voxlens.config import VadConfig
from voxlens.onnx import session as onnx_session
from voxlens.timing import Timings

log = logging.getLogger(__name__)

WINDOW_S = 8
N_FFT, HOP, N_MELS = 400, 160, 80
MODEL_NAME = "smart-turn-v3"


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.atleast_1d(np.asarray(f, dtype=np.float64))
    mel = 3.0 * f / 200.0
    hi = f >= 1000.0
    mel[hi] = 15.0 + np.log(f[hi] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    f = 200.0 * m / 3.0
    hi = m >= 15.0
    f[hi] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[hi] - 15.0))
    return f


def _mel_filters() -> np.ndarray:
    """Slaney-normalised triangular filters, (201 frequency bins, 80 mels), as Whisper's feature extractor."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0)[0], _hz_to_mel(SAMPLE_RATE_HZ / 2)[0], N_MELS + 2))
    fft_freqs = np.linspace(0, SAMPLE_RATE_HZ // 2, N_FFT // 2 + 1)
    slopes = edges[None, :] - fft_freqs[:, None]
    diff = np.diff(edges)
    filters = np.maximum(0.0, np.minimum(-slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


_FILTERS = _mel_filters()
_HANN = np.hanning(N_FFT + 1)[:-1]   # periodic, as torch.hann_window


def features(audio: np.ndarray) -> np.ndarray:
    """The model's input for an utterance: [1, 80, 800] float32 log-mel of its last 8 s (int16 or float audio)."""
    x = np.asarray(audio)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    n = WINDOW_S * SAMPLE_RATE_HZ
    x = x[-n:] if len(x) >= n else np.pad(x, (n - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    log_spec = np.log10(np.maximum(1e-10, _FILTERS.T @ power.T))[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)[None]


@dataclass(frozen=True)
class TurnVerdict:
    probability: float              # P(the turn is complete)
    complete: bool                  # probability >= the threshold
    timings: Timings = field(default_factory=Timings)   # turn.features, turn.infer


class SmartTurn:
    """Smart Turn v3 on the CPU. Load once per process; `predict` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, model: str | Path = MODEL_NAME, *, threshold: float = 0.5, threads: int = 1) -> None:
        from models.catalog import ModelError, resolve

        path = Path(resolve(str(model)))
        fix = f"voxlens models prepare {MODEL_NAME}" if str(model) == MODEL_NAME else "check [vad] smart_turn_model"
        if not path.is_file():
            raise ModelError(f"Smart Turn model {path} does not exist; fix: {fix}")
        try:
            self._session = onnx_session(path, threads=threads, log_level=4)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for corrupt files
            raise ModelError(f"Smart Turn model {path} cannot be loaded ({type(exc).__name__}); fix: {fix}") from None
        self.path = path
        self.threshold = threshold

    def predict(self, audio: np.ndarray) -> TurnVerdict:
        """Is the turn that `audio` (16 kHz, the utterance so far, trailing silence included) complete?"""
        timings = Timings()
        with timings.measure("turn.features"):
            x = features(audio)
        with timings.measure("turn.infer"):
            out = self._session.run(None, {"input_features": x})
        p = float(np.ravel(out[0])[0])
        return TurnVerdict(p, p >= self.threshold, timings)


def load_smart_turn(model: str | Path = MODEL_NAME, *, threshold: float = 0.5, threads: int = 1) -> SmartTurn | None:
    """The model, or None with a warning naming the file and the fix: the device then ends turns on silence alone."""
    from models.catalog import ModelError

    try:
        return SmartTurn(model, threshold=threshold, threads=threads)
    except ModelError as exc:
        log.warning("Smart Turn (semantic end of turn) is off: %s; ending turns on silence alone (vad.silence_ms) "
                    "until it is fixed", exc)
        return None


def from_config(cfg: VadConfig) -> SmartTurn | None:
    """The configured model when `vad.smart_turn` is on and it loads; else None (silence-based endpointing)."""
    if not cfg.smart_turn:
        return None
    return load_smart_turn(cfg.smart_turn_model, threshold=cfg.smart_turn_threshold)
