"""The turn state machine: idle -> listening -> thinking -> speaking -> follow-up -> idle.

Why: the wake word, endpointing, STT, the grammar, the gateway and TTS each work
alone; this decides what happens between them: what a transcript means, when to
speak, when to stop (barge-in overtakes everything: it trips the turn's one cancel
token, voxlens/cancel.py, so synthesis, playback and the gateway turn stop at once, and
returns without waiting for the turn to unwind), and when the user may go on without the wake word.

The audio loop (frames -> wake word / VAD / STT) drives it through six calls:
`wake()`, `speech_started()`, `partial(text) -> end_now`, `preempt(text)` (a settled partial: the
question is sent before the endpoint, device/preemptive.py), `utterance(text, ...)`, `timer_fired(timer)`.
Output goes through a `Speaker` (earcons and streamed speech).
Every state change and turn is reported to `emit` as a JSON-ready dict.
"""
from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field
from typing import AsyncIterable, AsyncIterator, Callable, Protocol

import numpy as np

from device.actions import DeviceActions, timer_done_phrase
from device.platform import Timer
from device.client_events import (OFFLINE_SPOKEN, AnswerTextEvent, AskEvent, AudioEvent, ClientError,
                                  GatewayUnavailable, RouteEvent, TextEvent, ToolEvent, TurnEndEvent, TurnTimeout)
from device.command_recheck import Recheck, pick, worth_a_recheck
from device.commands import Completion, Grammar, Understanding, grammar_for
from device.preemptive import PreemptiveTurn
from voxlens.cancel import CancelToken
from voxlens.config import DeviceConfig
from voxlens.phrases import translate
from voxlens.timing import Clock, Timings, monotonic

log = logging.getLogger(__name__)

NOTHING_TO_REPEAT = "I haven't said anything yet."


