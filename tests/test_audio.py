"""Audio I/O: any WAV converts to 16 kHz mono int16; bad files fail with errors naming the file."""
from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest
import scipy.io.wavfile

from device.audio import (FRAME_SAMPLES, SAMPLE_RATE_HZ, AudioFormatError, MemorySink, WavSink, WavSource,
                          read_wav, write_wav)


def tone(rate_hz: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def assert_tone_16k(pcm: np.ndarray, seconds: float = 0.5) -> None:
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - int(SAMPLE_RATE_HZ * seconds)) <= 2
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float32)))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE_HZ / len(pcm)
    assert abs(peak_hz - 440) < 5
    assert 0.4 < np.abs(pcm).max() / 32768 < 0.6  # amplitude survives (no 8-bit/float scaling slip)


@pytest.mark.parametrize("rate_hz,channels,kind", [
    (44100, 2, "int16"), (8000, 1, "int16"), (16000, 1, "uint8"), (22050, 1, "float32"),
    (48000, 1, "int32"), (16000, 2, "float64"),
])
def test_any_wav_converts_to_16k_mono_int16(tmp_path, rate_hz, channels, kind):
    x = tone(rate_hz)
    data = {"int16": (x * 32767).astype(np.int16), "uint8": (x * 127 + 128).astype(np.uint8),
            "float32": x, "int32": (x * 2147483647).astype(np.int32), "float64": x.astype(np.float64)}[kind]
    if channels == 2:
        data = np.stack([data, data], axis=1)
    path = tmp_path / f"t_{rate_hz}_{channels}_{kind}.wav"
    scipy.io.wavfile.write(path, rate_hz, data)
    assert_tone_16k(read_wav(path))


@pytest.mark.parametrize("content,words", [
    (b"", "empty"),
    (b"RIFF\x24\x00\x00\x00WAV", "truncated"),
    (b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "malformed"),
    (b"ID3\x04\x00 this is an mp3, not a wav", "not a WAV"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, words):
    path = tmp_path / "bad_input.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFormatError) as err:
        read_wav(path)
    assert "bad_input.wav" in str(err.value)
    assert words.split()[0].lower() in str(err.value).lower()


def test_missing_file(tmp_path):
    with pytest.raises(AudioFormatError, match="nothere.wav"):
        read_wav(tmp_path / "nothere.wav")


def test_write_then_read_roundtrip(tmp_path):
    pcm = (tone(SAMPLE_RATE_HZ) * 32767).astype(np.int16)
    write_wav(tmp_path / "a.wav", pcm, SAMPLE_RATE_HZ)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
    assert np.array_equal(read_wav(tmp_path / "a.wav"), pcm)


async def test_wav_source_frames_and_realtime_pacing(tmp_path):
    pcm = (tone(SAMPLE_RATE_HZ, 0.5) * 32767).astype(np.int16)   # 8000 samples -> 7 frames, last padded
    write_wav(tmp_path / "a.wav", pcm, SAMPLE_RATE_HZ)
    src = WavSource(tmp_path / "a.wav")
    frames = [f async for f in src]
    assert src.duration_s == pytest.approx(0.5)
    assert len(frames) == 7 and all(len(f) == FRAME_SAMPLES for f in frames)
    assert np.array_equal(np.concatenate(frames)[:8000], pcm) and not frames[-1][8000 - 6 * FRAME_SAMPLES:].any()
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    async for _ in WavSource(tmp_path / "a.wav", realtime=True):
        n += 1
    assert n == 7 and loop.time() - start >= 7 * 0.08 - 0.01   # paced like a microphone


async def test_wav_sink_records_at_native_rate_and_stop_drops_the_rest(tmp_path):
    sink = WavSink(tmp_path / "out.wav", realtime=True)
    audio = np.full(22050, 1000, dtype=np.int16)          # 1 s at the voice's rate
    task = asyncio.create_task(sink.play(audio, 22050))
    await asyncio.sleep(0.2)
    sink.stop()                                            # barge-in
    await asyncio.wait_for(task, 0.1)                      # returns at once
    assert 0.1 * 22050 < sink.samples_written < 0.4 * 22050
    await sink.play(np.zeros(1600, dtype=np.int16), 16000)  # other rates are converted to the native one
    sink.close()
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getframerate() == 22050
        assert w.getnframes() == sink.samples_written


async def test_memory_sink_keeps_everything():
    sink = MemorySink()
    await sink.play(np.ones(100, dtype=np.int16), 22050)
    await sink.play(np.ones(50, dtype=np.int16), 22050)
    assert sink.samples_written == 150 and sink.rate_hz == 22050


def test_a_wav_header_with_an_impossible_sample_rate_is_refused_by_name(tmp_path):
    """Found by tests/test_fuzz.py: rate 0 reached the resampler and crashed it."""
    import struct

    import pytest

    from device.audio import AudioFormatError, read_wav

    fmt = struct.pack("<HHIIHH", 1, 1, 0, 0, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 4) + b"\x01\x00\x02\x00"
    path = tmp_path / "zero-rate.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFormatError, match="sample rate 0 Hz"):
        read_wav(path)
