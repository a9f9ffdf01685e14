"""Evaluate a wake-word head: false rejects over positive clips, false accepts per hour over negative audio.

Positives: each clip counts once; it is a hit when the head fires anywhere in
it (the clip follows silence and gets 1 s of silence after it, as a short
utterance in a live stream would). Negatives: every clip concatenated into one
continuous stream, scored frame by frame with the same decision rule
(`device.wakeword.Trigger`) the live detector uses. Features are computed in
batches, which the tests prove equal to the streaming path.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from device.wakeword import SAMPLE_RATE_HZ, Trigger, WakeHead, WakeWordError, count_triggers
from device.wakeword_frontend import FRAME_SAMPLES, HEAD_EMBEDDINGS, FrontEnd

logger = logging.getLogger(__name__)

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


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
    emb = np.concatenate([np.repeat(fe.silence_embedding()[np.newaxis], HEAD_EMBEDDINGS - 1, axis=0),
                          fe.embeddings_batch(audio[np.newaxis, : n * FRAME_SAMPLES])[0]])
    scores = np.zeros(n, np.float32)
    for s in range(0, n, 512):
        idx = np.arange(s, min(n, s + 512))
        windows = np.stack([emb[i:i + HEAD_EMBEDDINGS] for i in idx])
        scores[idx] = head.score(windows)
    return scores


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
    positive_max_score_percentiles: dict[str, float] = field(default_factory=dict)
    negative_frame_score_percentiles: dict[str, float] = field(default_factory=dict)
    sweep: list[dict[str, float]] = field(default_factory=list)   # FRR and FA/h at other thresholds
    missed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _percentiles(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {}
    return {f"p{p}": round(float(np.percentile(x, p)), 4) for p in (1, 5, 25, 50, 75, 95, 99)} | {"max": round(float(x.max()), 4)}


def evaluate(model: str | Path, positives: list[Path], negative_audio: np.ndarray, threshold: float = 0.5,
             patience_frames: int = 1, refractory_s: float = 2.0, fe: FrontEnd | None = None) -> EvalResult:
    fe = fe or FrontEnd()
    head = WakeHead(model)
    refractory = int(refractory_s * SAMPLE_RATE_HZ)
    pad = np.zeros(SAMPLE_RATE_HZ, np.int16)
    pos_scores = [stream_scores(fe, head, np.concatenate([read_wav_16k(p), pad])) for p in positives]
    neg_scores = stream_scores(fe, head, negative_audio)
    hours = len(negative_audio) / SAMPLE_RATE_HZ / 3600.0

    def at(th: float) -> tuple[int, int]:
        misses = sum(1 for s in pos_scores if not count_triggers(s, Trigger(th, patience_frames, refractory)))
        return misses, len(count_triggers(neg_scores, Trigger(th, patience_frames, refractory)))

    misses, fas = at(threshold)
    sweep = []
    for th in THRESHOLDS:
        m, f = at(th)
        sweep.append({"threshold": th, "frr": round(m / max(1, len(positives)), 4), "fa_per_hour": round(f / hours, 3) if hours else 0.0})
    missed = [p.name for p, s in zip(positives, pos_scores) if not count_triggers(s, Trigger(threshold, patience_frames, refractory))]
    return EvalResult(
        model=str(model), threshold=threshold, patience_frames=patience_frames,
        positives=len(positives), false_rejects=misses, frr=round(misses / max(1, len(positives)), 4),
        negative_hours=round(hours, 4), false_accepts=fas, fa_per_hour=round(fas / hours, 3) if hours else 0.0,
        positive_max_score_percentiles=_percentiles(np.array([s.max() if len(s) else 0.0 for s in pos_scores])),
        negative_frame_score_percentiles=_percentiles(neg_scores),
        sweep=sweep, missed=missed,
    )


def load_negatives(folders: list[str | Path], min_hours: float = 0.0) -> np.ndarray:
    """All WAVs under the folders, concatenated (then looped up to `min_hours`, if given) into one stream."""
    clips = [read_wav_16k(p) for folder in folders for p in wav_files(folder)]
    audio = np.concatenate(clips)
    if min_hours and len(audio) < min_hours * 3600 * SAMPLE_RATE_HZ:
        reps = int(np.ceil(min_hours * 3600 * SAMPLE_RATE_HZ / len(audio)))
        audio = np.tile(audio, reps)
    return audio
