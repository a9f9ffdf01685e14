"""The engine's Speaker over the speech stream's TTS and an audio sink: earcons and streamed speech, one at a time.

Why: the engine only says "play this earcon", "speak these deltas", "stop"; this
joins that to `TextToSpeech.stream()/cancel()` and a sink's `play()/stop()`
(INTERFACES.md), so barge-in stops both the synthesis and the queued audio at once.
Each call may carry the turn's cancel token (voxlens/cancel.py): when it trips, that
call's synthesis (in its worker thread too) and playback stop; stop() stops every call.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterable, AsyncIterator, Callable, Protocol

import numpy as np

from device.earcons import earcon
from voxlens.cancel import CancelGroup, CancelToken


class Synthesizer(Protocol):
    sample_rate_hz: int

    def stream(self, deltas: AsyncIterable[str], cancel: CancelToken | None = None) -> AsyncIterator[np.ndarray]: ...
    def synthesize(self, text: str) -> np.ndarray: ...
    def cancel(self) -> None: ...


class Sink(Protocol):
    async def play(self, pcm: np.ndarray, rate_hz: int, cancel: CancelToken | None = None) -> None: ...
    def stop(self) -> None: ...


async def _once(text: str) -> AsyncIterator[str]:
    yield text


class VoiceOutput:
    """Plays one thing at a time (a timer notice waits for the answer); stop() drops everything queued."""

    def __init__(self, tts: Synthesizer, sink: Sink, prepared: dict[str, np.ndarray] | None = None) -> None:
        self.tts, self.sink = tts, sink
        self.rate_hz = tts.sample_rate_hz
        self._lock = asyncio.Lock()
        self._calls = CancelGroup()   # every earcon/speak/play in progress or queued: stop() trips them all
        self._prepared = {} if prepared is None else prepared
        # Prepared lines are said by the start-up voice (a Voices' default), whatever turn is under way when
        # prepare() gets to them: under load it runs late, after a turn may have switched the language.
        self._prepare_with: Synthesizer = getattr(tts, "default", tts)
        self._prepared_language = self.language
        self.cache_hits = 0     # lines that started from prepared audio (tests and benches read it)

    async def prepare(self, lines: list[str]) -> None:
        """Synthesize fixed lines (offline, timeout, error, command confirmations) ahead of need, off the event loop.

        Why: they are said exactly when things go wrong or right after a device command, often on a loaded CPU;
        played from memory they start at once instead of after a synthesis that competes with everything else.
        A line may also be the head of longer ones ("Volume" for "Volume 60 percent."): see speak()."""
        for line in lines:
            if line and line not in self._prepared:
                self._prepared[line] = await asyncio.to_thread(self._prepare_with.synthesize, line)

    def _prepared_head(self, text: str) -> str | None:
        """The longest prepared line that is `text` or a whole-word head of it ("Volume" of "Volume 60 percent.")."""
        heads = [line for line in self._prepared if text == line or text.startswith(line + " ")]
        return max(heads, key=len) if heads else None

    @property
    def language(self) -> str:
        """The language spoken next: a Voices (device/voices.py) switches voice on it, one voice cuts its text by it."""
        return getattr(self.tts, "language", "en")

    @language.setter
    def language(self, language: str) -> None:
        if language and hasattr(self.tts, "language"):
            self.tts.language = language

    async def earcon(self, name: str, cancel: CancelToken | None = None) -> None:
        with self._calls.scope(cancel) as token:
            async with self._lock:
                if not token.cancelled:
                    await self.sink.play(earcon(name, self.rate_hz), self.rate_hz, cancel=token)

    async def speak(self, text: str | AsyncIterable[str], on_first_audio: Callable[[], None] | None = None,
                    cancel: CancelToken | None = None) -> None:
        """Speak a line or streamed deltas. A line with a prepared head plays the head from memory at once while
        its tail (a value: "60 percent.", "4:43 PM.") is synthesised; the tail is ready long before the head ends
        (bench/first_piece.py: ~50 ms against 400-1000 ms of head), so the user hears no gap."""
        with self._calls.scope(cancel) as token:
            async with self._lock:
                if token.cancelled:
                    return
                head = (self._prepared_head(text) if isinstance(text, str) and self.language == self._prepared_language
                        else None)    # another language's turn: its own voice, never the English cache
                if head is not None:
                    await self._speak_prepared(head, text[len(head):].strip(), token, on_first_audio)
                    return
                deltas = _once(text) if isinstance(text, str) else text
                async for pcm in self.tts.stream(deltas, token):
                    if token.cancelled:
                        break
                    if on_first_audio is not None:
                        on_first_audio()
                        on_first_audio = None
                    await self.sink.play(pcm, self.rate_hz, cancel=token)

    async def _speak_prepared(self, head: str, tail: str, token: CancelToken,
                              on_first_audio: Callable[[], None] | None) -> None:
        self.cache_hits += 1
        rest = asyncio.ensure_future(asyncio.to_thread(self.tts.synthesize, tail)) if tail else None
        try:
            if on_first_audio is not None:
                on_first_audio()
            await self.sink.play(self._prepared[head], self.rate_hz, cancel=token)
            if rest is not None:
                pcm = await rest
                if not token.cancelled:
                    await self.sink.play(pcm, self.rate_hz, cancel=token)
        finally:
            if rest is not None and not rest.done():
                rest.cancel()   # the thread finishes on its own; nobody plays its audio

    async def play(self, audio: AsyncIterable[tuple[np.ndarray, int]],
                   on_first_audio: Callable[[], None] | None = None, cancel: CancelToken | None = None) -> None:
        """Play answer audio that arrives already spoken, as (pcm, rate_hz) chunks (a Wyoming pipeline's TTS)."""
        with self._calls.scope(cancel) as token:
            async with self._lock:
                async for pcm, rate_hz in audio:
                    if token.cancelled:
                        break
                    if on_first_audio is not None:
                        on_first_audio()
                        on_first_audio = None
                    await self.sink.play(pcm, rate_hz, cancel=token)

    def stop(self) -> None:
        """Barge-in: no new chunk is synthesized or played after this returns."""
        self._calls.cancel_all()
        self.tts.cancel()
        self.sink.stop()
