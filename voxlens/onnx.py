"""The one way VoxLens opens an ONNX model: thread counts, no spin-waiting, quiet logs, the right providers.

Why: six stages built their sessions by hand and drifted (different log levels, spin-waiting idle
threads on some and not others). The always-on per-frame models (wake word, Silero) get one thread on
the CPU: they are tiny, and a GPU round trip per 80 ms frame costs more than it saves. A model big
enough to gain (Piper) may ask for the GPU, used when the onnxruntime-gpu build finds one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def providers(gpu: bool = False) -> list[str]:
    """CUDA first when asked for and present in this onnxruntime build, else the CPU alone."""
    import onnxruntime as ort

    return [CUDA, CPU] if gpu and CUDA in ort.get_available_providers() else [CPU]


def session(model: str | Path | bytes, *, threads: int = 1, gpu: bool = False, log_level: int = 3) -> Any:
    """An onnxruntime InferenceSession for a file path or serialized model bytes.

    Idle pool threads never spin: on a 2-core device a spinning pool steals the core the audio loop
    needs. Raises what onnxruntime raises for a missing or corrupt model; callers name the file and the fix.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = log_level
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=providers(gpu))
