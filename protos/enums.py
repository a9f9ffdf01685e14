"""The one map between the protocol's enums and the short names the code, logs and CLI use.

Why from the descriptors: "small" is TIER_SMALL with its prefix dropped, for every enum; a map
written by hand in each module drifts the day an enum value is added. Unknown wire values (a newer
peer, a fuzzer) read as "unspecified".
"""
from __future__ import annotations

from protos import assistant_pb2 as pb


def _names(enum, prefix: str) -> dict[int, str]:
    return {number: name.removeprefix(prefix).lower() for name, number in enum.items()}


TIER_NAMES = _names(pb.Tier, "TIER_")                                      # 1 -> "small"
PREFERENCE_NAMES = _names(pb.RoutePreference, "ROUTE_PREFERENCE_")         # 2 -> "big"
PHASE_NAMES = _names(pb.ToolEvent.Phase, "PHASE_")                          # 1 -> "started"
FINISH_NAMES = _names(pb.TurnEnd.FinishReason, "FINISH_REASON_")           # 3 -> "cancelled"

TIERS = {name: number for number, name in TIER_NAMES.items()}
PREFERENCES = {name: number for number, name in PREFERENCE_NAMES.items()}
PHASES = {name: number for number, name in PHASE_NAMES.items()}
FINISH = {name: number for number, name in FINISH_NAMES.items()} | {"tool_calls": pb.TurnEnd.FINISH_REASON_STOP}


def name(names: dict[int, str], number: int) -> str:
    return names.get(number, "unspecified")
