"""Earcons (wake, done, error, alarm) made in code: short enveloped sine chords, no sound files.

Why: a wearable confirms most actions with a sound rather than words, and
generated tones need no download, no licence and play at any output rate.
Each tone is a few notes, each note a chord of sines with a smooth attack and
an exponential decay, so nothing clicks.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

EARCON_NAMES = ("wake", "done", "error", "alarm")
PEAK_LEVEL = 0.35  # of int16 full scale: clearly audible, never harsh, never clipping


@dataclass(frozen=True)
class Note:
    freqs_hz: tuple[float, ...]  # played together (a chord)
    start_s: float
    duration_s: float


# Pleasant intervals: rising major arpeggio for wake, a perfect fifth resolving for done,
# a falling minor second (gentle, not a buzzer) for error, a repeated bright triad for alarm.
_SCORES: dict[str, tuple[Note, ...]] = {
    "wake": (Note((659.25, 987.77), 0.0, 0.09), Note((880.0, 1318.5), 0.07, 0.14)),
    "done": (Note((783.99,), 0.0, 0.08), Note((1046.5, 1567.98), 0.06, 0.16)),
    "error": (Note((493.88, 587.33), 0.0, 0.14), Note((466.16, 554.37), 0.12, 0.22)),
    "alarm": tuple(
        Note((880.0, 1108.73, 1318.51), start, 0.16)
        for burst in range(3)
        for start in (burst * 0.5, burst * 0.5 + 0.2)
    ),
}


class EarconError(ValueError):
    """An unknown earcon name or an unusable sample rate."""


def _note(note: Note, rate_hz: int) -> np.ndarray:
    n = max(1, int(round(note.duration_s * rate_hz)))
    t = np.arange(n, dtype=np.float64) / rate_hz
    wave = sum(np.sin(2 * np.pi * f * t) for f in note.freqs_hz) / len(note.freqs_hz)
    attack = np.minimum(1.0, t / 0.005)                 # 5 ms fade in
    decay = np.exp(-t / (note.duration_s * 0.35))       # natural ring-out
    release = np.minimum(1.0, (note.duration_s - t) / 0.01)  # last 10 ms fade to zero
    return wave * attack * decay * np.clip(release, 0.0, 1.0)


@functools.lru_cache(maxsize=32)
def _render(name: str, rate_hz: int) -> np.ndarray:
    notes = _SCORES[name]
    total_s = max(n.start_s + n.duration_s for n in notes)
    out = np.zeros(int(round(total_s * rate_hz)) + 1, dtype=np.float64)
    for note in notes:
        start = int(round(note.start_s * rate_hz))
        tone = _note(note, rate_hz)
        out[start:start + len(tone)] += tone[: len(out) - start]
    out *= PEAK_LEVEL / max(1e-9, float(np.max(np.abs(out))))
    pcm = np.round(out * 32767).astype(np.int16)
    pcm.setflags(write=False)  # cached and shared: nobody may change it in place
    return pcm


def earcon(name: str, rate_hz: int = 16000) -> np.ndarray:
    """The named earcon as mono int16 PCM at rate_hz (read-only array; copy to modify)."""
    if name not in _SCORES:
        raise EarconError(f"unknown earcon {name!r}; known: {', '.join(EARCON_NAMES)}")
    if not isinstance(rate_hz, int) or not 8000 <= rate_hz <= 192000:
        raise EarconError(f"earcon sample rate must be an integer between 8000 and 192000 Hz, got {rate_hz!r}")
    return _render(name, rate_hz)


def notes(name: str) -> tuple[Note, ...]:
    """The score of an earcon (what it plays), e.g. for tests and docs."""
    return _SCORES[name]


def duration_s(name: str) -> float:
    return max(n.start_s + n.duration_s for n in _SCORES[name])
