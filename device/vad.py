"""Voice activity and endpointing: Silero VAD (ONNX, no torch) deciding when the user starts and stops.

Why streaming with carried state: Silero is a recurrent model; running it window by
window with its LSTM state (h, c) and the last 64 samples of context carried over
gives the same probabilities as running it on the whole file, at ~0.1 ms a window.
The model (v6, shipped in faster-whisper) takes [batch, 64 + 512] float32 at 16 kHz.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from device.audio import SAMPLE_RATE_HZ
from voxlens.config import VadConfig
from voxlens.onnx import session as onnx_session
from voxlens.stage import StreamStage

if TYPE_CHECKING:
    from device.smart_turn import SmartTurn, TurnVerdict

log = logging.getLogger(__name__)

WINDOW_SAMPLES = 512
CONTEXT_SAMPLES = 64


class SileroVad:
    """Speech probability per 32 ms window, with the recurrent state kept between calls."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        from models.catalog import ModelError, resolve

        path = Path(resolve(str(model_path or "silero-vad")))  # a catalog name or a path
        if not path.is_file():
            raise ModelError(f"Silero VAD model {path} does not exist; fix: voxlens models verify silero-vad")
        try:
            self._session = onnx_session(path, log_level=4)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise ModelError(f"Silero VAD model {path} cannot be loaded ({exc}); fix: voxlens models verify silero-vad") from None
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def probs(self, frame: np.ndarray) -> list[float]:
        """Probabilities of each complete 512-sample window in (buffered audio + frame); the rest waits."""
        audio = np.asarray(frame)
        if audio.dtype == np.int16:
            audio = audio.astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        out: list[float] = []
        while len(self._pending) >= WINDOW_SAMPLES:
            window = self._pending[:WINDOW_SAMPLES]
            self._pending = self._pending[WINDOW_SAMPLES:]
            x = np.concatenate([self._context, window])[None, :]
            prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT_SAMPLES:]
            out.append(float(np.ravel(prob)[0]))
        return out

    def prob(self, frame: np.ndarray) -> float:
        """Highest window probability in this frame (0.0 while a window is still incomplete)."""
        p = self.probs(frame)
        return max(p) if p else 0.0


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["speech_start", "speech_end"]
    sample: int                       # stream offset (16 kHz samples): where speech started / last voiced sample
    audio: np.ndarray | None = None   # speech_end: the utterance, pre-roll included; speech_start: the audio so far
    detected_sample: int = 0          # stream offset at which the event was decided (delay = detected - sample)
    reason: str = ""                  # speech_end: "silence" | "smart_turn" | "max_length" | "end_now"
    turn_probability: float | None = None   # speech_end: Smart Turn's last verdict in this utterance, if asked


