"""One timing record for every stage (wake word, VAD, STT, grammar, gateway, TTS).

Why: the voice-to-voice waterfall is only meaningful when every stage measures
the same way, on the same monotonic clock, and reports the same shape. Wall
clock time is for logs only. Tests inject their own clock.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

Clock = Callable[[], float]
monotonic: Clock = time.perf_counter


@dataclass
class ManualClock:
    """A clock that moves only when told: what tests (and simulations) inject wherever code decides by time."""

    now_s: float = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass(frozen=True)
class StageTiming:
    stage: str          # e.g. "stt.final", "tts.first_audio", "gateway.first_token"
    start_s: float      # on the monotonic clock
    end_s: float

    @property
    def duration_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000.0

    def to_dict(self) -> dict[str, float | str]:
        d = asdict(self)
        d["duration_ms"] = round(self.duration_ms, 3)
        return d


@dataclass
class Timings:
    """An ordered collection of stage timings, e.g. for one turn or one file."""

    clock: Clock = monotonic
    records: list[StageTiming] = field(default_factory=list)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.records.append(StageTiming(stage, start, self.clock()))

    def add(self, stage: str, start_s: float, end_s: float | None = None) -> StageTiming:
        rec = StageTiming(stage, start_s, self.clock() if end_s is None else end_s)
        self.records.append(rec)
        return rec

    def get(self, stage: str) -> StageTiming | None:
        for rec in reversed(self.records):
            if rec.stage == stage:
                return rec
        return None

    def as_ms(self) -> dict[str, float]:
        return {r.stage: round(r.duration_ms, 3) for r in self.records}

    def to_list(self) -> list[dict[str, float | str]]:
        return [r.to_dict() for r in self.records]
