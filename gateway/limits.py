"""Per-device limits: text length, concurrent turns, a token-bucket rate, and the per-turn deadline.

Why per device: one chatty or broken device must run into its own limits while
every other device keeps being served. Counters live in process, keyed by the
authenticated device id.
"""
from __future__ import annotations

from dataclasses import dataclass


from voxlens.timing import Clock, monotonic


class LimitExceeded(Exception):
    """A limit was hit; `code` is the gRPC status name to report, the message names the limit and its setting."""

    def __init__(self, code: str, message: str, spoken: str) -> None:
        super().__init__(message)
        self.code = code
        self.spoken = spoken


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class DeviceLimits:
    def __init__(self, cfg, clock: Clock = monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        self._active: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self.burst = max(1.0, float(cfg.rate_burst))

    def check_text(self, text: str) -> None:
        if len(text) > self.cfg.max_text_chars:
            raise LimitExceeded("INVALID_ARGUMENT",
                                f"query text is {len(text)} characters; the limit is gateway.max_text_chars = {self.cfg.max_text_chars}",
                                "That was too long for me. Please ask a shorter question.")

    def _take_rate(self, device: str) -> None:
        rate_per_s = self.cfg.rate_per_minute / 60.0
        if rate_per_s <= 0:
            return
        now = self._clock()
        b = self._buckets.setdefault(device, _Bucket(self.burst, now))
        b.tokens = min(self.burst, b.tokens + (now - b.updated_s) * rate_per_s)
        b.updated_s = now
        if b.tokens < 1.0:
            raise LimitExceeded("RESOURCE_EXHAUSTED",
                                f"device over gateway.rate_per_minute = {self.cfg.rate_per_minute} turns per minute",
                                "You're asking too fast. Please wait a moment.")
        b.tokens -= 1.0

    def start_turn(self, device: str) -> None:
        """Admit a turn or raise; every admitted turn must be paired with end_turn."""
        if self._active.get(device, 0) >= self.cfg.max_turns_per_device:
            raise LimitExceeded("RESOURCE_EXHAUSTED",
                                f"device already has {self._active[device]} turns running; the limit is "
                                f"gateway.max_turns_per_device = {self.cfg.max_turns_per_device}",
                                "I'm still working on your last question.")
        self._take_rate(device)
        self._active[device] = self._active.get(device, 0) + 1

    def end_turn(self, device: str) -> None:
        left = self._active.get(device, 0) - 1
        if left > 0:
            self._active[device] = left
        else:
            self._active.pop(device, None)

    def active(self, device: str) -> int:
        return self._active.get(device, 0)
