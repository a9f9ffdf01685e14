"""The one ONNX session factory: what every stage's model is opened with."""
from __future__ import annotations

from pathlib import Path

import pytest

from voxlens.onnx import CPU, providers, session


def test_sessions_get_their_threads_no_spinning_and_the_cpu_without_a_gpu(tmp_path: Path) -> None:
    from models.catalog import resolve

    silero = Path(resolve("silero-vad"))
    s = session(silero, threads=2)
    opts = s.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert s.get_providers()[-1] == CPU
    assert providers(gpu=False) == [CPU]  # per-frame models stay on the CPU even where a GPU exists
    from_bytes = session(silero.read_bytes())
    assert [i.name for i in from_bytes.get_inputs()] == [i.name for i in s.get_inputs()]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(Exception, match="broken.onnx"):  # onnxruntime's own type; each stage words the fix
        session(broken)
