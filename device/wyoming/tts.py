"""Wyoming text to speech: Synthesize, or streaming synthesize-start/chunk/stop -> audio-start/chunk/stop.

Why first audio comes early: the text goes through device.tts's sentence chunker, so
Piper speaks the first sentence (or the first clause of a long one) while the rest
is still being synthesized or, when streaming, still being written by the LLM.

Home Assistant, streaming, also sends the whole text as a plain Synthesize before
synthesize-stop, for servers that do not stream; it is ignored while a stream is open.
A streamed request ends with audio-stop, then synthesize-stopped.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Info
from wyoming.tts import (
    Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeTextFormat,
    SynthesizeVoice,
)

from device.tts import MAX_TEXT_CHARS, TextToSpeech
from device.wyoming.info import ServiceError, ServiceHandler, parse, tts_info
from voxlens.config import Config

log = logging.getLogger(__name__)

WIDTH = 2   # bytes: Piper's int16


@dataclass
class TtsService:
    """The loaded voice, shared by every connection; `handler` is the server's handler factory."""

    tts: TextToSpeech
    voice_name: str
    max_text_chars: int = MAX_TEXT_CHARS
    samples_per_chunk: int = 1024   # per audio-chunk event (46 ms at 22,050 Hz)
    info: Info = field(init=False)

    def __post_init__(self) -> None:
        self.info = tts_info(self.voice_name, self.languages)

    @property
    def languages(self) -> list[str]:
        espeak = getattr(self.tts.voice.config, "espeak_voice", "") or "en-us"   # e.g. "en-us" -> en_US
        lang, _, region = espeak.partition("-")
        return [f"{lang}_{region.upper()}" if region else lang]

    @classmethod
    def load(cls, cfg: Config, voice: str | None = None) -> "TtsService":
        """The configured Piper voice ([models] tts, or `voice`), settings from [tts]."""
        name = voice or cfg.models.tts
        return cls(TextToSpeech(name, cfg.tts), Path(name).name.removesuffix(".onnx"))

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "TtsHandler":
        return TtsHandler(reader, writer, self)


async def _one(text: str) -> AsyncIterator[str]:
    yield text


class TtsHandler(ServiceHandler):
    """One connection: Synthesize requests, or one streamed request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: TtsService) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.info = service.info
        self._deltas: asyncio.Queue[str | None] | None = None   # open stream's text, None ends it
        self._speaking: asyncio.Task | None = None
        self._streamed_chars = 0
        self._dropping = False   # a refused stream: its remaining events are ignored up to synthesize-stop

    async def handle(self, event: Event) -> bool:
        if Synthesize.is_type(event.type):
            if self._deltas is not None or self._dropping:
                return True   # Home Assistant's copy of the streamed text, for servers that do not stream
            request = parse(Synthesize, event)
            self._check(request.voice, request.text_format)
            self._check_length(len(request.text))
            await self._speak(_one(request.text))
        elif SynthesizeStart.is_type(event.type):
            await self.abort_stream()
            self._dropping = True    # until this start is accepted: a refused one drops its chunks quietly
            request = parse(SynthesizeStart, event)
            self._check(request.voice, request.text_format)
            self._dropping = False
            self._deltas, self._streamed_chars = asyncio.Queue(), 0
            self._speaking = asyncio.create_task(self._speak_stream(self._deltas))
        elif SynthesizeChunk.is_type(event.type):
            if self._dropping:
                return True
            text = parse(SynthesizeChunk, event).text
            if self._deltas is None:
                raise ServiceError("a synthesize-chunk came outside a stream; send synthesize-start first", "out-of-order")
            self._streamed_chars += len(text)
            self._check_length(self._streamed_chars)
            self._deltas.put_nowait(text)
        elif SynthesizeStop.is_type(event.type):
            await self._end_stream()
        return True

    def _check(self, voice: SynthesizeVoice | None, text_format: object) -> None:
        if voice is not None and voice.name and voice.name != self.service.voice_name:
            raise ServiceError(f"voice {voice.name!r} is not served here; this service speaks "
                               f"{self.service.voice_name!r} (voxlens wyoming tts --voice chooses it)", "unknown-voice")
        if voice is not None and voice.language and not any(
                voice.language.replace("-", "_").lower().startswith(lang.split("_")[0].lower())
                for lang in self.service.languages):
            raise ServiceError(f"language {voice.language!r} is not spoken by voice {self.service.voice_name!r}; "
                               f"it speaks {', '.join(self.service.languages)}", "unsupported-language")
        if text_format not in (None, SynthesizeTextFormat.TEXT, "text"):
            raise ServiceError(f"text format {text_format!r} is not supported; send plain text", "unsupported-format")

    def _check_length(self, chars: int) -> None:
        if chars > self.service.max_text_chars:
            raise ServiceError(f"the text passed {self.service.max_text_chars} characters, the most this service "
                               "speaks in one request; split it into several requests", "text-too-long")

    async def _speak(self, deltas: AsyncIterator[str]) -> None:
        """audio-start at once, audio-chunks from the first sentence on, audio-stop."""
        tts, n = self.service.tts, self.service.samples_per_chunk
        rate, sent = tts.sample_rate_hz, 0
        await self.write_event(AudioStart(rate=rate, width=WIDTH, channels=1, timestamp=0).event())
        async for piece in tts.stream_chunks(deltas):
            for i in range(0, len(piece.audio), n):
                audio = piece.audio[i:i + n]
                await self.write_event(AudioChunk(rate=rate, width=WIDTH, channels=1, audio=audio.tobytes(),
                                                  timestamp=sent * 1000 // rate).event())
                sent += len(audio)
        await self.write_event(AudioStop(timestamp=sent * 1000 // rate).event())

    async def _speak_stream(self, deltas: asyncio.Queue[str | None]) -> None:
        async def text() -> AsyncIterator[str]:
            while (delta := await deltas.get()) is not None:
                yield delta

        try:
            await self._speak(text())
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - said to this client, logged; other sessions go on
            log.exception("wyoming tts: a streamed synthesis failed")
            await self.write_event(Error(text=f"synthesis failed ({type(exc).__name__}: {exc}); see the service log",
                                         code="internal").event())

    async def _end_stream(self) -> None:
        deltas, speaking = self._deltas, self._speaking
        if deltas is None and not self._dropping:
            raise ServiceError("a synthesize-stop came without synthesize-start", "out-of-order")
        self._dropping = False
        if deltas is not None and speaking is not None:
            deltas.put_nowait(None)
            await speaking
        self._deltas = self._speaking = None
        await self.write_event(SynthesizeStopped().event())

    async def abort_stream(self, refused: bool = False) -> None:
        speaking, self._speaking = self._speaking, None
        was_streaming = self._deltas is not None
        self._deltas = None
        if speaking is not None:
            speaking.cancel()
            await asyncio.gather(speaking, return_exceptions=True)
        if refused and was_streaming:
            self._dropping = True
