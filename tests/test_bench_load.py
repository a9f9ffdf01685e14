"""The busy workers `voxlens bench voice --load N` runs beside the device, and its lag probe."""
from __future__ import annotations

import numpy as np
import pytest

from bench.busy import busy_workers
from bench.voice import LagProbe, play_order, with_setting
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


def test_the_ab_setting_changes_one_field_with_its_type_and_names_a_bad_one():
    """`bench voice --ab SECTION.NAME=VALUE`: the second run's config differs in that field only."""
    from voxlens.config import Config

    cfg = Config()
    changed = with_setting(cfg, "vad.closed_command_silence_ms=128")
    assert changed.vad.closed_command_silence_ms == 128 and changed.vad.command_silence_ms == cfg.vad.command_silence_ms
    assert with_setting(cfg, "device.preemptive=false").device.preemptive is False
    both = with_setting(cfg, "audio.block_ms=80,vad.command_silence_ms=128")
    assert (both.audio.block_ms, both.vad.command_silence_ms) == (80, 128)
    with pytest.raises(SystemExit, match="SECTION.NAME=VALUE"):
        with_setting(cfg, "vad.no_such_setting=1")
    with pytest.raises(SystemExit, match="is not a int"):
        with_setting(cfg, "vad.command_silence_ms=soon")


def test_an_ab_run_alternates_which_variant_plays_first():
    """The second play of a question finds its prompt in the small tier's KV cache: neither variant may always
    be second, and each utterance plays every variant once."""
    variants = {"a": ("A", "A off"), "b": ("B", "B off")}
    orders = [[name for name, _ in play_order(variants, i)] for i in range(4)]
    assert orders == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert dict(play_order(variants, 1)) == variants
