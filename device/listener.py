"""The audio loop: microphone frames -> wake word, endpointing and streaming STT -> the turn engine.

Why a loop of its own: every stage runs per 80 ms frame and must keep up with
real time, while a turn (gateway, TTS) runs concurrently so that the wake word
and the user's voice can barge in at any moment. The loop never awaits a turn;
it only hands the engine events and goes on reading frames.
"""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterable, Callable

import numpy as np

from device.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ, Framer
from device.engine import TurnEngine
from device.stt import SpeechToText, StreamingTranscription
from device.utterance import UtteranceStage
from device.vad import Endpointer, VadEvent
from device.wakeword import WakeWordDetector
from device.wakeword.confirm import WakeConfirmer, WakeDecision
from device.wakeword.verifier import Verifier
from voxlens.timing import Clock, monotonic

log = logging.getLogger(__name__)


class AudioLoop:
    """Feeds frames to the stages and the engine. One instance per audio stream."""

    def __init__(self, engine: TurnEngine, *, wake: WakeWordDetector, endpointer: Endpointer, stt: SpeechToText,
                 clock: Clock = monotonic, emit: Callable[[dict], None] | None = None,
                 verifiers: dict[str, Verifier] | None = None, second_look_s: float = 0.0) -> None:
        self.engine, self.wake, self.endpointer, self.stt = engine, wake, endpointer, stt
        self.utterance = UtteranceStage(endpointer, stt, on_pass=self._pass_done)
        self.confirmer = WakeConfirmer(wake, verifiers, second_look_s)
        self._wake_frames = Framer(FRAME_SAMPLES)   # the wake word takes 80 ms frames; the rest any block
        self.clock = clock
        self._emit = emit or (lambda event: None)
        self.samples = 0                 # samples received on this stream
        self._t0_s: float | None = None  # clock time at which the stream's sample 0 arrived
        self._ep_base = 0                # stream offset of the endpointer's sample 0
        self._finals: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frame_lock = asyncio.Lock()   # a frame and a look between frames never interleave

    def emit(self, event: str, **fields: object) -> None:
        self._emit({"event": event, "t_s": round(self.clock(), 4), **fields})

    def _time_of(self, endpointer_sample: int) -> float:
        """Clock time at which a sample (in endpointer offsets) was captured.

        Anchored on the first frame: a microphone (or a paced file) delivers samples at a
        steady rate, so any lag of this loop behind real time counts as latency, as the user feels it.
        """
        assert self._t0_s is not None
        return self._t0_s + (self._ep_base + endpointer_sample) / SAMPLE_RATE_HZ

    def _restart_endpointing(self) -> None:
        stream = self.utterance.restart()
        if stream is not None:
            self._spawn(stream.aclose())
        self._ep_base = self.samples

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._finals.add(task)
        task.add_done_callback(self._finals.discard)

    async def run(self, source: AsyncIterable[np.ndarray]) -> None:
        try:
            async for frame in source:
                await self.feed(frame)
        finally:
            await self.drain()

    async def drain(self) -> None:
        """Wait for transcripts still being finalised (end of a file, shutdown)."""
        if self.utterance.transcribing and self.utterance.in_speech:
            for event in self.utterance.end_now():
                await self._on_vad(event)
        while self._finals:
            await asyncio.gather(*list(self._finals), return_exceptions=True)

    def _pass_done(self) -> None:
        """A transcription pass ended (in its worker thread): look at its words now, not at the next frame
        (up to 80 ms later); a whole command at a pause ends the turn that much sooner."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._look_between_frames)
        except RuntimeError:   # the loop has closed: nothing is listening any more
            pass

    def _look_between_frames(self) -> None:
        self._spawn(self._between_frames())

    async def _between_frames(self) -> None:
        async with self._frame_lock:
            if self.utterance.transcribing and self.engine.hears_speech:
                await self._check_partial(preempt=False)   # questions leave on the frame's beat, as measured

    async def feed(self, frame: np.ndarray) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        async with self._frame_lock:
            await self._feed(frame)

    async def _feed(self, frame: np.ndarray) -> None:
        if self._t0_s is None:
            self._t0_s = self.clock() - len(frame) / SAMPLE_RATE_HZ
        self.samples += len(frame)
        # the wake rule (fires, verifier, second look) off the loop: answers keep playing meanwhile
        for wake_frame in self._wake_frames.push(frame):
            for decision in await self.confirmer.aprocess(wake_frame):
                if decision.accepted:
                    await self._wake(decision)
                    return
                self.emit("wake_rejected", name=decision.det.name, score=round(decision.det.score, 3),
                          at_s=round(self.samples / SAMPLE_RATE_HZ, 3), verifier=decision.verdict.to_dict(),
                          second_look=decision.second_look)
        if not self.engine.hears_speech:   # the engine's policy; this loop only pumps frames
            if self.utterance.in_speech or self.utterance.transcribing:
                self._restart_endpointing()
            return
        vetoes = self.endpointer.text_vetoes
        for event in await self.utterance.feed(frame):
            await self._on_vad(event)
        if self.endpointer.text_vetoes != vetoes:   # Smart Turn said complete; the words end open
            settled = self.utterance.settled()
            self.emit("turn_held", text=settled.text if settled is not None else "")
        await self._check_partial()

    async def _wake(self, decision: WakeDecision) -> None:
        """A confirmed wake: say so, wake the engine, and endpoint afresh."""
        det, verdict = decision.det, decision.verdict
        self.emit("wake", name=det.name, score=round(det.score, 3), at_s=round(self.samples / SAMPLE_RATE_HZ, 3),
                  second_look=decision.second_look, **({"verifier": verdict.to_dict()} if verdict is not None else {}))
        await self.engine.wake()
        self._restart_endpointing()

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind == "speech_start":
            self.emit("speech_start", at_s=round((self._ep_base + event.sample) / SAMPLE_RATE_HZ, 3))
            await self.engine.speech_started()
            if not self.engine.transcribes:
                return
            self.utterance.begin(event)
            return
        stream = self.utterance.end()
        if stream is None:
            return
        speech_end_s = self._time_of(event.sample)
        endpoint_s = self.clock()
        self.emit("speech_end", reason=event.reason, at_s=round((self._ep_base + event.sample) / SAMPLE_RATE_HZ, 3),
                  endpoint_delay_ms=round((endpoint_s - speech_end_s) * 1000, 1), turn_probability=event.turn_probability)
        self._spawn(self._finish(stream, speech_end_s, endpoint_s))

    async def _finish(self, stream: StreamingTranscription, speech_end_s: float, endpoint_s: float) -> None:
        transcript = await stream.finish()
        transcript_s = self.clock()
        text = transcript.text.strip()
        self.emit("transcript_final", text=text, language=transcript.language,
                  language_prob=round(transcript.language_prob, 3), timings_ms=transcript.timings.as_ms(),
                  **({"detected_language": transcript.detected_language} if transcript.detected_language else {}))
        if not text:
            return
        self.engine.utterance(text, speech_end_s=speech_end_s, endpoint_s=endpoint_s, transcript_s=transcript_s,
                              audio=stream.audio, language=transcript.language)

    async def _check_partial(self, *, preempt: bool = True) -> None:
        text = self.utterance.new_partial()
        if text is not None:
            self.emit("transcript_partial", text=text)
            self.utterance.hint_complete(text, await self.engine.partial(text))
        # the words at the pause are that whole command, or they decide Smart Turn's "complete"
        for event in self.utterance.end_on_command() or self.utterance.text_verdict():
            await self._on_vad(event)
            return
        settled = self.utterance.settled() if preempt else None
        if settled is not None and settled.text.strip():
            await self.engine.preempt(settled.text.strip(), settled.language)   # the question leaves before the endpoint
