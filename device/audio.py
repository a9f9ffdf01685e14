"""Audio in and out of the device: 16 kHz mono int16 in 80 ms frames, from a file or a microphone.

Why one shape: every stage (wake word, VAD, STT) sees frames the same way whether
they come from a microphone or a WAV file, so everything runs headless in tests.
A file can be paced in real time, so the pipeline sees it exactly as it would see
a microphone. Sinks share one shape too; `stop()` is barge-in: it drops whatever
is queued and returns at once; `play(..., cancel=token)` also stops when the turn's
token (voxlens/cancel.py) trips.
"""
from __future__ import annotations

import asyncio
import logging
import wave
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from voxlens.cancel import CancelGroup, CancelToken

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
FRAME_SAMPLES = 1280          # 80 ms at 16 kHz
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
MIN_RATE_HZ, MAX_RATE_HZ = 1000, 768_000  # outside this a WAV header is lying


class AudioFormatError(ValueError):
    """A WAV file cannot be read; the message names the file and what is wrong with it."""


class AudioDeviceError(RuntimeError):
    """No sound card or PortAudio is missing; the message says how to fix it."""


def resample(pcm: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample mono audio with soxr (a maintained, high-quality resampler). Keeps int16 in, int16 out."""
    if from_hz == to_hz:
        return pcm
    import soxr

    return soxr.resample(pcm, from_hz, to_hz)


def _to_float_mono(data: np.ndarray) -> np.ndarray:
    """Any WAV sample type (u8, i16, i24-in-i32, i32, f32, f64), any channel count -> float32 mono in [-1, 1]."""
    if data.dtype == np.uint8:
        audio = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype == np.int16:
        audio = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        audio = (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif np.issubdtype(data.dtype, np.floating):
        audio = data.astype(np.float32)
    else:
        raise TypeError(f"unsupported sample type {data.dtype}")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return audio


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def read_wav_native(path: str | Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples, native rate) of any PCM or float WAV; AudioFormatError naming the file otherwise."""
    import scipy.io.wavfile

    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise AudioFormatError(f"{path}: the file is empty (0 bytes); record or export it again as a WAV")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        if len(head) >= 4 and head[:4] in (b"RIFF", b"RIFX"):
            raise AudioFormatError(f"{path}: truncated WAV header ({size} bytes); the file was cut off, export it again")
        raise AudioFormatError(f"{path}: not a WAV file (starts with {head[:4]!r}); convert it, e.g. ffmpeg -i IN -ar 16000 -ac 1 OUT.wav")
    try:
        rate_hz, data = scipy.io.wavfile.read(path, mmap=False)
    except Exception as exc:  # noqa: BLE001 - scipy fails on lying headers in many ways (found by tests/test_fuzz.py)
        raise AudioFormatError(f"{path}: truncated or malformed WAV ({type(exc).__name__}: {exc}); "
                               "export it again as PCM or float WAV") from None
    if data.size == 0:
        raise AudioFormatError(f"{path}: the WAV holds no audio samples")
    if not MIN_RATE_HZ <= int(rate_hz) <= MAX_RATE_HZ:
        raise AudioFormatError(f"{path}: the header's sample rate {int(rate_hz)} Hz is not an audio rate "
                               f"({MIN_RATE_HZ}-{MAX_RATE_HZ} Hz); the header is corrupt, export the file again")
    try:
        return _to_float_mono(data), int(rate_hz)
    except TypeError as exc:
        raise AudioFormatError(f"{path}: {exc}; export it as 8/16/24/32-bit PCM or float WAV") from None


def read_wav(path: str | Path) -> np.ndarray:
    """Any WAV -> 16 kHz mono int16, the device's internal format."""
    audio, rate_hz = read_wav_native(path)
    if rate_hz != SAMPLE_RATE_HZ:
        audio = resample(audio, rate_hz, SAMPLE_RATE_HZ)
    return float_to_int16(audio)


def write_wav(path: str | Path, pcm: np.ndarray, rate_hz: int) -> None:
    """Write mono int16 PCM (float input is converted from [-1, 1])."""
    if np.issubdtype(pcm.dtype, np.floating):
        pcm = float_to_int16(pcm)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate_hz))
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())


def split_frames(pcm: np.ndarray, frame_samples: int = FRAME_SAMPLES) -> list[np.ndarray]:
    """Cut into fixed frames; the last one zero-padded."""
    pad = (-len(pcm)) % frame_samples
    if pad:
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=pcm.dtype)])
    return [pcm[i : i + frame_samples] for i in range(0, len(pcm), frame_samples)]