class State(str, enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    FOLLOW_UP = "follow_up"


class Speaker(Protocol):
    """Earcons and speech out. speak() returns when everything was played, stop() was called or its `cancel`
    token (the turn's) tripped. `language` (set by the engine per turn) picks the voice that speaks."""

    language: str

    async def earcon(self, name: str, cancel: CancelToken | None = None) -> None: ...
    async def speak(self, text: str | AsyncIterable[str], on_first_audio: Callable[[], None] | None = None,
                    cancel: CancelToken | None = None) -> None: ...
    async def play(self, audio: AsyncIterable[tuple[np.ndarray, int]],
                   on_first_audio: Callable[[], None] | None = None, cancel: CancelToken | None = None) -> None: ...
    def stop(self) -> None: ...


class Asker(Protocol):
    """Whoever answers what the device cannot: the gateway's gRPC client, or a Wyoming pipeline (satellite).

    ask() yields typed events until the turn ends and raises ClientError (with a spoken line) when it
    cannot; `audio` is the utterance (16 kHz int16) for askers that take speech rather than words. When
    `cancel` trips, the asker sends its Cancel at once and the events end."""

    def new_turn_id(self) -> str: ...
    def ask(self, query: Understanding, *, turn_id: str | None = None, audio: np.ndarray | None = None,
            language: str = "", cancel: CancelToken | None = None) -> AsyncIterator[AskEvent]: ...
    def cancel(self, turn_id: str) -> bool: ...


@dataclass
class TurnRecord:
    """One turn, for the events file and the summary line."""

    text: str
    kind: str = ""                 # command | intent | query | empty
    name: str = ""                 # command or intent name
    route: str = ""                # "small:model" / "device"
    answer: str = ""
    outcome: str = "ok"            # ok | cancelled | offline | error | timeout
    timings: Timings = field(default_factory=Timings)
    language: str = ""             # the utterance's language (heard); "": the device's [device] language
    cancel: CancelToken = field(default_factory=CancelToken, repr=False, compare=False)   # barge-in trips it once

    def summary(self) -> str:
        ms = self.timings.as_ms()
        stages = " ".join(f"{k}={v:.0f}ms" for k, v in ms.items())
        return f"[{self.kind}{':' + self.name if self.name else ''}] {self.text!r} -> {self.route or '-'} ({self.outcome}) {stages}"


class TurnEngine:
    def __init__(self, cfg: DeviceConfig, *, grammar: Grammar, actions: DeviceActions, speaker: Speaker,
                 client: Asker | None = None, emit: Callable[[dict], None] | None = None,
                 clock: Clock = monotonic, barge_in_on_speech: bool = True, preemptive: bool = False,
                 recheck: Callable[[np.ndarray, str], str] | None = None) -> None:
        self.cfg = cfg
        self.grammar, self.actions, self.speaker, self.client = grammar, actions, speaker, client
        self._emit = emit or (lambda event: None)
        self.clock = clock
        self.barge_in_on_speech = barge_in_on_speech
        self.preemptive = preemptive   # ask the gateway on a settled partial ([device] preemptive)
        # (audio, prompt) -> text: Whisper again, prompted with the command vocabulary, for a near-miss command
        self.recheck = recheck
        self._preemptive: PreemptiveTurn | None = None
        self._preempt_seen: tuple[str, str] = ("", "")   # the last settled partial offered (asked about once)
        self.state = State.IDLE
        self.turns: list[TurnRecord] = []
        self._turn_task: asyncio.Task | None = None
        self._turn_id = ""
        self._turn_cancel: CancelToken | None = None    # the running turn's token (TurnRecord.cancel)
        self._unwinding: set[asyncio.Task] = set()      # turns barged in on, still unwinding on their own
        self._window_task: asyncio.Task | None = None  # listening / follow-up timeout
        self._last_answer = ""
        self._earcon_task: asyncio.Task | None = None
        self._alerts: set[asyncio.Task] = set()  # timer notices being played

    # ------------------------------------------------------------ reporting
    def emit(self, event: str, **fields: object) -> None:
        self._emit({"event": event, "t_s": round(self.clock(), 4), **fields})

    def _set(self, state: State, reason: str = "") -> None:
        if state is self.state:
            return
        self.emit("state", previous=self.state.value, state=state.value, reason=reason)
        self.state = state
        if state is not State.LISTENING:   # utterance() has already taken the preemptive turn it adopts
            self._preempt_seen = ("", "")
            self._drop_preemptive(None, reason)
        self._cancel_window()
        if state is State.LISTENING:
            self._window_task = asyncio.get_running_loop().create_task(
                self._expire(State.LISTENING, self.cfg.listen_timeout_s, "no speech"))
        elif state is State.FOLLOW_UP:
            self._window_task = asyncio.get_running_loop().create_task(
                self._expire(State.FOLLOW_UP, self.cfg.follow_up_s, "follow-up window over"))

    async def _expire(self, state: State, after_s: float, reason: str) -> None:
        await asyncio.sleep(after_s)
        if self.state is state:
            self._window_task = None  # this task is ending: do not cancel it from _set
            self._set(State.IDLE, reason)

    def _cancel_window(self) -> None:
        task, self._window_task = self._window_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # ------------------------------------------------------------ inputs from the audio loop
    @property
    def hears_speech(self) -> bool:
        """Does user speech matter now (to endpoint and transcribe, or to barge in over an answer)?

        The engine's policy, asked by the audio loop for every frame: listening and the follow-up window
        hear speech; an answer hears it only when speech may barge in; idle hears only the wake word."""
        if self.state in (State.LISTENING, State.FOLLOW_UP):
            return True
        return self.state in (State.THINKING, State.SPEAKING) and self.barge_in_on_speech

    @property
    def transcribes(self) -> bool:
        """Is an utterance that starts now transcribed (after speech_started() has moved the state)?"""
        return self.state is State.LISTENING

    async def wake(self) -> None:
        """The wake word fired: start listening; during an answer this is a barge-in."""
        if self.state in (State.THINKING, State.SPEAKING):
            await self.barge_in("wake word")
        self._set(State.LISTENING, "wake word")
        # The earcon plays on its own: the audio loop must not wait for it to go on hearing the user.
        self._earcon_task = asyncio.get_running_loop().create_task(self.speaker.earcon("wake"))

    async def speech_started(self) -> None:
        """The VAD heard speech. In the follow-up window it continues the conversation; over an answer it barges in."""
        if self.state is State.FOLLOW_UP:
            self._set(State.LISTENING, "follow-up speech")
        elif self.state in (State.THINKING, State.SPEAKING) and self.barge_in_on_speech:
            await self.barge_in("user speech")
            self._set(State.LISTENING, "barge-in")
        elif self.state is State.LISTENING:
            self._cancel_window()  # they are talking: no listening timeout now

    async def partial(self, text: str) -> Completion:
        """Whether the partial transcript is already a whole device command ("whole", or "closed" when nothing
        in the grammar can follow it): endpointing may end early. "" otherwise.

        The match (hassil; a language's first use loads its templates) runs in a worker thread, not on the loop."""
        if self.state is not State.LISTENING:
            return ""
        completion = await asyncio.to_thread(self.grammar.completion, text)
        if not completion or self.state is not State.LISTENING:   # the state may have moved meanwhile
            return ""
        self.emit("endpoint_early", text=text, completion=completion)
        return completion

    async def preempt(self, text: str, language: str = "") -> None:
        """A settled partial (it covers every voiced frame): send the question now; its answer waits for the final.

        Not for a device command (it runs at the endpoint, from memory) nor when the words did not change."""
        if not self.preemptive or self.client is None or self.state is not State.LISTENING:
            return
        language = language or self.cfg.language
        if (text, language) == self._preempt_seen:
            return
        self._preempt_seen = (text, language)
        if self._preemptive is not None and self._preemptive.matches(text, language):
            return
        self._drop_preemptive(text, "partial changed")
        understanding = await asyncio.to_thread(self._understand, text, language)
        if self.state is not State.LISTENING or self._preempt_seen != (text, language) or self._preemptive is not None:
            return   # the final, a barge-in or newer words came while it was matched
        if understanding.command is not None or understanding.kind == "empty":
            return
        self._preemptive = PreemptiveTurn.start(self.client, understanding, text, language, self.clock())
        self.emit("preemptive", text=text, turn_id=self._preemptive.turn_id)

    def _understand(self, text: str, language: str) -> Understanding:
        """The words matched in their language's grammar; blocking (hassil), so callers run it in a thread."""
        return grammar_for(language, self.grammar).understand(text)

    @property
    def preemptive_turn(self) -> PreemptiveTurn | None:
        """The question sent ahead of the endpoint, until the final adopts or drops it."""
        return self._preemptive

    def _drop_preemptive(self, final: str | None, reason: str) -> None:
        """Cancel the preemptive turn (Cancel on the wire): its words are not what the user said, or the turn is over."""
        pre, self._preemptive = self._preemptive, None
        if pre is not None:
            pre.cancel(forget=True)
            self.emit("preemptive_wasted", text=pre.text, final=final, reason=reason, turn_id=pre.turn_id,
                      gateway_done=pre.ended)   # done: the gateway had already answered (and remembered) it

    def utterance(self, text: str, *, speech_end_s: float | None = None, endpoint_s: float | None = None,
                  transcript_s: float | None = None, audio: np.ndarray | None = None,
                  language: str = "") -> asyncio.Task | None:
        """A final transcript. Starts the turn and returns its task (the audio loop keeps running for barge-in).

        speech_end_s / endpoint_s / transcript_s: monotonic times of the last voiced sample, of the endpoint
        decision and of the final transcript, for the per-turn waterfall. audio: the utterance (16 kHz int16),
        handed to the asker when the turn is not a device command. language: the transcript's; the answer is
        asked for and spoken in it.
        """
        if self.state not in (State.LISTENING, State.FOLLOW_UP):
            self.emit("ignored", text=text, state=self.state.value)
            return None
        now_s = self.clock()
        origin_s = speech_end_s if speech_end_s is not None else now_s
        record = TurnRecord(text=text, timings=Timings(clock=self.clock), language=language or self.cfg.language)
        for stage, at_s in (("endpoint", endpoint_s), ("transcript", transcript_s)):
            if at_s is not None:
                record.timings.add(stage, origin_s, at_s)
        if self._preemptive is not None and not self._preemptive.matches(text, record.language):
            self._drop_preemptive(text, "final differs")
        pre, self._preemptive = self._preemptive, None
        self._set(State.THINKING, "utterance")
        self._turn_cancel = record.cancel
        self._turn_task = asyncio.get_running_loop().create_task(self._run_turn(record, origin_s, audio, pre))
        return self._turn_task

    async def timer_fired(self, timer: Timer) -> None:
        """Alarm earcon and a spoken notice; wire this as the platform's on_timer callback."""
        self.emit("timer_fired", name=timer.name, duration_s=timer.duration_s)
        task = asyncio.current_task()
        if task is not None:
            self._alerts.add(task)
        try:
            await self.speaker.earcon("alarm")
            language = self.turns[-1].language if self.turns else self.cfg.language  # the last turn's
            await self.speaker.speak(timer_done_phrase(timer, language))
        finally:
            self._alerts.discard(task)

    async def barge_in(self, reason: str) -> None:
        """Trip the turn's cancel token once (its synthesis, playback and gateway turn stop: Cancel goes on the
        wire) and cancel the turn task. Returns at once: the audio loop goes on while the turn unwinds."""
        turn_id, self._turn_id = self._turn_id, ""
        cancel, self._turn_cancel = self._turn_cancel, None
        if cancel is not None:
            cancel.cancel()
        if self._alerts:
            self.speaker.stop()   # a timer notice queued behind the answer goes too
        self._drop_preemptive(None, "barge-in")
        task, self._turn_task = self._turn_task, None
        if task is not None and not task.done():
            task.cancel()
            self._unwinding.add(task)
            task.add_done_callback(self._unwinding.discard)
        self.emit("barge_in", reason=reason, turn_id=turn_id)

    async def settle(self) -> None:
        """Wait until no turn is running or unwinding and no timer notice is playing (the end of an input file,
        shutdown)."""
        while (self._turn_task is not None and not self._turn_task.done()) or self._alerts or self._unwinding:
            await asyncio.gather(*[t for t in (self._turn_task, *self._alerts, *self._unwinding) if t is not None],
                                 return_exceptions=True)

    async def close(self) -> None:
        self._cancel_window()
        self._drop_preemptive(None, "closed")
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
            await asyncio.gather(self._turn_task, return_exceptions=True)
        if self._unwinding:
            await asyncio.gather(*self._unwinding, return_exceptions=True)

    # ------------------------------------------------------------ a turn
    async def _run_turn(self, record: TurnRecord, origin_s: float, audio: np.ndarray | None = None,
                        pre: PreemptiveTurn | None = None) -> None:
        self.turns.append(record)
        self.speaker.language = record.language   # the voice of the turn's language (device/voices.py)
        try:
            understanding = await asyncio.to_thread(self._understand, record.text, record.language)
            if understanding.command is None and understanding.kind != "empty" and audio is not None:
                understanding = await self._recheck(record, understanding, audio)
            record.timings.add("intent", origin_s)
            record.kind = understanding.kind
            record.name = (understanding.command.name if understanding.command else
                           understanding.intent.name if understanding.intent else "")
            slots = dict(understanding.command.slots if understanding.command else
                         understanding.intent.slots if understanding.intent else {})
            self.emit("transcript", text=record.text, kind=record.kind, name=record.name, slots=slots,
                      query_text=understanding.text, route_preference=understanding.route_preference)
            if pre is not None and understanding.command is not None:
                self._preemptive, pre = pre, None   # the same words, heard whole, are a device command: it runs
                self._drop_preemptive(record.text, "final is a device command")
            if understanding.kind == "empty":
                self._set(State.IDLE, "nothing said")
                return
            if understanding.command is not None:
                finished = await self._run_command(understanding, record, origin_s)
            else:
                finished = await self._ask(understanding, record, origin_s, audio, pre)
            self._set(State.FOLLOW_UP if finished else State.IDLE, "answered")
        except asyncio.CancelledError:
            record.outcome = "cancelled"
            raise
        finally:
            if self._turn_cancel is record.cancel:   # over: a later barge-in has nothing of this turn to stop
                self._turn_cancel = None
            self.emit("turn", text=record.text, language=record.language, kind=record.kind, name=record.name,
                      route=record.route,
                      answer=record.answer, outcome=record.outcome, timings_ms=record.timings.as_ms(),
                      summary=record.summary())

    async def _recheck(self, record: TurnRecord, understanding: Understanding, audio: np.ndarray) -> Understanding:
        """A short near-miss command ("Volume app") heard again with the command prompt (device/command_recheck.py);
        the command it finds replaces the words, anything else leaves the turn as it was."""
        grammar = grammar_for(record.language, self.grammar)
        if self.recheck is None or not worth_a_recheck(record.text, grammar.words):
            return understanding
        started_s = self.clock()

        def look() -> Recheck:
            heard = self.recheck(audio, grammar.words.command_prompt)
            return pick(record.text, heard, grammar.parse, grammar.skip_words)

        found = await asyncio.to_thread(look)
        self.emit("command_recheck", text=record.text, heard=found.heard, taken=found.text,
                  command=found.command.name if found.command else "", similarity=round(found.similarity, 2),
                  ms=round((self.clock() - started_s) * 1000, 1))
        if found.command is None:
            return understanding
        record.text = found.text
        return Understanding(text=found.text, command=found.command)

    def _first_audio(self, record: TurnRecord, origin_s: float) -> Callable[[], None]:
        def mark() -> None:
            if record.timings.get("first_audio") is None:
                record.timings.add("first_audio", origin_s)
        return mark

    async def _run_command(self, understanding: Understanding, record: TurnRecord, origin_s: float) -> bool:
        assert understanding.command is not None
        result = self.actions.run(understanding.command)
        record.route = "device"
        if result.control == "stop":
            self.speaker.stop()
            record.answer = ""
            return False
        speech = result.speech
        if result.control == "repeat":
            speech = self._last_answer or NOTHING_TO_REPEAT
        record.answer = speech
        self._set(State.SPEAKING, "command")
        mark = self._first_audio(record, origin_s)
        if result.earcon:
            mark()
            await self.speaker.earcon(result.earcon, cancel=record.cancel)
        if speech:
            await self.speaker.speak(speech, on_first_audio=mark, cancel=record.cancel)
            if result.control != "repeat":
                self._last_answer = speech
        if not result.ok:
            record.outcome = "error"
        return True

    async def _ask(self, understanding: Understanding, record: TurnRecord, origin_s: float,
                   audio: np.ndarray | None = None, pre: PreemptiveTurn | None = None) -> bool:
        if self.client is None:
            record.outcome = "offline"
            await self._say_error(OFFLINE_SPOKEN, record, origin_s)
            return False
        cancel = record.cancel
        if pre is not None:   # the final has the preemptive turn's words: its answer, buffered so far, is this turn's
            self._turn_id = turn_id = pre.turn_id
            cancel.on_cancel(pre.cancel)   # Cancel on the wire when the turn's token trips
            events = pre.events()
            record.timings.add("preempt", origin_s, pre.started_s)
            self.emit("preemptive_used", text=pre.text, turn_id=turn_id,
                      head_start_ms=round((self.clock() - pre.started_s) * 1000, 1))
        else:
            self._turn_id = turn_id = self.client.new_turn_id()
            events = self.client.ask(understanding, turn_id=turn_id, audio=audio, language=record.language,
                                     cancel=cancel)
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        sound: asyncio.Queue[tuple[np.ndarray, int] | None] = asyncio.Queue()  # answer audio from the asker
        speaking: asyncio.Task | None = None
        filler: asyncio.Task | None = None
        playing: asyncio.Task | None = None
        spoken_text = ""
        mark = self._first_audio(record, origin_s)
        parts: list[str] = []

        async def stream() -> AsyncIterator[str]:
            while (delta := await deltas.get()) is not None:
                yield delta

        async def sounds() -> AsyncIterator[tuple[np.ndarray, int]]:
            while (chunk := await sound.get()) is not None:
                yield chunk

        async def speak_after_filler() -> None:
            if filler is not None:
                await filler
            await self.speaker.speak(stream(), on_first_audio=mark, cancel=cancel)

        try:
            async for event in events:
                if isinstance(event, RouteEvent):
                    record.route = f"{event.tier}:{event.model}"
                    record.timings.add("route", origin_s, event.at_s)
                    self.emit("route", turn_id=turn_id, tier=event.tier, model=event.model, reason=event.reason,
                              failover=event.failover)
                elif isinstance(event, ToolEvent):
                    self.emit("tool", turn_id=turn_id, tool=event.tool, phase=event.phase, status=event.status)
                    if event.phase == "started" and event.status and not parts and filler is None:
                        self._set(State.SPEAKING, "filler")
                        filler = asyncio.create_task(self.speaker.speak(event.status + "…", on_first_audio=mark,
                                                                        cancel=cancel))
                elif isinstance(event, TextEvent):
                    if not parts:
                        record.timings.add("first_token", origin_s, event.at_s)
                        self._set(State.SPEAKING, "first token")
                        speaking = asyncio.create_task(speak_after_filler())
                    parts.append(event.text)
                    deltas.put_nowait(event.text)
                elif isinstance(event, AudioEvent):
                    if playing is None:
                        record.timings.add("first_token", origin_s, event.at_s)  # the answer's first output
                        self._set(State.SPEAKING, "answer audio")
                        playing = asyncio.create_task(self.speaker.play(sounds(), on_first_audio=mark, cancel=cancel))
                    sound.put_nowait((event.pcm, event.rate_hz))
                elif isinstance(event, AnswerTextEvent):
                    spoken_text = event.text
                elif isinstance(event, TurnEndEvent):
                    self.emit("turn_end", turn_id=turn_id, finish_reason=event.finish_reason,
                              tokens_out=event.tokens_out, gateway_timings_ms=event.timings_ms)
        except asyncio.CancelledError:
            for task in (filler, speaking, playing):
                if task is not None:
                    task.cancel()
            if pre is not None:
                pre.cancel()
            raise
        except ClientError as exc:
            log.warning("turn %s failed: %s", turn_id, exc)
            record.outcome = ("offline" if isinstance(exc, GatewayUnavailable) else
                              "timeout" if isinstance(exc, TurnTimeout) else "error")
            deltas.put_nowait(None)
            sound.put_nowait(None)
            for task in (filler, speaking, playing):
                if task is not None:
                    await task
            await self._say_error(exc.spoken, record, origin_s)
            return False
        finally:
            deltas.put_nowait(None)
            sound.put_nowait(None)
            if self._turn_id == turn_id:   # a barged-in turn unwinds after the next may have begun
                self._turn_id = ""
        for task in (filler, speaking, playing):
            if task is not None:
                await task
        record.answer = ("".join(parts) or spoken_text).strip()
        if record.answer:
            self._last_answer = record.answer
        return True

    async def _say_error(self, spoken: str, record: TurnRecord, origin_s: float) -> None:
        record.answer = spoken = translate(record.language, spoken)  # the turn's language (voxlens/phrases)
        self._set(State.SPEAKING, "error")
        mark = self._first_audio(record, origin_s)
        mark()
        await self.speaker.earcon("error", cancel=record.cancel)
        await self.speaker.speak(spoken, on_first_audio=mark, cancel=record.cancel)
