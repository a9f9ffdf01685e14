"""Earcons: right length, audible but not clipping, no clicks, the pitches they are meant to have."""
from __future__ import annotations

import numpy as np
import pytest

from device.earcons import EARCON_NAMES, EarconError, duration_s, earcon, notes


@pytest.mark.parametrize("name", EARCON_NAMES)
@pytest.mark.parametrize("rate_hz", [16000, 22050, 48000])
def test_earcon_shape_and_level(name: str, rate_hz: int) -> None:
    pcm = earcon(name, rate_hz)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) / rate_hz - duration_s(name)) < 0.01
    peak = int(np.max(np.abs(pcm.astype(np.int32))))
    assert 0.3 * 32767 < peak < 0.4 * 32767
    # starts and ends at (near) silence: no click at either edge
    assert abs(int(pcm[0])) < 200 and abs(int(pcm[-1])) < 200


def test_short_confirmations_and_a_longer_alarm() -> None:
    for name in ("wake", "done", "error"):
        assert duration_s(name) <= 0.4
    assert duration_s("alarm") >= 1.0


def _dominant_hz(pcm: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate_hz)[int(np.argmax(spectrum))])


def test_pitches_are_the_scored_ones() -> None:
    rate = 16000
    for name in EARCON_NAMES:
        scored = {f for note in notes(name) for f in note.freqs_hz}
        dominant = _dominant_hz(earcon(name, rate), rate)
        assert min(abs(dominant - f) for f in scored) < 15, (name, dominant, scored)
    error = earcon("error", rate)
    assert _dominant_hz(error, rate) < 600  # lower than the wake tone: it sounds like "no"
    alarm = earcon("alarm", rate)
    bursts = np.abs(alarm.astype(np.int32)) > 1000
    # three bursts separated by gaps of silence
    gaps = np.flatnonzero(np.diff(bursts.astype(np.int8)) == -1)
    assert len(gaps) >= 3


def test_same_tone_at_every_rate() -> None:
    low, high = earcon("done", 16000), earcon("done", 48000)
    assert _dominant_hz(low, 16000) == pytest.approx(_dominant_hz(high, 48000), abs=15)


def test_cached_pcm_cannot_be_changed_in_place() -> None:
    pcm = earcon("wake")
    with pytest.raises(ValueError):
        pcm[0] = 1
    assert earcon("wake") is pcm


def test_bad_name_and_rate_are_clear_errors() -> None:
    with pytest.raises(EarconError, match="unknown earcon 'beep'; known: wake, done, error, alarm"):
        earcon("beep")
    with pytest.raises(EarconError, match="between 8000 and 192000"):
        earcon("wake", 100)