class Endpointer:
    """Turns frames into speech_start / speech_end events.

    Start: a voiced run of `start_ms`. End: `silence_ms` without voice (or `short_silence_ms`
    once the caller says the utterance is complete), `max_utterance_s`, or `end_now()`.
    Hysteresis as in Silero's own iterator: voice at p >= threshold, silence at p < threshold - 0.15.

    With a Smart Turn model (`turn`), a pause of `smart_turn_silence_ms` asks it whether the turn is
    complete: yes ends the turn there (reason "smart_turn"); no waits up to `smart_turn_max_silence_ms`
    for more speech (`silence_ms` is the rule without the model). The grammar's hint (a whole command) ends on
    `short_silence_ms` and is not put to Smart Turn: the model's ~50-100 ms would only slow the transcription
    pass that decides sooner (device/utterance.py, `end_on_command`). While `await_text` (the utterance stage transcribes), a "complete" waits for the
    words at that pause (`text_verdict`): ones that end open veto it. The wait costs the turn nothing, since
    its final transcript is that same pass; if the words never come, the silence rule ends the turn. `process` runs inline; `aprocess` (Silero and Smart Turn alike) in a worker
    thread, so the device's event loop stays free.
    """

    def __init__(self, cfg: VadConfig | None = None, vad: SileroVad | None = None,
                 turn: SmartTurn | None = None) -> None:
        self.cfg = cfg or VadConfig()
        self.vad = vad or SileroVad()
        self.turn = turn
        self.verdicts: deque[TurnVerdict] = deque(maxlen=256)   # the latest verdicts (benches read their cost)
        self.text_vetoes = 0        # Smart Turn "complete"s the words at the pause overruled
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self.await_text = False     # Smart Turn's "complete" waits for the words (set by the utterance stage)
        self._held: int | None = None   # the pause (its last voiced sample) Smart Turn called complete
        self.in_speech = False
        self.last_prob = 0.0
        self.ends_voiced = False    # this frame's last window had voice
        self.voiced = False         # this frame had voice, by the hysteresis below (what the streaming STT hears)
        self.complete_hint = False
        self.closed_hint = False    # ... and nothing in the grammar can follow it
        self._ask: np.ndarray | None = None   # the utterance so far, waiting for Smart Turn's verdict
        self._asked_for = -1        # the _last_voiced_end of the pause asked about
        self._turn_p: float | None = None
        self._pos = 0               # samples consumed by the VAD windows so far
        self._history = np.zeros(0, dtype=np.int16)   # recent audio (pre-roll + run) while idle
        self._history_start = 0     # stream offset of _history[0]
        self._run_start: int | None = None
        self._utt: list[np.ndarray] = []
        self._utt_start = 0         # stream offset of the utterance audio (pre-roll included)
        self._speech_start = 0
        self._last_voiced_end = 0
        self._received = 0          # samples received (frames pushed)

    @staticmethod
    def _ms(ms: float) -> int:
        return int(ms * SAMPLE_RATE_HZ / 1000)

    def hint_complete(self, complete: bool = True, closed: bool = False) -> None:
        """The grammar says the words so far form a whole command: end on the shorter silence; `closed`: one
        nothing in the grammar can follow, so `end_at_pause` may end it on a shorter pause."""
        self.complete_hint = complete
        self.closed_hint = complete and closed

    def process(self, frame: np.ndarray) -> list[VadEvent]:
        """One frame; a Smart Turn question it raises is answered inline (blocking for its ~50-100 ms)."""
        return self.consume(frame) + self.answer()

    @property
    def asking(self) -> bool:
        """The last frame raised a Smart Turn question that `answer` has yet to put."""
        return self._ask is not None and self.turn is not None

    def answer(self) -> list[VadEvent]:
        """Put the pending Smart Turn question (if any) and act on its verdict.

        Apart from `consume` so that a caller can let the frame reach the transcription first: the pass a
        pause starts need not queue behind this model's ~50-100 ms."""
        if not self.asking:
            return []
        try:
            return self.verdict(self.turn.predict(self._ask))
        except Exception as exc:  # noqa: BLE001 - the model failing must not stop endpointing
            self._turn_failed(exc)
            return []

    async def aprocess(self, frame: np.ndarray) -> list[VadEvent]:
        """`process` in a worker thread: Silero's windows and a Smart Turn question (~50-100 ms) never stall
        the event loop, where answers play and barge-in is heard. Frames wait their turn; callers feed one
        frame at a time, so the endpointer's state is only ever touched by one thread at once."""
        return await asyncio.to_thread(self.process, frame)

    def stage(self) -> StreamStage[np.ndarray, VadEvent]:
        """This endpointer in the one stage shape (voxlens/stage.py): push frames, `async for` its events;
        end_input ends an utterance still open (reason "end_now")."""
        return StreamStage(self._events)

    async def _events(self, frames: AsyncIterable[np.ndarray]) -> AsyncIterator[VadEvent]:
        async for frame in frames:
            for event in await self.aprocess(frame):
                yield event
        for event in self.end_now():
            yield event

    def _turn_failed(self, exc: Exception) -> None:
        """Smart Turn raised at run time: say so once and end turns on silence from now on."""
        log.warning("Smart Turn failed (%s: %s); ending turns on silence alone (vad.silence_ms) from now on; "
                    "fix: voxlens models verify smart-turn-v3", type(exc).__name__, exc)
        self.turn, self._ask = None, None

    def verdict(self, v: TurnVerdict) -> list[VadEvent]:
        """Smart Turn's answer for the pause asked about: complete ends the turn now, unless voice came back."""
        self._ask = None
        self.verdicts.append(v)
        self._turn_p = v.probability
        if self.in_speech and v.complete and self._asked_for == self._last_voiced_end:
            if self.await_text and self.cfg.text_veto:
                self._held = self._asked_for   # ends once the words at this pause do not end open
                return []
            return [self._end("smart_turn")]
        return []

    @property
    def awaiting_text(self) -> bool:
        """Smart Turn called this pause complete; the words at it decide (`text_verdict`)."""
        return self.in_speech and self._held is not None

    def text_verdict(self, ends_open: bool) -> list[VadEvent]:
        """The words at the pause Smart Turn called complete: ending open ("set a timer for") vetoes it and
        the silence rule goes on; otherwise the turn ends now."""
        if not self.awaiting_text:
            return []
        self._held = None
        if ends_open:
            self.text_vetoes += 1
            return []
        return [self._end("smart_turn")]

    def consume(self, frame: np.ndarray) -> list[VadEvent]:
        """One frame through Silero and the start / silence rules; a Smart Turn question waits for `answer`."""
        frame = np.asarray(frame, dtype=np.int16)
        events: list[VadEvent] = []
        if self.in_speech:
            self._utt.append(frame)
        else:
            self._history = np.concatenate([self._history, frame])
        self._received += len(frame)
        probs = self.vad.probs(frame)
        if probs:
            self.last_prob = max(probs)
            self.voiced = False
        for p in probs:
            self.ends_voiced = p >= self.cfg.threshold - (0.15 if self.in_speech else 0.0)
            self.voiced |= self.ends_voiced
            w_start, self._pos = self._pos, self._pos + WINDOW_SAMPLES
            event = self._step(p, w_start, self._pos)
            if event:
                events.append(event)
        if not self.in_speech:
            keep = self._ms(self.cfg.preroll_ms + self.cfg.start_ms) + 2 * len(frame)
            if len(self._history) > keep:
                cut = len(self._history) - keep
                self._history = self._history[cut:]
                self._history_start += cut
        return events

    def _step(self, p: float, w_start: int, w_end: int) -> VadEvent | None:
        thr = self.cfg.threshold
        if not self.in_speech:
            if p >= thr:
                if self._run_start is None:
                    self._run_start = w_start
                if w_end - self._run_start >= self._ms(self.cfg.start_ms):
                    return self._start()
            elif p < thr - 0.15:
                self._run_start = None
            return None
        if p >= thr - 0.15:
            self._last_voiced_end = w_end
            self._ask = None        # voice came back: a question about the pause before is moot
            self._held = None
        else:
            silent = w_end - self._last_voiced_end
            if self.turn is None:
                silence_ms = self.cfg.short_silence_ms if self.complete_hint else self.cfg.silence_ms
            else:
                silence_ms = self.cfg.short_silence_ms if self.complete_hint else self.cfg.smart_turn_max_silence_ms
                self._maybe_ask(silent)
            if silent >= self._ms(silence_ms):
                return self._end("silence")
        if w_end - self._speech_start >= self._ms(self.cfg.max_utterance_s * 1000):
            self._last_voiced_end = w_end
            return self._end("max_length")
        return None

    def _maybe_ask(self, silent: int) -> None:
        """Ask Smart Turn once per pause, after smart_turn_silence_ms, about the audio up to the last voice.

        Why not up to now: its verdict drifts toward "complete" as trailing silence grows (`voxlens bench
        endpoint`, p >= 0.7: of 48 real sentences cut mid-phrase, 9 called complete with no trailing silence,
        15 with 120 ms, 23 with 300 ms), so it hears the same trailing audio (Silero's own hangover)
        however late it is asked."""
        if self.complete_hint:   # the grammar has a whole command: its words and the short silence decide
            return
        if self._asked_for != self._last_voiced_end and silent >= self._ms(self.cfg.smart_turn_silence_ms):
            self._asked_for = self._last_voiced_end
            self._ask = np.concatenate(self._utt)[: self._last_voiced_end - self._utt_start]

    def _start(self) -> VadEvent:
        self.in_speech = True
        self.complete_hint = False
        self.closed_hint = False    # ... and nothing in the grammar can follow it
        self._speech_start = self._run_start or 0
        self._last_voiced_end = self._pos
        self._utt_start = max(self._history_start, self._speech_start - self._ms(self.cfg.preroll_ms))
        self._utt = [self._history[self._utt_start - self._history_start :]]
        self._history = np.zeros(0, dtype=np.int16)
        self._run_start = None
        # The start event carries the audio so far (pre-roll included), so a streaming STT can begin with it.
        return VadEvent("speech_start", self._speech_start, self._utt[0].copy(), detected_sample=self._pos)

    def _end(self, reason: str) -> VadEvent:
        audio = np.concatenate(self._utt) if self._utt else np.zeros(0, dtype=np.int16)
        tail = self._ms(160)  # a little trailing silence helps Whisper close the sentence
        audio = audio[: max(0, self._last_voiced_end + tail - self._utt_start)]
        event = VadEvent("speech_end", self._last_voiced_end, audio, detected_sample=self._pos, reason=reason,
                         turn_probability=self._turn_p)
        self._ask, self._asked_for, self._turn_p, self._held = None, -1, None, None
        # Audio received after the decision point stays as pre-roll for the next utterance.
        leftover = np.concatenate(self._utt)[self._pos - self._utt_start :] if self._utt else np.zeros(0, np.int16)
        self.in_speech = False
        self.complete_hint = False
        self.closed_hint = False    # ... and nothing in the grammar can follow it
        self._utt = []
        self._history = leftover.astype(np.int16)
        self._history_start = self._pos
        self._run_start = None
        return event

    @property
    def voiced_for_stt(self) -> bool:
        """Whether the transcription should hear this frame as speech. A frame that ends in silence is a pause
        once the grammar has a whole command: its pass then starts a frame (80 ms) sooner, and that pass is
        the final. Otherwise only a wholly silent frame is: every pass a pause starts costs a decode."""
        return self.ends_voiced if self.complete_hint else self.voiced

    def end_at_pause(self, reason: str) -> list[VadEvent]:
        """End the utterance at its last voice once the pause has lasted `command_silence_ms`
        (`closed_command_silence_ms` for a closed command): the caller knows the words there finish the turn."""
        pause_ms = self.cfg.closed_command_silence_ms if self.closed_hint else self.cfg.command_silence_ms
        if not self.in_speech or self._pos - self._last_voiced_end < self._ms(pause_ms):
            return []
        return [self._end(reason)]

    def end_now(self) -> list[VadEvent]:
        """End the current utterance at once (the grammar already has a complete command)."""
        if not self.in_speech:
            return []
        self._last_voiced_end = max(self._last_voiced_end, min(self._received, self._pos))
        return [self._end("end_now")]
