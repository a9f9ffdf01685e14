"""Find a tool call a model wrote as JSON in its text instead of native tool_calls.

Small models (the 0.5B default) answer a tool prompt with `{"name": ..., "arguments": {...}}`,
sometimes in a ``` fence, sometimes wrapped in <tool_call> tags, sometimes with
"parameters" instead of "arguments" or with arguments as a JSON string. Anything
that is not clearly a call to a known tool is treated as ordinary text.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from gateway.backends.base import ToolCall

ALIASES = {"get_weather": "weather", "weather_forecast": "weather", "forecast": "weather", "get_time": "time",
           "current_time": "time", "time_in_city": "time", "get_current_time": "time", "calculate": "calculator",
           "calc": "calculator", "search": "web_search", "websearch": "web_search"}
_NAME = re.compile(r"[a-z_]+")
_FENCE = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.S)
_TAGS = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def looks_like_tool_call(prefix: str) -> bool:
    """Whether streamed text so far may be a tool call, so it must be held back rather than spoken."""
    head = prefix.lstrip()
    return head.startswith(("{", "```", "<tool_call>", "[")) or head in ("`", "``", "<", "<tool", "<tool_")


def _objects(text: str) -> Iterable[Any]:
    for pattern in (_TAGS, _FENCE):
        for m in pattern.finditer(text):
            yield from _decode_all(m.group(1))
    yield from _decode_all(text)


def _decode_all(text: str) -> Iterable[Any]:
    decoder = json.JSONDecoder()
    i = 0
    while (i := _next_open(text, i)) != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        yield value
        i = end


def _next_open(text: str, start: int) -> int:
    positions = [p for p in (text.find("{", start), text.find("[", start)) if p != -1]
    return min(positions) if positions else -1


def _as_call(obj: Any, known: set[str]) -> ToolCall | None:
    if isinstance(obj, list):
        return next((c for c in (_as_call(o, known) for o in obj) if c), None)
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI shape pasted as text
        return _as_call(obj["function"], known)
    raw = obj.get("name") or obj.get("tool") or obj.get("function")
    if not isinstance(raw, str):
        return None
    m = _NAME.match(raw.strip().lower())  # "time(Tokyo)" -> "time", "get_weather" -> "weather"
    name = ALIASES.get(m.group(0), m.group(0)) if m else ""
    if name not in known:
        return None
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            args = {}
    return ToolCall(name, args if isinstance(args, dict) else {})


def is_json_like(text: str) -> bool:
    """Text that starts as JSON or a code fence (even cut short): never something to read aloud."""
    return text.strip().startswith(("{", "[", "```", "<tool_call>"))


_PAIR = re.compile(r'"(\w+)"\s*:\s*"([^"]*)"')


def _salvage(text: str, known: set[str]) -> ToolCall | None:
    """A call cut short by the token limit: take the name and the complete "key": "value" pairs."""
    pairs = _PAIR.findall(text)
    names = [v for k, v in pairs if k in ("name", "tool", "function")]
    if not names:
        return None
    call = _as_call({"name": names[0]}, known)
    if call is None:
        return None
    return ToolCall(call.name, {k: v for k, v in pairs if k not in ("name", "tool", "function", "type")})


def parse_tool_call(text: str, known_tools: Iterable[str]) -> ToolCall | None:
    known = set(known_tools)
    for obj in _objects(text):
        call = _as_call(obj, known)
        if call is not None:
            return call
    return _salvage(text, known) if is_json_like(text) else None
