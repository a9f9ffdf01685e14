"""A circuit breaker for a model tier: opens after consecutive failures, probes half-open after a pause.

Why: when the big tier is down, every turn would otherwise pay connection
timeouts before failing over; an open breaker routes straight to SMALL, and one
probe turn after `reset_s` finds out whether the tier is back.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


from voxlens.timing import Clock, monotonic

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
MAX_HOLD_S = 300.0  # a Retry-After longer than this is treated as this: a typo must not switch a tier off for a day


class CircuitBreaker:
    def __init__(self, name: str, failures: int = 3, reset_s: float = 15.0,
                 clock: Clock = monotonic) -> None:
        self.name = name
        self.failures_to_open = max(1, failures)
        self.reset_s = reset_s
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._pause_s = reset_s
        self._probing = False

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self._pause_s:
            return HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a turn use this tier now? In half-open state exactly one probe turn is let through at a time."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def available(self) -> bool:
        """Like allow() but without taking the probe slot: for reporting and routing previews."""
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and not self._probing)

    def record_success(self) -> None:
        if self._state != CLOSED:
            log.info("breaker %s: closed (tier answered)", self.name)
        self._state, self._failures, self._probing = CLOSED, 0, False

    def record_failure(self, retry_after_s: float = 0.0) -> None:
        """One failure. A tier that said how long to stay away (HTTP 429/503 Retry-After) is opened at once
        for that long: an overloaded cluster asking for a pause gets one, not a probe every reset_s."""
        self._failures += 1
        self._probing = False
        if retry_after_s <= 0 and self._state != OPEN and self._failures < self.failures_to_open:
            return
        if retry_after_s > 0:
            log.warning("breaker %s: open for %.0f s (the tier asked: Retry-After)", self.name, retry_after_s)
        elif self._state != OPEN:
            log.warning("breaker %s: open after %d consecutive failures", self.name, self._failures)
        self._state = OPEN
        self._opened_at = self._clock()
        self._pause_s = min(retry_after_s, MAX_HOLD_S) if retry_after_s > 0 else self.reset_s

    @contextmanager
    def permit(self) -> Iterator[bool]:
        """allow() for the length of one use of the tier.

        Why: a half-open probe that ends without a verdict (cancelled after its first token, a tool error)
        must free its slot on exit, or the tier stays off until the process restarts."""
        probe = self.state == HALF_OPEN
        allowed = self.allow()
        try:
            yield allowed
        finally:
            if allowed and probe:
                self._probing = False
