"""Wyoming wake word: Detect, audio-start/chunk/stop -> detection (each time a phrase is confirmed) / not-detected.

Why it wakes as the device does: the same two stages with the same settings
([wakeword] in the config): openWakeWord-format heads on the shared front end fire,
the verifier (by default Whisper + a phoneme match) confirms each fire, and a fire
turned down too early is looked at once more when the phrase has ended
(device/wakeword/confirm.py, the device's own rule). The stages run in a worker thread, chunk by
chunk, so one client's audio never holds up another's.

A stream may go on after a detection (a satellite streams all the time); not-detected
answers an audio-stop when nothing in that stream was confirmed.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Info
from wyoming.wake import Detect, Detection, NotDetected

from device.audio import Framer
from device.stt import SpeechToText
from device.wakeword import FRAME_SAMPLES, SAMPLE_RATE_HZ, WakeWordDetector
from device.wakeword.confirm import WakeConfirmer
from device.wakeword.frontend import FrontEnd
from device.wakeword.verifier import Verifier
from device.wyoming.audio import AudioInput
from device.wyoming.info import ServiceError, ServiceHandler, parse, wake_info
from voxlens.config import Config, WakewordConfig

log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")


@dataclass
class WakeService:
    """The heads, front end and verifiers, shared by every connection (each gets its own detector state)."""

    cfg: WakewordConfig
    front: FrontEnd
    verifiers: dict[str, Verifier]       # head name -> second stage; a head without one wakes on its own
    heads: list[tuple[str, str]]         # (name, phrase) per head, as the template detector loaded them
    info: Info = field(init=False)

    def __post_init__(self) -> None:
        self.info = wake_info(self.heads, self.cfg.verifier)

    @classmethod
    def load(cls, cfg: Config, stt: SpeechToText | None = None, front: FrontEnd | None = None) -> "WakeService":
        """[wakeword]'s heads and verifier, as the device loads them; the STT verifier's Whisper is [models] stt
        (or `stt`, to share one already loaded)."""
        from device.app import load_verifiers

        front = front or FrontEnd()
        template = WakeWordDetector(list(cfg.wakeword.heads), cfg.wakeword.threshold, cfg.wakeword.patience_frames,
                                    cfg.wakeword.refractory_s, front=front)
        if cfg.wakeword.verifier == "stt" and stt is None:
            stt = SpeechToText(cfg.models.stt, cfg.stt)
        verifiers = load_verifiers(cfg, template, stt)  # type: ignore[arg-type] - only the stt kind uses it
        return cls(cfg.wakeword, front, verifiers, [(h.name, h.phrase) for h in template.heads])

    def new_detector(self) -> WakeWordDetector:
        return WakeWordDetector(list(self.cfg.heads), self.cfg.threshold, self.cfg.patience_frames,
                                self.cfg.refractory_s, front=self.front)

    def select(self, names: list[str] | None) -> set[str]:
        """Detect's names -> head names ('hey-vox-lens', 'hey_vox_lens' and the phrase all match)."""
        if not names:
            return {name for name, _ in self.heads}
        known = {_key(n): n for n, _ in self.heads} | {_key(p): n for n, p in self.heads}
        chosen = {known[_key(n)] for n in names if _key(n) in known}
        if not chosen:
            raise ServiceError(f"no wake word named {', '.join(map(repr, names))} is loaded; this service has "
                               f"{', '.join(repr(n) for n, _ in self.heads)} (voxlens wyoming wake --head adds one)",
                               "unknown-wake-word")
        return chosen

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "WakeHandler":
        return WakeHandler(reader, writer, self)


class _Listening:
    """One audio stream through both stages (blocking: called in a worker thread)."""

    def __init__(self, service: WakeService, detector: WakeWordDetector, names: set[str]) -> None:
        self.names = names
        self.framer = Framer(FRAME_SAMPLES)
        self.confirmer = WakeConfirmer(detector, service.verifiers, service.cfg.second_look_s)   # the device's rule
        self.confirmed = 0
        self.confirmer.reset()

    def feed(self, pcm: np.ndarray, last: bool = False) -> list[tuple[str, int]]:
        """Audio in -> (head name, stream sample) of each confirmed wake."""
        frames = self.framer.push(pcm)
        if last and (tail := self.framer.flush()) is not None:
            frames.append(tail)
        woke: list[tuple[str, int]] = []
        for frame in frames:
            for decision in self.confirmer.process(frame, self.names):
                if decision.accepted:
                    woke.append((decision.det.name, self.confirmer.detector.samples_seen))
                else:
                    log.info("wake word %s turned down by the %s verifier (heard %r)", decision.det.name,
                             decision.verdict.verifier, decision.verdict.text)
        self.confirmed += len(woke)
        return woke


class WakeHandler(ServiceHandler):
    """One connection: Detect, then audio streams; a detector of its own, made on the first stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: WakeService) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.info = service.info
        self.audio = AudioInput()
        self._names = service.select(None)
        self._detector: WakeWordDetector | None = None
        self._listening: _Listening | None = None

    async def handle(self, event: Event) -> bool:
        if Detect.is_type(event.type):
            self._names = self.service.select(parse(Detect, event).names)
        elif AudioStart.is_type(event.type):
            start = parse(AudioStart, event)
            self._listening = None
            if self.audio.start(start.rate, start.width, start.channels):
                if self._detector is None:
                    self._detector = await asyncio.to_thread(self.service.new_detector)
                self._listening = _Listening(self.service, self._detector, self._names)
        elif AudioChunk.is_type(event.type):
            chunk = parse(AudioChunk, event)
            pcm = self.audio.chunk(chunk.audio, chunk.rate, chunk.width, chunk.channels)
            if pcm is not None and self._listening is not None:
                await self._detected(await asyncio.to_thread(self._listening.feed, pcm))
        elif AudioStop.is_type(event.type):
            tail = self.audio.stop()
            listening, self._listening = self._listening, None
            if tail is not None and listening is not None:
                await self._detected(await asyncio.to_thread(listening.feed, tail, True))
                if not listening.confirmed:
                    await self.write_event(NotDetected().event())
        return True

    async def _detected(self, woke: list[tuple[str, int]]) -> None:
        for name, sample in woke:
            log.info("wyoming wake: %s at %.2f s", name, sample / SAMPLE_RATE_HZ)
            await self.write_event(Detection(name=name, timestamp=sample * 1000 // SAMPLE_RATE_HZ).event())

    async def abort_stream(self, refused: bool = False) -> None:
        self._listening = None
        if refused:
            self.audio.refuse()
