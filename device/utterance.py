"""The utterance stage: endpointing (Silero) and streaming speech-to-text as one, fed a frame at a time.

Why one stage: the device, `voxlens listen` and `voxlens bench speech` each glued the endpointer to
`StreamingTranscription` by hand, and each decided "is this frame speech" its own way (the frame's
highest probability against the start threshold) instead of with the endpointer's hysteresis, so
the three could disagree on where a pause begins. Here the transcription hears the endpointer's own
verdict, and every caller gets the same events and the same transcripts.

The caller keeps the policy: it decides whether an utterance is transcribed (`begin`) and what a
complete command means (`hint_complete`); the stage only pumps frames. One rule joins the two halves:
while an utterance is transcribed, Smart Turn's "complete" waits for the words at that pause, and words
that end open ("set a timer for") veto it (device/turn_text.py): prosody alone cut such pauses.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AsyncIterable, AsyncIterator, Callable

import numpy as np

from device.audio import SAMPLE_RATE_HZ
from device.stt import SpeechToText, StreamingTranscription, Transcript
from device.turn_text import ends_open
from device.vad import Endpointer, VadEvent
from voxlens.stage import StreamStage
from voxlens.timing import Timings, monotonic

if TYPE_CHECKING:
    from device.commands import Completion


class UtteranceStage:
    """Frames in; speech_start / speech_end events out; the utterance transcribed while it is spoken."""

    def __init__(self, endpointer: Endpointer, stt: SpeechToText, *, prompt: str | None = None,
                 on_pass: Callable[[], None] | None = None) -> None:
        self.endpointer = endpointer
        self.stt = stt
        self.prompt = prompt
        self.on_pass = on_pass   # each transcription pass done (worker thread): new words to look at now
        self._stream: StreamingTranscription | None = None
        self._last_partial = ""
        self._command = ""      # the latest partial, when the grammar found it a whole command

    @property
    def in_speech(self) -> bool:
        return self.endpointer.in_speech

    @property
    def transcribing(self) -> bool:
        return self._stream is not None

    def push(self, frame: np.ndarray) -> list[VadEvent]:
        """One frame through the endpointer; the utterance being transcribed hears it with the endpointer's verdict."""
        events = self.endpointer.process(frame)
        return events + self._transcribe(frame)

    async def feed(self, frame: np.ndarray) -> list[VadEvent]:
        """`push`, with the endpointer (Silero, and Smart Turn when it has it) in worker threads, not on the event loop.

        The transcription hears the frame before Smart Turn is asked about the pause it ends: the pass that
        pause starts (the likely final) then runs beside the model instead of ~50-100 ms behind it."""
        events = await asyncio.to_thread(self.endpointer.consume, frame)
        events += self._transcribe(frame)
        if self.endpointer.asking:
            events += await asyncio.to_thread(self.endpointer.answer)
            events += self.text_verdict()
        return events

    def _transcribe(self, frame: np.ndarray) -> list[VadEvent]:
        if self._stream is None:
            return []
        self._stream.push(frame, self.endpointer.voiced_for_stt)
        return self.text_verdict()

    def text_verdict(self) -> list[VadEvent]:
        """Smart Turn called the pause complete: the words at it, once decoded, end the turn or veto that."""
        if self._stream is None or not self.endpointer.awaiting_text:
            return []
        settled = self._stream.settled()   # the words at the pause Smart Turn called complete, once decoded
        if settled is None:
            return []
        return self.endpointer.text_verdict(ends_open(settled.text, settled.language or "en"))

    def begin(self, start: VadEvent) -> None:
        """Transcribe the utterance `start` opened, from its audio so far (pre-roll included)."""
        self.endpointer.await_text = True
        self._stream = StreamingTranscription(self.stt, prompt=self.prompt, on_pass=self.on_pass)
        self._last_partial = ""
        self._command = ""
        if start.audio is not None and len(start.audio):
            self._stream.push(start.audio, True)

    def new_partial(self) -> str | None:
        """The partial transcript when it changed since the last call, else None."""
        partial = self._stream.partial() if self._stream is not None else None
        if partial is None or partial.text == self._last_partial:
            return None
        self._last_partial = partial.text
        return partial.text

    def settled(self) -> Transcript | None:
        """The partial that covers every voiced frame so far, decoded as a final (what the final would be now)."""
        return self._stream.settled() if self._stream is not None else None

    def hint_complete(self, text: str, completion: Completion) -> None:
        """What the grammar made of the latest partial `text` (Grammar.completion): a whole command ends on the
        shorter silence, or sooner (`end_on_command`; a closed one sooner still); words that no longer are one
        (the user went on) take that back."""
        self.endpointer.hint_complete(bool(completion), completion == "closed")
        self._command = text.strip() if completion else ""

    def end_on_command(self) -> list[VadEvent]:
        """End the turn at the pause once the words there, decoded as the final will be, are the whole command
        the grammar matched ([vad] settled_command_end).

        Why not wait for `short_silence_ms`: by then the final is already decoded (it is this same pass), so
        the wait bought nothing but delay; the words themselves say the command is whole. Voice coming back
        before the pass ends makes it moot (`settled` covers every voiced frame, and a voiced frame ends nothing)."""
        if not (self.endpointer.cfg.settled_command_end and self._command and self.in_speech):
            return []
        settled = self.settled()
        if settled is None or settled.text.strip() != self._command:
            return []
        return self.endpointer.end_at_pause("command")

    def end(self) -> StreamingTranscription | None:
        """Hand over the ended utterance's transcription (`await stream.finish()` for the final)."""
        stream, self._stream = self._stream, None
        self.endpointer.await_text = False
        self._command = ""
        return stream

    def end_now(self) -> list[VadEvent]:
        """End the utterance in progress at once (end of input)."""
        return self.endpointer.end_now()

    def stage(self, *, streaming: bool = True) -> StreamStage[np.ndarray, Utterance]:
        """This stage in the one stage shape (voxlens/stage.py): push frames, end_input, `async for` utterances."""
        return StreamStage(lambda frames: utterances(frames, self, streaming=streaming))

    def restart(self) -> StreamingTranscription | None:
        """Drop the utterance in progress and endpoint afresh; returns its transcription for the caller to `aclose()`."""
        stream = self.end()
        self.endpointer.reset()
        self._last_partial = ""
        return stream


