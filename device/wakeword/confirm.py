"""The wake decision: first-stage fires, the verifier, and the second look, frame by frame.

Why one place: the device's audio loop and the Wyoming wake service both need the same rule, and
device/wakeword/eval.py measures it (`second_look_frame`); two copies of it would drift apart.
Blocking (the verifier transcribes): callers run `process` off their event loop (`aprocess`, `stage`).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import numpy as np

from device.wakeword.detector import FRAME_SAMPLES, SAMPLE_RATE_HZ, Detection, WakeWordDetector
from device.wakeword.verifier import Verdict, Verifier
from voxlens.stage import StreamStage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WakeDecision:
    det: Detection
    accepted: bool
    verdict: Verdict | None      # None: no verifier for this head, or it failed (the wake stands)
    second_look: bool = False


@dataclass
class _Look:
    det: Detection
    frames_left: int


class WakeConfirmer:
    """Feed 80 ms frames; get every decision (rejections too, for the caller's events). Not thread-safe."""

    def __init__(self, detector: WakeWordDetector, verifiers: dict[str, Verifier] | None = None,
                 second_look_s: float = 0.0) -> None:
        self.detector = detector
        self.verifiers = verifiers or {}   # head name -> second stage; a head without one wakes on its own
        self.look_frames = round(second_look_s * SAMPLE_RATE_HZ / FRAME_SAMPLES)
        self._look: _Look | None = None

    def reset(self) -> None:
        self.detector.reset()
        self._look = None

    def process(self, frame: np.ndarray, names: set[str] | None = None) -> list[WakeDecision]:
        """One frame; the list ends with the accepted decision when the device should wake."""
        out: list[WakeDecision] = []
        for det in self.detector.process(frame):
            if names is not None and det.name not in names:
                continue
            out.append(self._decide(det, det.audio))
            if out[-1].accepted:
                return out
        if self._look is not None:
            decision = self._second_look()
            if decision is not None:
                out.append(decision)
        return out

    async def aprocess(self, frame: np.ndarray, names: set[str] | None = None) -> list[WakeDecision]:
        """`process` in a worker thread: the detector (~1.3 ms a frame) and a verifier's transcription
        (~100 ms) never stall the event loop, where answers play."""
        return await asyncio.to_thread(self.process, frame, names)

    def stage(self, names: set[str] | None = None) -> StreamStage[np.ndarray, WakeDecision]:
        """The wake rule in the one stage shape (voxlens/stage.py): push 80 ms frames, `async for` decisions."""
        return StreamStage(lambda frames: self._decisions(frames, names))

    async def _decisions(self, frames: AsyncIterable[np.ndarray], names: set[str] | None) -> AsyncIterator[WakeDecision]:
        async for frame in frames:
            for decision in await self.aprocess(frame, names):
                yield decision

    def _decide(self, det: Detection, audio: np.ndarray | None, second: bool = False) -> WakeDecision:
        verdict = self._verify(det, audio)
        if verdict is not None and not verdict.accepted:
            if not second and self.look_frames > 0:
                self._look = _Look(det, self.look_frames)
            return WakeDecision(det, False, verdict, second)
        self._look = None
        self.detector.forget_audio()   # the phrase that woke the device never confirms another fire
        return WakeDecision(det, True, verdict, second)

    def _second_look(self) -> WakeDecision | None:
        """Once the head's score falls below its threshold (the phrase has ended), or the look's time is up,
        verify again on the audio up to now (eval.py's second_look_frame measures the same rule)."""
        look = self._look
        assert look is not None
        look.frames_left -= 1
        if self.detector.last_scores.get(look.det.name, 0.0) >= self.detector.threshold and look.frames_left > 0:
            return None
        self._look = None
        return self._decide(look.det, self.detector.recent_audio(), second=True)

    def _verify(self, det: Detection, audio: np.ndarray | None) -> Verdict | None:
        """A verifier that fails at run time lets the wake stand: better one false wake than a deaf device."""
        verifier = self.verifiers.get(det.name)
        if verifier is None or audio is None:
            return None
        try:
            return verifier.verify(audio, det.window)
        except Exception as exc:  # noqa: BLE001 - logged, and the wake stands
            log.warning("wake-word verifier %s failed (%s: %s); waking without it", verifier.kind, type(exc).__name__, exc)
            return None
