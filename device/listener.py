"""The audio loop: microphone frames -> wake word, endpointing and streaming STT -> the turn engine.

Why a loop of its own: every stage runs per 80 ms frame and must keep up with
real time, while a turn (gateway, TTS) runs concurrently so that the wake word
and the user's voice can barge in at any moment. The loop never awaits a turn;
it only hands the engine events and goes on reading frames.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterable, Callable

import numpy as np

from device.audio import SAMPLE_RATE_HZ
from device.engine import TurnEngine
from device.stt import SpeechToText, StreamingTranscription
from device.utterance import UtteranceStage
from device.vad import Endpointer, VadEvent
from device.wakeword import FRAME_SAMPLES, Detection, WakeWordDetector
from device.wakeword.verifier import Verdict, Verifier
from voxlens.timing import Clock, monotonic

log = logging.getLogger(__name__)


@dataclass
class _SecondLook:
    """A fire the verifier rejected, waiting for the end of the phrase to be verified once more."""

    det: Detection
    frames_left: int


class AudioLoop:
    """Feeds frames to the stages and the engine. One instance per audio stream."""

    def __init__(self, engine: TurnEngine, *, wake: WakeWordDetector, endpointer: Endpointer, stt: SpeechToText,
                 clock: Clock = monotonic, emit: Callable[[dict], None] | None = None,
                 verifiers: dict[str, Verifier] | None = None, second_look_s: float = 0.0) -> None:
        self.engine, self.wake, self.endpointer, self.stt = engine, wake, endpointer, stt
        self.utterance = UtteranceStage(endpointer, stt)
        self.verifiers = verifiers or {}   # head name -> second stage; a head without one wakes on its own
        self.second_look_frames = int(round(second_look_s * SAMPLE_RATE_HZ / FRAME_SAMPLES))
        self._look: _SecondLook | None = None
        self.clock = clock
        self._emit = emit or (lambda event: None)
        self.samples = 0                 # samples received on this stream
        self._t0_s: float | None = None  # clock time at which the stream's sample 0 arrived
        self._ep_base = 0                # stream offset of the endpointer's sample 0
        self._finals: set[asyncio.Task] = set()

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

    async def feed(self, frame: np.ndarray) -> None:
        if self._t0_s is None:
            self._t0_s = self.clock() - len(frame) / SAMPLE_RATE_HZ
        self.samples += len(frame)
        for det in self.wake.process(frame):
            if await self._confirm(det, det.audio):
                return
        if self._look is not None and await self._second_look():
            return
        if not self.engine.hears_speech:   # the engine's policy; this loop only pumps frames
            if self.utterance.in_speech or self.utterance.transcribing:
                self._restart_endpointing()
            return
        for event in await self.utterance.feed(frame):
            await self._on_vad(event)
        self._check_partial()

    async def _confirm(self, det: Detection, audio: np.ndarray | None, second: bool = False) -> bool:
        """Verify a fire and wake on a yes; a first no waits for the phrase to end and looks again."""
        verdict = await self._verify(det, audio)
        at_s = round(self.samples / SAMPLE_RATE_HZ, 3)
        if verdict is not None and not verdict.accepted:
            self.emit("wake_rejected", name=det.name, score=round(det.score, 3), at_s=at_s, verifier=verdict.to_dict(),
                      second_look=second)
            if not second and self.second_look_frames > 0:
                self._look = _SecondLook(det, self.second_look_frames)
            return False
        self._look = None
        self.wake.forget_audio()
        self.emit("wake", name=det.name, score=round(det.score, 3), at_s=at_s, second_look=second,
                  **({"verifier": verdict.to_dict()} if verdict is not None else {}))
        await self.engine.wake()
        self._restart_endpointing()
        return True

    async def _second_look(self) -> bool:
        """Once the head's score falls below its threshold (the phrase has ended), or the look's time is up,
        verify again on the audio up to now (device/wakeword/eval.py's second_look_frame measures the same rule)."""
        look = self._look
        assert look is not None
        look.frames_left -= 1
        if self.wake.last_scores.get(look.det.name, 0.0) >= self.wake.threshold and look.frames_left > 0:
            return False
        self._look = None
        return await self._confirm(look.det, self.wake.recent_audio(), second=True)

    async def _verify(self, det: Detection, audio: np.ndarray | None = None) -> Verdict | None:
        """Ask the head's verifier off the event loop (answers keep playing); frames queue at the source meanwhile.

        A verifier that fails at run time lets the wake stand: better one false wake than a deaf device.
        """
        verifier = self.verifiers.get(det.name)
        audio = det.audio if audio is None else audio
        if verifier is None or audio is None:
            return None
        try:
            return await asyncio.to_thread(verifier.verify, audio, det.window)
        except Exception as exc:  # noqa: BLE001 - logged, and the wake stands
            log.warning("wake-word verifier %s failed (%s: %s); waking without it", verifier.kind, type(exc).__name__, exc)
            return None

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
        self.emit("transcript_final", text=text, language=transcript.language, timings_ms=transcript.timings.as_ms())
        if not text:
            return
        self.engine.utterance(text, speech_end_s=speech_end_s, endpoint_s=endpoint_s, transcript_s=transcript_s,
                              audio=stream.audio)

    def _check_partial(self) -> None:
        text = self.utterance.new_partial()
        if text is None:
            return
        self.emit("transcript_partial", text=text)
        if self.engine.partial(text):
            self.utterance.hint_complete()
