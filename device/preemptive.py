"""Preemptive generation: the question leaves for the gateway on the settled partial transcript, before the endpoint.

Why: after the user's last word the endpointer still waits (Smart Turn, silence) before the turn ends, and
the gateway's route, prompt and first token only start then. The partial that already covers every voiced
frame (`StreamingTranscription.settled`) is what the final will be unless the user goes on, so the query
is sent on it at once, as LiveKit Agents' preemptive generation does. Its answer is buffered here and never
spoken until the endpoint has fired and the final transcript has the same words: a different final
cancels it (Cancel on the wire) and the final is sent as a turn of its own; a refusal, a timeout or an
error of a turn that is not adopted is dropped with it, so nothing is ever said for the wrong transcript.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from device.client_events import AskEvent, ClientError, TurnEndEvent
from device.commands import Understanding

if TYPE_CHECKING:
    from device.engine import Asker

_WORD = re.compile(r"[\w']+")


def words(text: str) -> tuple[str, ...]:
    """The words a turn is compared by: case and punctuation do not make another question."""
    return tuple(_WORD.findall(text.lower()))


def same_words(a: str, b: str) -> bool:
    return words(a) == words(b)


@dataclass
class PreemptiveTurn:
    """One query sent ahead of the endpoint; its events wait in a queue until the engine adopts or drops it."""

    text: str
    language: str
    turn_id: str
    started_s: float                   # when the query was sent (the engine's clock)
    _asker: Asker
    _queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    _task: asyncio.Task | None = None
    ended: bool = False                # the gateway ended the turn (TurnEnd or an error): nothing to cancel

    @classmethod
    def start(cls, asker: Asker, understanding: Understanding, text: str, language: str,
              started_s: float) -> PreemptiveTurn:
        turn = cls(text, language, asker.new_turn_id(), started_s, asker)
        turn._task = asyncio.get_running_loop().create_task(turn._collect(understanding))
        return turn

    async def _collect(self, understanding: Understanding) -> None:
        try:
            async for event in self._asker.ask(understanding, turn_id=self.turn_id, language=self.language):
                self._queue.put_nowait(event)
                if isinstance(event, TurnEndEvent):
                    self.ended = True
        except ClientError as exc:   # kept for the engine: spoken only if this turn is adopted
            self.ended = True
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[AskEvent]:
        """The adopted turn's events: those already buffered at once, then the rest as they arrive."""
        while (item := await self._queue.get()) is not None:
            if isinstance(item, ClientError):
                raise item
            yield item

    def matches(self, text: str, language: str) -> bool:
        """Is the final what this turn asked? Same words (case and punctuation aside), same language."""
        return language == self.language and same_words(text, self.text)

    def cancel(self, forget: bool = False) -> None:
        """Cancel on the wire now (interruptions overtake everything), then stop collecting. `forget` (a turn the
        final did not adopt): sent even when the gateway has already answered, which then forgets the exchange, so
        it is not the next turn's history; an adopted turn's answer the user heard is cancelled only while open."""
        if forget or not self.ended:
            self._asker.cancel(self.turn_id)
        if self._task is not None and not self._task.done():
            self._task.cancel()
