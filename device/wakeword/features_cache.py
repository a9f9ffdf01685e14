"""Front-end embeddings of real audio files, computed once and kept on disk keyed by content hash.

Why: an hour of real negatives costs minutes of front-end time on two cores,
while a retrain (another phrase, another seed, a mining round) needs the same
numbers again. The key is the sha256 of the 16 kHz int16 samples plus a
front-end version, so a renamed file hits the cache and an edited one does not.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from device.wakeword.frontend import EMBEDDING_DIM, FRAME_SAMPLES, HEAD_EMBEDDINGS, FrontEnd

logger = logging.getLogger(__name__)

FRONTEND_VERSION = "oww-v1-int16-perframe-clip"   # bump when device/wakeword/frontend.py changes its numbers


def cache_dir() -> Path:
    """`$VOXLENS_WAKEWORD_CACHE`, else `wakeword-features/` in the model cache."""
    import os

    from models.catalog import default_cache_dir

    env = os.environ.get("VOXLENS_WAKEWORD_CACHE", "").strip()
    return Path(env) if env else default_cache_dir() / "wakeword-features"


class EmbeddingCache:
    """`embeddings(audio)` -> (frames, 96), from disk when this exact audio was seen before."""

    def __init__(self, front: FrontEnd, folder: Path | None = None) -> None:
        self.front = front
        self.folder = Path(folder) if folder else cache_dir()
        self.hits = 0
        self.misses = 0

    def key(self, audio: np.ndarray) -> str:
        h = hashlib.sha256(FRONTEND_VERSION.encode())
        h.update(np.ascontiguousarray(audio, dtype=np.int16).tobytes())
        return h.hexdigest()

    def embeddings(self, audio: np.ndarray) -> np.ndarray:
        """One embedding per whole 80 ms frame of `audio` streamed from silence (as the live detector sees it)."""
        audio = np.asarray(audio, dtype=np.int16)
        n = len(audio) // FRAME_SAMPLES
        if n == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        path = self.folder / f"{self.key(audio)}.npy"
        if path.is_file():
            try:
                emb = np.load(path)
                if emb.shape == (n, EMBEDDING_DIM):
                    self.hits += 1
                    return emb
            except (OSError, ValueError) as exc:
                logger.warning("feature cache file %s is unreadable (%s); recomputing it", path, exc)
        emb = self.front.embeddings_batch(audio[np.newaxis, : n * FRAME_SAMPLES])[0]
        self.misses += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial.npy")
        np.save(tmp, emb.astype(np.float32))
        tmp.replace(path)
        return emb


def windows_of(emb: np.ndarray, silence: np.ndarray, stride: int = 1, start: int = 0, stop: int | None = None) -> np.ndarray:
    """The (16, 96) head windows after frames start..stop of a file's embeddings (silence before it), every `stride`."""
    padded = np.concatenate([np.repeat(silence[np.newaxis], HEAD_EMBEDDINGS - 1, axis=0), emb])
    idx = np.arange(start, len(emb) if stop is None else min(stop, len(emb)), stride)
    if not len(idx):
        return np.zeros((0, HEAD_EMBEDDINGS, EMBEDDING_DIM), np.float32)
    view = np.lib.stride_tricks.sliding_window_view(padded, HEAD_EMBEDDINGS, axis=0)   # (n, 96, 16)
    return np.ascontiguousarray(view[idx].transpose(0, 2, 1), dtype=np.float32)
