"""Wyoming speech to text: Transcribe, audio-start/chunk/stop -> transcript (and its streaming events).

Why it is fast after audio-stop: the audio is transcribed while it arrives
(device.stt.StreamingTranscription, fed with Silero's speech/silence verdicts), so
by the time the client says audio-stop the last background pass usually covers all
the speech and the final transcript is that pass, not a new one.

Streaming transcript events: transcript-start when the audio starts, a transcript-chunk
each time words become stable (the same in two passes running, the last word held
back since Whisper often has it half-heard), the rest at the end, then the transcript
(the authority) and transcript-stop. The chunks join into the transcript unless the
final pass changed a word already sent, which is logged.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Info

from device.audio import SAMPLE_RATE_HZ
from device.stt import MAX_AUDIO_S, SpeechToText, StreamingTranscription, model_for
from device.vad import SileroVad
from device.wyoming.audio import AudioInput
from device.wyoming.info import ServiceError, ServiceHandler, parse, stt_info
from voxlens.config import Config
from voxlens.timing import Clock, monotonic

log = logging.getLogger(__name__)

BURST_SLACK_S = 0.25   # a microphone stream may start with this much buffered audio and still count as paced


@dataclass
class SttService:
    """The loaded models, shared by every connection; `handler` is the server's handler factory."""

    stt: SpeechToText
    vad: SileroVad                      # a template: each stream gets a copy with its own recurrent state
    vad_threshold: float = 0.5
    max_audio_s: float = MAX_AUDIO_S
    burst_speedup: float = 2.0          # audio arriving faster than this x real time is a recording, not a microphone
    clock: Clock = monotonic
    info: Info = field(init=False)

    def __post_init__(self) -> None:
        self.info = stt_info(self.stt.name, self.languages)

    @property
    def languages(self) -> list[str]:
        if not self.stt.multilingual:
            return ["en"]
        return list(getattr(self.stt.model, "supported_languages", None) or ["en"])

    @classmethod
    def load(cls, cfg: Config, model: str | None = None) -> "SttService":
        """The configured Whisper model ([models] stt, or `model`; whisper-base when [stt] languages go beyond
        English) and VAD, settings from [stt] and [vad]."""
        return cls(SpeechToText(model or model_for(cfg.models.stt, cfg.stt), cfg.stt), SileroVad(cfg.models.vad),
                   cfg.vad.threshold)

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "SttHandler":
        return SttHandler(reader, writer, self)


class StableWords:
    """Words two passes in a row agree on (LocalAgreement-2), as the text of transcript-chunk events."""

    def __init__(self) -> None:
        self.sent = ""                  # what the chunks so far join into
        self._sent_words = 0
        self._previous: list[str] = []

    def update(self, partial: str) -> str:
        """A new partial -> the next chunk ('' when nothing new is stable)."""
        words = partial.split()
        agreed = 0
        for a, b in zip(self._previous, words[:-1]):    # the newest pass's last word is held back
            if a != b:
                break
            agreed += 1
        self._previous = words
        if agreed <= self._sent_words or words[: self._sent_words] != self.sent.split():
            return ""
        return self._emit(words[self._sent_words:agreed])

    def _emit(self, new_words: list[str]) -> str:
        chunk = (" " if self.sent else "") + " ".join(new_words)
        self.sent += chunk
        self._sent_words += len(new_words)
        return chunk

    def finish(self, final: str) -> str:
        """The last chunk: the final text after what was sent ('' if the final changed a word already sent)."""
        if not final.startswith(self.sent):
            log.debug("final transcript %r no longer starts with the chunks sent (%r)", final, self.sent)
            return ""
        rest = final[len(self.sent):]
        self.sent = final
        return rest


