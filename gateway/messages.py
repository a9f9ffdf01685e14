"""Builders for the gateway's outgoing messages, so the turn logic reads as what it says, not protobuf plumbing."""
from __future__ import annotations

from protos import assistant_pb2 as pb
from protos.enums import FINISH, PHASES, TIERS
from voxlens.timing import Timings


def route(turn_id: str, tier: str, model: str, reason: str, failover: bool = False) -> pb.GatewayMessage:
    return pb.GatewayMessage(turn_id=turn_id, route=pb.RouteDecision(
        tier=TIERS[tier], model=model, reason=reason, failover=failover))


def tool(turn_id: str, name: str, phase: str, status: str = "") -> pb.GatewayMessage:
    return pb.GatewayMessage(turn_id=turn_id, tool=pb.ToolEvent(tool=name, phase=PHASES[phase], status=status))


def delta(turn_id: str, text: str) -> pb.GatewayMessage:
    return pb.GatewayMessage(turn_id=turn_id, delta=pb.TextDelta(text=text))


def error(turn_id: str, code: str, message: str, spoken: str, retryable: bool = False) -> pb.GatewayMessage:
    return pb.GatewayMessage(turn_id=turn_id, error=pb.Error(code=code, message=message, spoken=spoken,
                                                              retryable=retryable))


def end(turn_id: str, finish: str, timings: Timings, tokens_in: int = 0, tokens_out: int = 0) -> pb.GatewayMessage:
    return pb.GatewayMessage(turn_id=turn_id, end=pb.TurnEnd(
        finish_reason=FINISH.get(finish, pb.TurnEnd.FINISH_REASON_STOP), tokens_in=tokens_in, tokens_out=tokens_out,
        timings=[pb.StageTiming(stage=r.stage, duration_ms=r.duration_ms) for r in timings.records]))


def slot_text(intent: pb.Intent) -> dict[str, str]:
    """Intent slots as plain strings (numbers and flags become their text)."""
    out: dict[str, str] = {}
    for key, value in intent.slots.items():
        kind = value.WhichOneof("value")
        if kind is not None:
            out[key] = str(getattr(value, kind)).strip()
    return out
