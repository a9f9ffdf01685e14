"""One cancel token per turn: barge-in trips it once, and everything the turn started stops on it.

Why one: the speech path used to stop by four rules (generation counters in the sink, the TTS and the
voice output, `task.cancel`, the wire Cancel). A token is one flag that every stage reads: coroutines
check `cancelled` or `await wait()`, worker threads (Piper's synthesis) read `cancelled` between
sentences, and `on_cancel` callbacks (stop the sink, send Cancel on the wire) run once, at the trip.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class CancelToken:
    """Tripped once by `cancel()` from any thread; never reset (a new turn gets a new token)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> bool:
        """Trip the token and run its callbacks (in this thread). True the first time, False after: idempotent."""
        with self._lock:
            if self._event.is_set():
                return False
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:   # one stage failing to stop must not keep the others running
                log.exception("cancel callback %r failed", callback)
        return True

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` when the token trips (at once if it has). Returns a function that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._discard(callback)
        callback()
        return lambda: None

    def _discard(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    async def wait(self) -> None:
        """Return once the token has tripped (tripped from another thread too)."""
        if self.cancelled:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        remove = self.on_cancel(wake)
        try:
            await done
        finally:
            remove()

    async def guard(self, awaitable: Awaitable[T]) -> T | None:
        """Await `awaitable` unless the token trips first: then it is cancelled and None comes back at once."""
        if self.cancelled:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            return None
        work = asyncio.ensure_future(awaitable)
        tripped = asyncio.ensure_future(self.wait())
        try:
            await asyncio.wait((work, tripped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            tripped.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled() and not self.cancelled:
            return work.result()
        if work.done() and not work.cancelled():
            work.exception()   # retrieved: a late error of cancelled work is not reported as unhandled
        return None


class CancelGroup:
    """The calls in progress in one stage: `cancel_all()` (the stage's stop()) trips each of them, and a call
    also stops on the caller's token (the turn's) without stop() ever tripping the caller's token back."""

    def __init__(self) -> None:
        self._live: set[CancelToken] = set()

    @contextmanager
    def scope(self, parent: CancelToken | None = None) -> Iterator[CancelToken]:
        token = CancelToken()
        remove = parent.on_cancel(token.cancel) if parent is not None else (lambda: None)
        self._live.add(token)
        try:
            yield token
        finally:
            self._live.discard(token)
            remove()

    def cancel_all(self) -> None:
        for token in list(self._live):
            token.cancel()
