"""Client audio (any rate, width and channel count) -> the device's 16 kHz mono int16.

Why a converter per stream: resampling chunk by chunk needs the resampler's state
(soxr.ResampleStream), or every chunk boundary clicks. What cannot be converted is
refused with an `AudioRefused` whose message says what came and what is expected.
"""
from __future__ import annotations

import numpy as np

from device.audio import MAX_RATE_HZ, MIN_RATE_HZ, SAMPLE_RATE_HZ, float_to_int16
from device.wyoming.info import ServiceError

WIDTHS = (1, 2, 3, 4)   # bytes per sample: unsigned 8-bit, then signed 16/24/32-bit little-endian PCM
MAX_CHANNELS = 32
EXPECTED = (f"PCM at {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz, width 1-4 bytes, 1-{MAX_CHANNELS} channels "
            f"(best: {SAMPLE_RATE_HZ} Hz, width 2, 1 channel)")


class AudioRefused(ServiceError):
    """Audio that cannot be converted; the message names what is wrong and what is expected."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "audio-format")


def check_format(rate: int, width: int, channels: int) -> None:
    """Raise AudioRefused unless rate/width/channels can be converted."""
    if not isinstance(rate, int) or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise AudioRefused(f"sample rate {rate!r} Hz is not an audio rate; expected {EXPECTED}")
    if width not in WIDTHS:
        raise AudioRefused(f"sample width {width!r} bytes is not supported; expected {EXPECTED}")
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise AudioRefused(f"channel count {channels!r} is not supported; expected {EXPECTED}")


def _to_float_mono(audio: bytes, width: int, channels: int) -> np.ndarray:
    frame_bytes = width * channels
    if len(audio) % frame_bytes:
        raise AudioRefused(f"an audio chunk of {len(audio)} bytes is not a whole number of {width}-byte x "
                           f"{channels}-channel samples; send whole sample frames")
    if width == 1:
        x = (np.frombuffer(audio, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(audio, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(audio, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    else:
        x = (np.frombuffer(audio, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x


class AudioConverter:
    """One client stream's format -> 16 kHz mono int16, chunk by chunk (resampler state carried)."""

    def __init__(self, rate: int, width: int, channels: int) -> None:
        check_format(rate, width, channels)
        self.rate, self.width, self.channels = rate, width, channels
        self.samples_in = 0      # per channel, at the client's rate
        self._resampler = None
        if rate != SAMPLE_RATE_HZ:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE_HZ, 1, dtype="float32")

    def convert(self, audio: bytes, rate: int, width: int, channels: int) -> np.ndarray:
        """One chunk's bytes -> int16 at 16 kHz; a chunk in another format than the stream's is refused."""
        if (rate, width, channels) != (self.rate, self.width, self.channels):
            raise AudioRefused(f"an audio chunk is {rate} Hz, width {width}, {channels} channel(s), but the stream "
                               f"started as {self.rate} Hz, width {self.width}, {self.channels} channel(s); "
                               "send a new audio-start when the format changes")
        x = _to_float_mono(audio, width, channels)
        self.samples_in += len(x)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return float_to_int16(x)

    def flush(self) -> np.ndarray:
        """What the resampler still holds at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        return float_to_int16(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))


class AudioInput:
    """The audio half of a request (audio-start, audio-chunk..., audio-stop) as 16 kHz mono int16.

    Why a class: the STT and the wake service need the same rules: chunks only after a start,
    one format per stream, at most `max_s` seconds, and after a refusal the rest of that
    request is dropped quietly up to its audio-stop (one Error per request, not one per chunk).
    """

    def __init__(self, max_s: float | None = None) -> None:
        self.max_s = max_s
        self._converter: AudioConverter | None = None
        self._dropping = False
        self.samples = 0          # 16 kHz samples out so far in this stream

    @property
    def active(self) -> bool:
        return self._converter is not None

    def start(self, rate: int, width: int, channels: int) -> bool:
        """Open a stream; False when this request was refused and its audio is being dropped."""
        if self._dropping:
            return False
        self._converter = None
        self.samples = 0
        self._converter = AudioConverter(rate, width, channels)
        return True

    def chunk(self, audio: bytes, rate: int, width: int, channels: int) -> np.ndarray | None:
        """The chunk at 16 kHz, or None while a refused request's audio is being dropped."""
        if self._converter is None:
            if self._dropping:
                return None
            raise ServiceError("an audio-chunk came before audio-start; send audio-start (rate, width, channels) "
                               "first", "out-of-order")
        pcm = self._converter.convert(audio, rate, width, channels)
        self.samples += len(pcm)
        if self.max_s is not None and self.samples > self.max_s * SAMPLE_RATE_HZ:
            raise ServiceError(f"the audio stream passed {self.max_s:.0f} s, the longest this service takes; "
                               f"send at most {self.max_s:.0f} s between audio-start and audio-stop", "audio-too-long")
        return pcm

    def stop(self) -> np.ndarray | None:
        """What the resampler still held; None when the request was refused (its audio-stop ends the dropping)."""
        converter, self._converter = self._converter, None
        if self._dropping:
            self._dropping = False
            return None
        if converter is None:
            raise ServiceError("an audio-stop came without an audio-start; send audio-start first", "out-of-order")
        return converter.flush()

    def refuse(self) -> None:
        """Drop the request in progress: its audio (start, chunks) is ignored up to its audio-stop."""
        self._converter = None
        self._dropping = True
