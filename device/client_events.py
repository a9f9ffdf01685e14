"""What the gateway says about one turn, as small dataclasses, and the errors a turn can end with.

Why: the engine should not branch on protobuf oneofs; it gets one typed event per
GatewayMessage (Wyoming-style), and every failure is an exception carrying a
short `spoken` sentence for the user and a `message` for the operator.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protos import assistant_pb2 as pb
from protos.enums import FINISH_NAMES, PHASE_NAMES, TIER_NAMES, name

OFFLINE_SPOKEN = "I can't reach the assistant right now. Device commands still work."
TIMEOUT_SPOKEN = "The assistant is taking too long. Please try again."
ERROR_SPOKEN = "Sorry, something went wrong."


@dataclass(frozen=True)
class RouteEvent:
    turn_id: str
    tier: str       # "small" | "big" | "none" | "unspecified"
    model: str
    reason: str
    failover: bool
    at_s: float     # monotonic clock, when the device received it


@dataclass(frozen=True)
class ToolEvent:
    turn_id: str
    tool: str
    phase: str      # "started" | "finished" | "failed"
    status: str     # speakable, e.g. "Checking the weather"
    at_s: float


@dataclass(frozen=True)
class TextEvent:
    turn_id: str
    text: str
    at_s: float


@dataclass(frozen=True)
class TurnEndEvent:
    turn_id: str
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    tokens_in: int
    tokens_out: int
    at_s: float
    timings_ms: dict[str, float] = field(default_factory=dict)  # the gateway's own stages


@dataclass(frozen=True)
class AudioEvent:
    """Answer audio to play as it is: an asker whose server speaks for itself (a Wyoming pipeline's TTS)."""

    turn_id: str
    pcm: np.ndarray  # int16 mono
    rate_hz: int
    at_s: float


@dataclass(frozen=True)
class AnswerTextEvent:
    """The words the answer's audio says: kept as the turn's answer (and for "repeat that"), not spoken again."""

    turn_id: str
    text: str
    at_s: float


GatewayEvent = RouteEvent | ToolEvent | TextEvent | TurnEndEvent
AskEvent = GatewayEvent | AudioEvent | AnswerTextEvent  # what any asker yields (device/engine.py's Asker)


class ClientError(Exception):
    """A turn could not be answered. `spoken` is for the user; str(self) is for the operator."""

    spoken: str = ERROR_SPOKEN
    retryable: bool = True

    def __init__(self, message: str, *, spoken: str | None = None, retryable: bool | None = None,
                 code: str = "") -> None:
        super().__init__(message)
        if spoken:
            self.spoken = spoken
        if retryable is not None:
            self.retryable = retryable
        self.code = code


class GatewayUnavailable(ClientError):
    """The gateway cannot be reached (down, wrong address, network gone)."""

    spoken = OFFLINE_SPOKEN


class TurnTimeout(ClientError):
    """The turn ran past its deadline; the device sent Cancel."""

    spoken = TIMEOUT_SPOKEN


class GatewayError(ClientError):
    """The gateway answered the turn with a typed Error."""


class ClientConfigError(ValueError):
    """The client's settings are unusable ([device] gateway, tls_ca); the message says which and how to fix it."""


def event_from_proto(msg: pb.GatewayMessage, at_s: float) -> GatewayEvent:
    """One GatewayMessage -> one event; a typed Error raises GatewayError."""
    kind = msg.WhichOneof("payload")
    if kind == "route":
        r = msg.route
        return RouteEvent(msg.turn_id, name(TIER_NAMES, r.tier), r.model, r.reason, r.failover, at_s)
    if kind == "tool":
        t = msg.tool
        return ToolEvent(msg.turn_id, t.tool, name(PHASE_NAMES, t.phase), t.status, at_s)
    if kind == "delta":
        return TextEvent(msg.turn_id, msg.delta.text, at_s)
    if kind == "end":
        e = msg.end
        return TurnEndEvent(msg.turn_id, name(FINISH_NAMES, e.finish_reason), e.tokens_in, e.tokens_out,
                            at_s, {t.stage: t.duration_ms for t in e.timings})
    if kind == "error":
        err = msg.error
        raise GatewayError(f"gateway error {err.code}: {err.message}", spoken=err.spoken or ERROR_SPOKEN,
                           retryable=err.retryable, code=err.code)
    raise GatewayError(f"gateway sent a message with no payload for turn {msg.turn_id!r}; "
                       "the gateway and device disagree on the protocol version", retryable=False,
                       code="INTERNAL")