class _Utterance:
    """One audio stream: VAD verdicts feeding a StreamingTranscription; runs in a worker thread per chunk.

    Background passes only for audio that arrives about as fast as it plays (a microphone): a client
    sending a recording at once would otherwise pay for a pass over its first half-second, then the
    final pass, instead of the one pass it needs.
    """

    def __init__(self, service: SttService, language: str | None) -> None:
        self.vad = copy.copy(service.vad)
        self.vad.reset()                # own state; the ONNX session is shared (thread-safe)
        self.threshold = service.vad_threshold
        stt = service.stt
        if language and stt.multilingual:   # the client's language, not detection (same model, other settings)
            stt = stt.with_config(dataclasses.replace(stt.cfg, language=language))
        self.stream = StreamingTranscription(stt, background=False)
        self.clock, self.speedup = service.clock, service.burst_speedup
        self._t0_s: float | None = None
        self._samples = 0
        self.words = StableWords()
        self.language = language
        self.last_partial: str | None = None
        self._speech = False

    def feed(self, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        now = self.clock()
        if self._t0_s is None:
            self._t0_s = now - len(pcm) / SAMPLE_RATE_HZ
        self._samples += len(pcm)
        if self._samples >= self.stream.interval_samples and not self.stream.passes:
            # until the first pass: is this stream paced like speech (give or take a buffered start), or a burst?
            audio_s, elapsed_s = self._samples / SAMPLE_RATE_HZ, now - self._t0_s
            self.stream.background = audio_s <= self.speedup * elapsed_s + BURST_SLACK_S
        probs = self.vad.probs(pcm)
        if probs:
            self._speech = max(probs) >= self.threshold
        self.stream.push(pcm, self._speech)


class SttHandler(ServiceHandler):
    """One connection: any number of Transcribe + audio requests, one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: SttService) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.info = service.info
        self.audio = AudioInput(service.max_audio_s)
        self._language: str | None = None
        self._utt: _Utterance | None = None

    async def handle(self, event: Event) -> bool:
        if Transcribe.is_type(event.type):
            self._language = self._check_language(parse(Transcribe, event).language)
        elif AudioStart.is_type(event.type):
            start = parse(AudioStart, event)
            await self.abort_stream()
            if self.audio.start(start.rate, start.width, start.channels):
                self._utt = _Utterance(self.service, self._language)
                await self.write_event(TranscriptStart(language=self._language or self.service.languages[0]).event())
        elif AudioChunk.is_type(event.type):
            chunk = parse(AudioChunk, event)
            pcm = self.audio.chunk(chunk.audio, chunk.rate, chunk.width, chunk.channels)
            if pcm is not None and self._utt is not None:
                await asyncio.to_thread(self._utt.feed, pcm)
                await self._send_stable(self._utt)
        elif AudioStop.is_type(event.type):
            tail = self.audio.stop()
            utt, self._utt = self._utt, None
            if tail is not None and utt is not None:
                room = int(self.service.max_audio_s * SAMPLE_RATE_HZ) - self.audio.samples
                tail = tail[: max(0, room)]   # the resampler's last samples never take a stream past the limit
                await asyncio.to_thread(utt.feed, tail)
                await self._finish(utt)
        return True

    def _check_language(self, language: str | None) -> str | None:
        if not language:
            return None
        base = language.split("-")[0].split("_")[0].lower()
        if base not in self.service.languages:
            raise ServiceError(f"language {language!r} is not one the model {self.service.stt.name} speaks; "
                               f"use one of {', '.join(self.service.languages[:20])}, or a multilingual model "
                               "(voxlens wyoming stt --model)", "unsupported-language")
        return base

    async def _send_stable(self, utt: _Utterance) -> None:
        partial = utt.stream.partial()
        if partial is None or partial.text == utt.last_partial:
            return
        utt.last_partial = partial.text
        chunk = utt.words.update(partial.text)
        if chunk:
            await self.write_event(TranscriptChunk(text=chunk).event())

    async def _finish(self, utt: _Utterance) -> None:
        stop_s = monotonic()
        final = await utt.stream.finish()
        text = final.text.strip()
        rest = utt.words.finish(text)
        if rest:
            await self.write_event(TranscriptChunk(text=rest).event())
        language = utt.language or final.language
        await self.write_event(Transcript(text=text, language=language).event())
        await self.write_event(TranscriptStop().event())
        log.info("wyoming stt: %r, %.0f ms after audio-stop (%s; passes: %d)", text, (monotonic() - stop_s) * 1000,
                 "last partial reused" if final.reused_partial else "one more pass", utt.stream.passes)

    async def abort_stream(self, refused: bool = False) -> None:
        utt, self._utt = self._utt, None
        if refused:
            self.audio.refuse()
        if utt is not None:
            await utt.stream.aclose()
