"""The openWakeWord front end (mel spectrogram -> speech embedding), computed incrementally.

Why incremental: livekit's predictor recomputes a whole 2 s window for every
80 ms frame. Each new frame only needs its 8 new mel frames and one new
embedding; `tests/test_wakeword.py` proves the result equals the full
computation over the whole audio (`FrontEnd.embeddings_full`).

One subtlety: the mel ONNX model ends with a top_db clip, max(x, max(input) - 80 dB),
taken over its whole input (batch included). openWakeWord's streaming code calls
it once per 80 ms frame, so the clip is local to that frame's 8 mel frames; we
define the features the same way. The batched path (training, the reference in
tests) takes the log-mel before that clip from an edited copy of the graph and
applies the same per-frame clip in numpy, so both paths give the same numbers.

Audio scaling: int16-scale floats (the raw int16 values as float32), exactly as
openWakeWord feeds them, so heads trained by openWakeWord load and score
correctly. livekit-wakeword feeds [-1, 1] instead; its heads would need the
input divided by 32768. Training (device/wakeword/train) uses this same module.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from voxlens.onnx import session as onnx_session

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
FRAME_SAMPLES = 1280                 # 80 ms
MEL_WINDOW_SAMPLES = 512
MEL_HOP_SAMPLES = 160
MEL_BINS = 32
TOP_DB = 80.0                        # the mel model's dynamic-range clip, in dB
MEL_PER_FRAME = FRAME_SAMPLES // MEL_HOP_SAMPLES            # 8 new mel frames per 80 ms frame
MEL_CONTEXT_SAMPLES = MEL_WINDOW_SAMPLES - MEL_HOP_SAMPLES  # 352 samples carried between frames
EMBEDDING_WINDOW_FRAMES = 76         # mel frames per embedding
EMBEDDING_STRIDE_FRAMES = 8          # one embedding per 80 ms frame
EMBEDDING_DIM = 96
HEAD_EMBEDDINGS = 16                 # a head sees the last 16 embeddings (1.28 s of hops, ~2 s of audio)
# Silence the stream is assumed to start with, so a head can score from the first frame.
PREFILL_FRAMES = (EMBEDDING_WINDOW_FRAMES // MEL_PER_FRAME + 1) + HEAD_EMBEDDINGS


def _session(path: Path):
    return onnx_session(path)


def _preclip_session(path: Path):
    """The mel graph with its log-mel before the global top_db clip as the output (needs the `onnx` package: train extra)."""
    try:
        import onnx
    except ImportError:
        raise RuntimeError("batched wake-word features need the onnx package: pip install -e '.[train]'") from None
    model = onnx.load(str(path))
    clip = model.graph.node[-1]
    if clip.op_type != "Clip":
        raise RuntimeError(f"{path}: expected the mel graph to end with its top_db Clip, found {clip.op_type}; is this openWakeWord's melspectrogram.onnx?")
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(clip.input[0], onnx.TensorProto.FLOAT, None))
    model.graph.node.remove(clip)
    return onnx_session(model.SerializeToString())  # log level 3: quiet about the clip's unused initializers


class FrontEnd:
    """The two front-end ONNX models, loaded once and shared by every head and stream."""

    def __init__(self, mel_model: str | Path = "oww-melspectrogram", embedding_model: str | Path = "oww-embedding") -> None:
        from models.catalog import resolve

        self._mel_path = resolve(str(mel_model))
        self._mel = _session(self._mel_path)
        self._mel_raw = None  # the pre-clip graph, built on first batched use
        self._mel_input = self._mel.get_inputs()[0].name
        self._emb = _session(resolve(str(embedding_model)))
        self._emb_input = self._emb.get_inputs()[0].name

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """int16-scale samples (1-D, >= 512) -> (frames, 32) mel, scaled x/10 + 2 like openWakeWord.

        The top_db clip is over this whole call: call it once per 80 ms frame (plus context).
        """
        x = np.asarray(samples, dtype=np.float32)[np.newaxis, :]
        out = self._mel.run(None, {self._mel_input: x})[0]
        return (out.reshape(-1, MEL_BINS) / 10.0 + 2.0).astype(np.float32)

    def mel_batch(self, batch: np.ndarray) -> np.ndarray:
        """(B, samples) int16-scale, samples = 352 + k*1280 -> (B, 8k, 32), clipped per 80 ms frame as in streaming."""
        x = np.asarray(batch, dtype=np.float32)
        if self._mel_raw is None:
            self._mel_raw = _preclip_session(self._mel_path)
        db = self._mel_raw.run(None, {self._mel_input: x})[0].reshape(x.shape[0], -1, MEL_BINS)
        b, n, _ = db.shape
        chunks = db[:, : n - n % MEL_PER_FRAME].reshape(b, -1, MEL_PER_FRAME * MEL_BINS)
        floor = chunks.max(axis=2, keepdims=True) - TOP_DB
        return (np.maximum(chunks, floor).reshape(b, -1, MEL_BINS) / 10.0 + 2.0).astype(np.float32)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 76, 32) mel windows -> (n, 96) embeddings."""
        x = np.asarray(windows, dtype=np.float32)[..., np.newaxis]
        return self._emb.run(None, {self._emb_input: x})[0].reshape(-1, EMBEDDING_DIM)

    def embeddings_full(self, audio_int16: np.ndarray, prefill: bool = True) -> np.ndarray:
        """Non-incremental reference: one embedding per 80 ms frame of `audio_int16`.

        Row i is the embedding available after frame i, exactly what the
        streaming path produces; used by tests and (batched) by training.
        """
        audio = np.asarray(audio_int16, dtype=np.float32)
        n_frames = len(audio) // FRAME_SAMPLES
        lead = PREFILL_FRAMES * FRAME_SAMPLES if prefill else 0
        padded = np.concatenate([np.zeros(MEL_CONTEXT_SAMPLES + lead, np.float32), audio[: n_frames * FRAME_SAMPLES]])
        mel = self.mel_batch(padded[np.newaxis])[0]
        ends = np.arange(1, n_frames + 1) * MEL_PER_FRAME + (lead // MEL_HOP_SAMPLES)
        return self.embeddings_at(mel, ends)

    def embeddings_batch(self, streams: np.ndarray, chunk: int = 32) -> np.ndarray:
        """(B, k*1280) int16 streams, each starting after silence -> (B, k, 96), one embedding per 80 ms frame.

        Same numbers as streaming each one through `StreamingFeatures` from reset()
        (embeddings before the stream are `silence_embedding()`).
        """
        streams = np.asarray(streams)
        b, n = streams.shape[0], streams.shape[1] // FRAME_SAMPLES
        lead = (EMBEDDING_WINDOW_FRAMES // MEL_PER_FRAME + 1) * FRAME_SAMPLES
        out = np.zeros((b, n, EMBEDDING_DIM), np.float32)
        ends = np.arange(1, n + 1) * MEL_PER_FRAME + lead // MEL_HOP_SAMPLES
        for s in range(0, b, chunk):
            part = streams[s:s + chunk, : n * FRAME_SAMPLES].astype(np.float32)
            padded = np.concatenate([np.zeros((len(part), MEL_CONTEXT_SAMPLES + lead), np.float32), part], axis=1)
            mel = self.mel_batch(padded)
            for j, m in enumerate(mel):
                for k in range(0, n, 2048):  # bounded memory for hour-long streams
                    windows = np.stack([m[e - EMBEDDING_WINDOW_FRAMES:e] for e in ends[k:k + 2048]])
                    out[s + j, k:k + 2048] = self.embed(windows)
        return out

    def silence_embedding(self) -> np.ndarray:
        """The embedding of digital silence: what fills a head's window before a stream starts."""
        return self.embeddings_batch(np.zeros((1, FRAME_SAMPLES), np.int16))[0, 0]

    def embeddings_at(self, mel: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Embeddings of the 76-frame mel windows ending (exclusive) at each index in `ends`."""
        out = np.zeros((len(ends), EMBEDDING_DIM), np.float32)
        valid = ends >= EMBEDDING_WINDOW_FRAMES
        if valid.any():
            windows = np.stack([mel[e - EMBEDDING_WINDOW_FRAMES:e] for e in ends[valid]])
            out[valid] = self.embed(windows)
        return out


class StreamingFeatures:
    """Per-stream state: the last 352 samples, the last 76 mel frames, the last 16 embeddings."""

    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.reset()

    def reset(self) -> None:
        self._tail = np.zeros(MEL_CONTEXT_SAMPLES, np.float32)
        self._mel = np.zeros((0, MEL_BINS), np.float32)
        self._emb = np.zeros((HEAD_EMBEDDINGS, EMBEDDING_DIM), np.float32)
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        for _ in range(PREFILL_FRAMES):
            self.push(silence)

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add one 80 ms int16 frame; returns the new (96,) embedding."""
        audio = np.concatenate([self._tail, np.asarray(frame, dtype=np.float32)])
        self._tail = audio[-MEL_CONTEXT_SAMPLES:]
        new_mel = self.front.mel(audio)
        self._mel = np.concatenate([self._mel, new_mel])[-EMBEDDING_WINDOW_FRAMES:]
        if len(self._mel) < EMBEDDING_WINDOW_FRAMES:
            emb = np.zeros(EMBEDDING_DIM, np.float32)
        else:
            emb = self.front.embed(self._mel[np.newaxis])[0]
        self._emb = np.concatenate([self._emb[1:], emb[np.newaxis]])
        return emb

    def window(self) -> np.ndarray:
        """(1, 16, 96): what every head scores."""
        return self._emb[np.newaxis].copy()
