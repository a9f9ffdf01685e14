"""The device as a Home Assistant satellite: its own audio loop, with Home Assistant's pipeline as the asker.

How Home Assistant drives a Wyoming satellite (its `wyoming` integration): it connects to the
satellite's server (port 10700 by custom), asks Describe (an Info with `satellite` makes it a
satellite), says RunSatellite when it is ready and pings every few seconds (no Pong within 5 s and it
drops the connection). After a wake word the satellite sends RunPipeline(asr -> tts) and the audio;
Home Assistant answers with Transcribe, Transcript, Synthesize and the answer's
AudioStart/AudioChunk/AudioStop (or an Error), and waits for Played.

Why the device keeps its loop: the wake word, endpointing, barge-in, earcons and device commands
(volume, timers, time...) stay on the device and work with no network; only what is not a device
command goes to Home Assistant, as the utterance's audio (its pipeline takes speech, not text), and
the answer audio it sends back is played. `PipelineLink` is the engine's Asker, as the gateway's gRPC
client is for `voxlens device run`; the engine does not know which one it talks to.

The protocol carries no turn id: a pipeline's events are told apart by counting the Transcribe each
pipeline starts with, so what a cancelled (barged-in) pipeline still sends is dropped, not played.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info, Satellite
from wyoming.ping import Ping, Pong
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.satellite import PauseSatellite, RunSatellite
from wyoming.server import AsyncEventHandler
from wyoming.snd import Played
from wyoming.tts import Synthesize

from device.audio import SAMPLE_RATE_HZ
from device.client_events import (AnswerTextEvent, AskEvent, AudioEvent, ClientError, GatewayError,
                                  GatewayUnavailable, RouteEvent, TurnEndEvent, TurnTimeout)
from device.commands import Understanding
from device.wyoming.info import VOXLENS, wake_info
from voxlens import __version__
from voxlens.cancel import CancelToken
from voxlens.config import DeviceConfig
from voxlens.timing import Clock, monotonic

if TYPE_CHECKING:
    from device.app import DeviceModels, DeviceRun
    from device.voice_output import Sink
    from voxlens.config import Config

log = logging.getLogger(__name__)

DEFAULT_URI = "tcp://0.0.0.0:10700"   # wyoming-satellite's port; Home Assistant is told it when adding the satellite
TIER = "home-assistant"               # the route a turn answered by the pipeline reports
CHUNK_SAMPLES = 1024                  # per AudioChunk sent, as Home Assistant's own satellites do
NOT_HEARD_SPOKEN = "Sorry, I didn't catch that."
# Home Assistant's pipeline error codes -> what the user hears (anything else: the engine's generic line)
SPOKEN_ERRORS = {"stt-no-text-recognized": NOT_HEARD_SPOKEN, "stt-stream-failed": NOT_HEARD_SPOKEN}


def satellite_info(heads: list[tuple[str, str]], verifier: str) -> Info:
    """Info with `satellite` (what makes Home Assistant add it as a satellite) and the wake words it runs."""
    info = wake_info(heads, verifier)
    info.satellite = Satellite(
        name="voxlens-satellite", attribution=VOXLENS, installed=True, version=__version__,
        description="VoxLens device: wake word, endpointing and device commands on the device; "
                    "everything else through Home Assistant's pipeline",
        has_vad=True, active_wake_words=[name for name, _ in heads], max_active_wake_words=len(heads),
        supports_trigger=False)
    return info


@dataclass
class _Turn:
    """One RunPipeline: its place among the connection's pipelines, and the events routed to it."""

    turn_id: str
    conn: SatelliteHandler
    index: int
    events: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)   # None: the connection is gone


