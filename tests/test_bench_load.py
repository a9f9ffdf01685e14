"""The busy workers `voxlens bench voice --load N` runs beside the device, and its lag probe."""
from __future__ import annotations

import numpy as np
import pytest

from bench.busy import busy_workers
from bench.voice import LagProbe
from device.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ, WavSource, write_wav


def test_busy_workers_run_both_kinds_in_turn_and_stop_after_the_block():
    import multiprocessing as mp

    before = set(mp.active_children())
    with busy_workers(3) as kinds:
        workers = [p for p in mp.active_children() if p not in before]
        assert kinds == ["python", "numpy", "python"]
        assert len(workers) == 3 and all(p.is_alive() for p in workers)
    assert not any(p.is_alive() for p in workers)


def test_an_unknown_worker_kind_is_named():
    with pytest.raises(ValueError, match="'gpu'"), busy_workers(1, ("gpu",)):
        pass


async def test_the_lag_probe_passes_every_frame_through_in_order(tmp_path):
    pcm = (np.arange(FRAME_SAMPLES * 5) % 1000).astype(np.int16)
    write_wav(tmp_path / "a.wav", pcm, SAMPLE_RATE_HZ)
    probe = LagProbe(WavSource(tmp_path / "a.wav"))
    frames = [f async for f in probe]
    assert np.array_equal(np.concatenate(frames), pcm)
    assert probe.max_lag_ms >= 0.0
