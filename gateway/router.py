"""Choose SMALL or BIG for each turn, and say why, from a table of rules.

Why a table: each rule is one small predicate with a name, tested on its own;
the first rule that decides wins, and its name is the reason the device sees
in RouteDecision. Order matters and is the policy. The tier a rule names is the router's output (the wire's
SMALL/BIG); whether that tier's backend may take the turn (local, language, context, breaker) is read from
its declared capabilities by the executor (gateway/tiers.py, gateway/turn.py), which moves the turn if not:

1. private_topic       configured private keywords go to a tier whose backend declares itself local
2. explicit_preference the user asked for a tier ("ask the big model ...")
3. intent_tool         a typed intent: the tool answers, the small model only phrases it
4. big_unavailable     no big tier, or its circuit breaker is open
5. tools_needed        free text that needs a tool the small tier cannot call natively, big can
6. latency_budget      a complex query whose budget the big tier cannot meet stays small
7. complex_query       long, explanatory or multi-step questions go big
8. simple_query        everything else stays small (fast, private, cheap)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from gateway.backends.base import Capabilities

SMALL, BIG = "small", "big"
_TOOL_CUES = re.compile(r"\b(weather|forecast|temperature|rain|time is it|what time|date|convert|calculate|"
                        r"plus|minus|times|divided|search|news|latest)\b")


@dataclass(frozen=True)
class RouteInput:
    text: str
    preference: str = "auto"              # "auto" | "small" | "big"
    intent: str = ""
    big_available: bool = True             # big tier configured, may take this turn, and its breaker lets it through
    small_caps: Capabilities | None = Capabilities()   # None: not configured
    big_caps: Capabilities | None = Capabilities(tool_calls=True, local=False)
    big_first_token_ms: float = 0.0        # recent time to first token of the big tier (0: unknown)
    latency_budget_ms: float = 1500.0


@dataclass(frozen=True)
class Route:
    tier: str
    reason: str


Rule = tuple[str, Callable[[RouteInput, object], "str | None"]]


def is_private(text: str, cfg) -> bool:
    """A turn about a private topic may only run on a tier whose backend declares itself local."""
    lowered = text.lower()
    return any(k.lower() in lowered for k in cfg.private_keywords)


def _private(inp: RouteInput, cfg) -> str | None:
    if not is_private(inp.text, cfg):
        return None
    small_local = inp.small_caps is not None and inp.small_caps.local
    return BIG if not small_local and inp.big_caps is not None and inp.big_caps.local else SMALL


def _explicit(inp: RouteInput, cfg) -> str | None:
    if inp.preference == SMALL:
        return SMALL
    if inp.preference == BIG and inp.big_available:
        return BIG
    return None


def _big_unavailable(inp: RouteInput, cfg) -> str | None:
    return SMALL if not inp.big_available else None


def _intent(inp: RouteInput, cfg) -> str | None:
    return SMALL if inp.intent else None


def _tools_needed(inp: RouteInput, cfg) -> str | None:
    if not _TOOL_CUES.search(inp.text.lower()):
        return None
    big_calls = inp.big_caps is not None and inp.big_caps.tool_calls
    small_calls = inp.small_caps is not None and inp.small_caps.tool_calls
    return BIG if big_calls and not small_calls else None


def is_complex(text: str, cfg) -> bool:
    lowered = text.lower()
    return len(lowered.split()) >= cfg.complex_min_words or any(
        re.search(rf"\b{re.escape(cue)}\b", lowered) for cue in cfg.complex_cues)


def _latency(inp: RouteInput, cfg) -> str | None:
    over = inp.big_first_token_ms > inp.latency_budget_ms > 0
    return SMALL if over and is_complex(inp.text, cfg) else None


def _complex(inp: RouteInput, cfg) -> str | None:
    return BIG if is_complex(inp.text, cfg) else None


def _default(inp: RouteInput, cfg) -> str | None:
    return SMALL


RULES: list[Rule] = [
    ("private_topic", _private),
    ("explicit_preference", _explicit),
    ("intent_tool", _intent),
    ("big_unavailable", _big_unavailable),
    ("tools_needed", _tools_needed),
    ("latency_budget", _latency),
    ("complex_query", _complex),
    ("simple_query", _default),
]


def route(inp: RouteInput, cfg, rules: list[Rule] = RULES) -> Route:
    """The first rule that returns a tier decides; its name is the reason."""
    for name, rule in rules:
        tier = rule(inp, cfg)
        if tier is not None:
            return Route(tier, name)
    return Route(SMALL, "simple_query")