class SatelliteHandler(AsyncEventHandler):
    """One connection from Home Assistant: Describe, Ping and RunSatellite/PauseSatellite here; the rest to the link."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: PipelineLink) -> None:
        super().__init__(reader, writer)
        self.link = link
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self.pipelines = 0   # RunPipeline sent on this connection
        self.started = 0     # Transcribe received: pipelines Home Assistant has started
        link.emit("satellite_connected", peer=self.peer)

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.link.info.event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif RunSatellite.is_type(event.type):
            self.link.attach(self)
        elif PauseSatellite.is_type(event.type):
            self.link.detach(self, "paused")
        elif not Pong.is_type(event.type):
            self.link.receive(self, event)
        return True

    async def disconnect(self) -> None:
        self.link.detach(self, "disconnected")


class PipelineLink:
    """The engine's Asker over Home Assistant's pipeline; `handler` is the Wyoming server's handler factory."""

    def __init__(self, cfg: DeviceConfig, info: Info, *, emit: Callable[[dict], None] | None = None,
                 clock: Clock = monotonic) -> None:
        self.cfg, self.info, self.clock = cfg, info, clock
        self._emit = emit or (lambda event: None)
        self._conn: SatelliteHandler | None = None   # the connection that said RunSatellite
        self._turn: _Turn | None = None
        self._answered: SatelliteHandler | None = None   # sent answer audio: owed a Played when the turn is over
        self._writes: set[asyncio.Task] = set()

    def emit(self, event: str, **fields: object) -> None:
        self._emit({"event": event, "t_s": round(self.clock(), 4), **fields})

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> SatelliteHandler:
        return SatelliteHandler(reader, writer, self)

    @property
    def running(self) -> bool:
        return self._conn is not None

    # ------------------------------------------------------------ connections
    def attach(self, conn: SatelliteHandler) -> None:
        self._conn = conn
        self.emit("satellite_running", peer=conn.peer)

    def detach(self, conn: SatelliteHandler, reason: str) -> None:
        if self._turn is not None and self._turn.conn is conn:
            self._turn.events.put_nowait(None)
        if self._conn is conn:
            self._conn = None
            self.emit(f"satellite_{reason}", peer=conn.peer)

    def receive(self, conn: SatelliteHandler, event: Event) -> None:
        """Route one event to the turn whose pipeline sent it; a cancelled pipeline's leftovers are dropped."""
        if Transcribe.is_type(event.type):
            conn.started += 1
        turn = self._turn
        if turn is None or turn.conn is not conn:
            log.debug("satellite: %s outside a turn, ignored", event.type)
            return
        current = conn.started - 1 == turn.index
        early_error = Error.is_type(event.type) and conn.started <= turn.index   # refused before its STT started
        if current or early_error:
            turn.events.put_nowait(event)

    def watch(self, emit: Callable[[dict], None] | None) -> Callable[[dict], None]:
        """The device's emit, wrapped: a turn Home Assistant answered with audio owes it Played once played."""
        def on_event(event: dict) -> None:
            if event["event"] == "turn" and self._answered is not None:
                conn, self._answered = self._answered, None
                self._write(conn, Played().event())
            if emit is not None:
                emit(event)
        return on_event

    def _write(self, conn: SatelliteHandler, event: Event) -> None:
        async def write() -> None:
            try:
                await conn.write_event(event)
            except (ConnectionError, OSError) as exc:
                log.info("satellite: could not send %s (%s)", event.type, exc)
        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # ------------------------------------------------------------ the Asker
    async def __aenter__(self) -> PipelineLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*self._writes, return_exceptions=True)

    def new_turn_id(self) -> str:
        return uuid.uuid4().hex[:16]

    def cancel(self, turn_id: str) -> bool:
        """The protocol has no cancel: the turn stops listening, and its pipeline's leftovers are dropped."""
        turn = self._turn
        if turn is not None and turn.turn_id == turn_id:
            self._turn = None
        return True

    async def ask(self, query: Understanding, *, turn_id: str | None = None, audio: np.ndarray | None = None,
                  language: str = "", cancel: CancelToken | None = None) -> AsyncIterator[AskEvent]:
        """RunPipeline(asr -> tts) with the utterance's audio; yields the answer's text and audio until its end.

        Raises GatewayUnavailable when no Home Assistant is connected or it goes away mid-turn, TurnTimeout
        past [device] turn_timeout_s, GatewayError when the pipeline says Error."""
        turn_id = turn_id or self.new_turn_id()
        conn = self._conn
        if conn is None:
            raise GatewayUnavailable("no Home Assistant is running this satellite: add it in Home Assistant "
                                     "(Wyoming Protocol integration, this host and port; docs/wyoming.md)",
                                     code="NOT_CONNECTED")
        if audio is None or not len(audio):
            raise ClientError("the satellite has no audio for this turn; Home Assistant's pipeline takes speech",
                              retryable=False, code="NO_AUDIO")
        turn = self._turn = _Turn(turn_id, conn, conn.pipelines)
        conn.pipelines += 1
        sent_s = self.clock()
        unregister = cancel.on_cancel(lambda: self.cancel(turn_id)) if cancel is not None else (lambda: None)
        try:
            await self._send_utterance(conn, audio)
            yield RouteEvent(turn_id, TIER, conn.peer, "wyoming pipeline", False, self.clock())
            async for event in self._answer(turn, sent_s):
                yield event
        finally:
            unregister()
            if self._turn is turn:
                self._turn = None

    async def _send_utterance(self, conn: SatelliteHandler, audio: np.ndarray) -> None:
        pcm = np.asarray(audio, dtype=np.int16)
        fmt = {"rate": SAMPLE_RATE_HZ, "width": 2, "channels": 1}
        events = [RunPipeline(start_stage=PipelineStage.ASR, end_stage=PipelineStage.TTS).event(),
                  AudioStart(timestamp=0, **fmt).event()]
        for i in range(0, len(pcm), CHUNK_SAMPLES):
            events.append(AudioChunk(audio=pcm[i:i + CHUNK_SAMPLES].tobytes(), timestamp=i * 1000 // SAMPLE_RATE_HZ,
                                     **fmt).event())
        events.append(AudioStop(timestamp=len(pcm) * 1000 // SAMPLE_RATE_HZ).event())
        try:
            for event in events:
                await conn.write_event(event)
        except (ConnectionError, OSError) as exc:
            raise GatewayUnavailable(f"Home Assistant at {conn.peer} went away while the utterance was sent "
                                     f"({type(exc).__name__})", code="DISCONNECTED") from None

    async def _answer(self, turn: _Turn, sent_s: float) -> AsyncIterator[AskEvent]:
        """The pipeline's events -> the engine's, until the answer audio ends."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self.cfg.turn_timeout_s
        converter: AudioChunkConverter | None = None
        timings: dict[str, float] = {}
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline_s - loop.time())):
                    event = await turn.events.get()
            except TimeoutError:
                raise TurnTimeout(f"Home Assistant's pipeline gave no answer within {self.cfg.turn_timeout_s} s "
                                  "(raise [device] turn_timeout_s if its models are slow)") from None
            now_s = self.clock()
            if event is None:
                raise GatewayUnavailable(f"Home Assistant at {turn.conn.peer} closed the connection mid-turn",
                                         code="DISCONNECTED")
            if Error.is_type(event.type):
                err = Error.from_event(event)
                raise GatewayError(f"Home Assistant's pipeline failed ({err.code}): {err.text}",
                                   spoken=SPOKEN_ERRORS.get(err.code or ""), code=err.code or "")
            if Transcript.is_type(event.type):
                timings["pipeline.transcript"] = round((now_s - sent_s) * 1000, 1)
                self.emit("pipeline_transcript", turn_id=turn.turn_id, text=Transcript.from_event(event).text)
            elif Synthesize.is_type(event.type):
                yield AnswerTextEvent(turn.turn_id, Synthesize.from_event(event).text, now_s)
            elif AudioStart.is_type(event.type):
                self._answered = turn.conn   # played to its end or cut by barge-in, the answer owes a Played
                timings.setdefault("pipeline.first_audio", round((now_s - sent_s) * 1000, 1))
                start = AudioStart.from_event(event)
                converter = AudioChunkConverter(rate=start.rate, width=2, channels=1)
            elif AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                converter = converter or AudioChunkConverter(rate=chunk.rate, width=2, channels=1)
                pcm = np.frombuffer(converter.convert(chunk).audio, dtype=np.int16)
                yield AudioEvent(turn.turn_id, pcm, converter.rate, now_s)
            elif AudioStop.is_type(event.type):
                yield TurnEndEvent(turn.turn_id, "stop", 0, 0, now_s, timings)
                return


async def run_satellite(cfg: Config, models: DeviceModels, source: AsyncIterable[np.ndarray], sink: Sink, *,
                        uri: str = DEFAULT_URI, emit: Callable[[dict], None] | None = None,
                        linger_s: float = 15.0) -> DeviceRun:
    """Serve the satellite on `uri` and run the device on `source` until it ends (then stop serving).

    Emits `satellite_serving` (with the bound URI) once Home Assistant can connect, then the device's events
    and the link's (`satellite_connected`, `satellite_running`, `pipeline_transcript`, ...)."""
    from device.app import run_device
    from device.wyoming.server import WyomingServer

    heads = [(head.name, head.phrase) for head in models.wake.heads]
    verifier = cfg.wakeword.verifier if models.verifiers else "none"
    link = PipelineLink(cfg.device, satellite_info(heads, verifier), emit=emit)
    async with WyomingServer(uri, link.handler) as server:
        link.emit("satellite_serving", uri=server.uri)
        return await run_device(cfg, models, source, sink, emit=link.watch(emit), linger_s=linger_s, asker=link)
