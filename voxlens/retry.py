"""The one retry helper: exponential backoff with jitter.

Why: reconnecting to the gateway, calling a model backend, calling a weather
API all need the same thing, and a reconnect loop written four times drifts
four ways. Jitter spreads many devices reconnecting after a gateway restart.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5  # fraction of each delay drawn at random: delay in [base*(1-jitter), base]

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self}: need 0 < initial_s <= max_s, multiplier >= 1, 0 <= jitter <= 1")

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before retry number `attempt` (0 = the first retry)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempt))
        return base * (1.0 - self.jitter * rand())


async def retry(fn: Callable[[], Awaitable[T]], *, backoff: Backoff = Backoff(), attempts: int = 3,
                retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
                retry_if: Callable[[BaseException], bool] | None = None,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                rand: Callable[[], float] = random.random, what: str = "") -> T:
    """Call fn until it succeeds, at most `attempts` times, sleeping with backoff between tries.

    Only exceptions in retry_on (and, when given, for which retry_if is true) are retried; the last one
    is re-raised unchanged. A model backend retries connection errors only, never after output started:
    repeating a bad request only repeats the failure, and repeating a started answer generates twice.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(attempts):
        try:
            return await fn()
        except retry_on as exc:
            if attempt == attempts - 1 or (retry_if is not None and not retry_if(exc)):
                raise
            delay = backoff.delay_s(attempt, rand)
            log.info("%sretrying after %s (%.2f s, attempt %d of %d)", f"{what}: " if what else "",
                     type(exc).__name__, delay, attempt + 2, attempts)
            await sleep(delay)
    raise AssertionError("unreachable")
