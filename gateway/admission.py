"""Admission control per model tier: a few generation slots, a bounded line of waiting turns, a maximum wait.

Why: the in-process small model answers one turn at a time. Fifty headsets asking at once would
otherwise queue without bound, each user waiting longer than they would ever hold on, and the
gateway's memory growing with the line. A short honest "I'm busy" after a bounded wait is what a
user can act on; a turn refused here may still be answered by the other tier.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from voxlens.timing import Clock, monotonic

SPOKEN_BUSY = "I'm busy right now. Please try again in a moment."


class Busy(Exception):
    """The tier could not take the turn: its line was full, or the turn waited max_wait_s. Names the setting."""


class TierQueue:
    def __init__(self, tier: str, slots: int, max_waiting: int, max_wait_s: float, *,
                 metrics=None, clock: Clock = monotonic) -> None:
        self.tier = tier
        self.slots = max(1, slots)
        self.max_waiting = max(0, max_waiting)
        self.max_wait_s = max_wait_s
        self.waiting = 0
        self.running = 0
        self._free = asyncio.Semaphore(self.slots)
        self._metrics = metrics
        self._clock = clock

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.tier).set(self.waiting)

    def _refuse(self, reason: str, message: str) -> Busy:
        if self._metrics is not None:
            self._metrics.busy.labels(self.tier, reason).inc()
        return Busy(message)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one generation slot for the block; yields how long the turn waited (ms)."""
        if self._free.locked() and self.waiting >= self.max_waiting:
            raise self._refuse("queue_full", f"{self.tier} tier is busy: {self.running} generating and {self.waiting} "
                                             f"waiting (gateway.{self.tier}.max_waiting = {self.max_waiting})")
        start_s = self._clock()
        self.waiting += 1
        self._gauge()
        try:
            async with asyncio.timeout(self.max_wait_s):
                await self._free.acquire()
        except TimeoutError:
            raise self._refuse("max_wait", f"{self.tier} tier is busy: no slot within gateway.{self.tier}.max_wait_s = "
                                           f"{self.max_wait_s} s") from None
        finally:
            self.waiting -= 1
            self._gauge()
        waited_ms = (self._clock() - start_s) * 1000.0
        if self._metrics is not None:
            self._metrics.queue_wait_ms.labels(self.tier).observe(waited_ms)
        self.running += 1
        try:
            yield waited_ms
        finally:
            self.running -= 1
            self._free.release()