@dataclass
class Utterance:
    start_s: float
    end_s: float
    text: str
    reason: str
    timings: Timings = field(default_factory=Timings)
    reused_partial: bool = False    # the final was the last partial: nothing left to transcribe after the end
    turn_probability: float | None = None   # Smart Turn's last verdict on this utterance, if it was asked

    def to_dict(self) -> dict:
        turn = {} if self.turn_probability is None else {"turn_probability": round(self.turn_probability, 3)}
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "text": self.text,
                "end_reason": self.reason, **turn, "timings": self.timings.as_ms()}


async def utterances(frames: AsyncIterable[np.ndarray], stage: UtteranceStage, *,
                     streaming: bool = True) -> AsyncIterator[Utterance]:
    """Each utterance in a frame source with its transcript. streaming=True transcribes while it is spoken
    (as the device does); otherwise once it has ended. Timing `listen.end_to_text`: endpoint -> final text."""
    start_sample = 0

    async def final(ev: VadEvent) -> Utterance:
        decided = monotonic()
        stream = stage.end()
        if stream is not None:
            t: Transcript = await stream.finish()
        else:
            t = await asyncio.to_thread(stage.stt.transcribe, ev.audio, prompt=stage.prompt)
        timings = Timings()
        verdicts = stage.endpointer.verdicts
        if ev.turn_probability is not None and verdicts:
            timings.records.extend(verdicts[-1].timings.records)   # turn.features, turn.infer
        timings.records.extend(t.timings.records)
        timings.add("listen.end_to_text", decided)
        return Utterance(start_sample / SAMPLE_RATE_HZ, ev.sample / SAMPLE_RATE_HZ, t.text, ev.reason, timings,
                         t.reused_partial, ev.turn_probability)

    try:
        async for frame in frames:
            for ev in await stage.feed(frame):
                if ev.kind == "speech_start":
                    start_sample = ev.sample
                    if streaming:
                        stage.begin(ev)
                else:
                    yield await final(ev)
        for ev in stage.end_now():
            yield await final(ev)
    finally:
        stream = stage.end()
        if stream is not None:
            await stream.aclose()