class Framer:
    """Cuts a stream of int16 blocks into fixed frames (the wake word wants 80 ms); keeps the remainder."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._rest = np.zeros(0, np.int16)

    def push(self, pcm: np.ndarray) -> list[np.ndarray]:
        buf = np.concatenate([self._rest, pcm]) if len(self._rest) else pcm
        n = len(buf) // self.frame_samples * self.frame_samples
        self._rest = buf[n:].copy()
        return [buf[i:i + self.frame_samples] for i in range(0, n, self.frame_samples)]

    def flush(self) -> np.ndarray | None:
        """The last partial frame, zero-padded, or None when nothing is left."""
        if not len(self._rest):
            return None
        frame = np.concatenate([self._rest, np.zeros(self.frame_samples - len(self._rest), np.int16)])
        self._rest = np.zeros(0, np.int16)
        return frame


class WavSource:
    """Blocks from a WAV file; `realtime=True` paces them (80 ms each by default), like a microphone."""

    def __init__(self, path: str | Path, realtime: bool = False, block_samples: int = FRAME_SAMPLES) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.block_samples = block_samples
        self.pcm = read_wav(self.path)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_RATE_HZ

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        block_s = self.block_samples / SAMPLE_RATE_HZ
        for i, frame in enumerate(split_frames(self.pcm, self.block_samples)):
            if self.realtime:
                # A microphone delivers a block once it has been fully captured.
                delay = start + (i + 1) * block_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            yield frame


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # PortAudio missing
        raise AudioDeviceError(
            f"cannot open the sound card: {exc}; install PortAudio (apt-get install libportaudio2) "
            "or run headless with --input F.wav / --output F.wav"
        ) from None
    return sounddevice


class MicrophoneSource:
    """Frames from a microphone through sounddevice (PortAudio), imported only when used."""

    def __init__(self, device: str | int | None = None, max_queued_frames: int = 200,
                 block_samples: int = FRAME_SAMPLES) -> None:
        self.device = device or None
        self.block_samples = block_samples
        self.max_queued_frames = max_queued_frames
        self.dropped_frames = 0

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        sd = _sounddevice()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue(self.max_queued_frames)

        def put(frame: np.ndarray) -> None:
            if queue.full():
                self.dropped_frames += 1  # the consumer fell behind: drop the oldest, keep the live edge
                queue.get_nowait()
            queue.put_nowait(frame)

        def callback(indata, frames, time_info, status) -> None:  # PortAudio thread
            if status:
                log.debug("microphone status: %s", status)
            loop.call_soon_threadsafe(put, indata[:, 0].copy())

        try:
            stream = sd.InputStream(samplerate=SAMPLE_RATE_HZ, blocksize=self.block_samples, channels=1,
                                    dtype="int16", device=self.device, callback=callback)
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open microphone {self.device or '(default)'}: {exc}; "
                                   "list devices with `python -m sounddevice`, set [audio] input_device, "
                                   "or run headless with --input F.wav") from None
        with stream:
            while True:
                yield await queue.get()


class MemorySink:
    """Keeps everything played in memory (tests, benchmarks). `realtime=True` makes play() take as long as the audio."""

    def __init__(self, realtime: bool = False) -> None:
        self.realtime = realtime
        self.rate_hz: int | None = None
        self.chunks: list[np.ndarray] = []
        self._playing = CancelGroup()

    @property
    def samples_written(self) -> int:
        return sum(len(c) for c in self.chunks)

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)

    def _accept(self, pcm: np.ndarray, rate_hz: int) -> np.ndarray:
        pcm = np.asarray(pcm)
        if np.issubdtype(pcm.dtype, np.floating):
            pcm = float_to_int16(pcm)
        if self.rate_hz is None:
            self.rate_hz = int(rate_hz)  # native rate of the first audio played (the voice's)
        elif rate_hz != self.rate_hz:
            pcm = resample(pcm, rate_hz, self.rate_hz)
        return pcm.astype(np.int16, copy=False)

    async def play(self, pcm: np.ndarray, rate_hz: int, cancel: CancelToken | None = None) -> None:
        """Play `pcm`; stops within a 20 ms slice when stop() is called or `cancel` (the turn's token) trips."""
        pcm = self._accept(pcm, rate_hz)
        with self._playing.scope(cancel) as token:
            if token.cancelled:
                return
            if not self.realtime:
                self.chunks.append(pcm)
                return
            step = max(1, self.rate_hz // 50)  # 20 ms slices: stop() cuts within 20 ms
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(0, len(pcm), step):
                if token.cancelled:
                    return  # stopped: drop the rest
                self.chunks.append(pcm[i : i + step])
                delay = start + (i + step) / self.rate_hz - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

    def stop(self) -> None:
        self._playing.cancel_all()

    def close(self) -> None:
        self.stop()


class WavSink(MemorySink):
    """Records everything played, at the native rate of the first audio played, into a WAV on close()."""

    def __init__(self, path: str | Path, realtime: bool = False) -> None:
        super().__init__(realtime)
        self.path = Path(path)
        self._closed = False

    def close(self) -> None:
        super().close()
        if not self._closed:
            self._closed = True
            write_wav(self.path, self.audio, self.rate_hz or SAMPLE_RATE_HZ)


class SpeakerSink:
    """Plays through sounddevice; play() returns once that audio has been played, stop() silences at once."""

    def __init__(self, device: str | int | None = None) -> None:
        self.device = device or None
        self.samples_written = 0
        self._stream = None
        self._rate_hz: int | None = None
        self._playing = CancelGroup()

    async def play(self, pcm: np.ndarray, rate_hz: int, cancel: CancelToken | None = None) -> None:
        sd = _sounddevice()
        if np.issubdtype(np.asarray(pcm).dtype, np.floating):
            pcm = float_to_int16(pcm)
        if self._stream is None or self._rate_hz != rate_hz:
            self.close()
            try:
                self._stream = sd.OutputStream(samplerate=rate_hz, channels=1, dtype="int16", device=self.device)
            except (sd.PortAudioError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open speaker {self.device or '(default)'}: {exc}; "
                                       "list devices with `python -m sounddevice`, set [audio] output_device, "
                                       "or write a file with -o F.wav") from None
            self._stream.start()
            self._rate_hz = rate_hz
        step = rate_hz // 25  # 40 ms writes: barge-in cuts within one write
        with self._playing.scope(cancel) as token:
            for i in range(0, len(pcm), step):
                if token.cancelled:
                    return
                block = np.ascontiguousarray(pcm[i : i + step], dtype=np.int16)
                await asyncio.to_thread(self._stream.write, block)
                self.samples_written += len(block)

    def stop(self) -> None:
        self._playing.cancel_all()
        if self._stream is not None:
            self._stream.abort()   # drop what PortAudio holds
            self._stream.start()

    def close(self) -> None:
        self._playing.cancel_all()
        if self._stream is not None:
            self._stream.abort()
            self._stream.close()
            self._stream = None
