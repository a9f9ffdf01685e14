"""The tool box: which tools exist, their schemas for the model, and one `run` that calls them.

Why one place: typed intents and model tool calls go through the same code, so
a ToolEvent, a metric and the same error handling happen whichever way a tool
was asked for.
"""
from __future__ import annotations

import logging
from typing import Any

import httpx

from gateway.tools.base import ToolError, ToolResult
from gateway.tools.calculator import calculate
from gateway.tools.search import web_search
from gateway.tools.time import time_in_city
from gateway.tools.weather import OpenMeteoClient, Place
from voxlens.phrases import primary, say

log = logging.getLogger(__name__)

STATUS = {"weather": "Checking the weather", "time": "Checking the time", "calculator": "Calculating",
          "web_search": "Searching the web"}


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


SCHEMAS = {
    "weather": _fn("weather", "Current weather or the forecast for today or tomorrow in a city.",
                   {"city": {"type": "string"}, "day": {"type": "string", "enum": ["now", "today", "tomorrow"]}}, []),
    "time": _fn("time", "The current time and date in a city.", {"city": {"type": "string"}}, []),
    "calculator": _fn("calculator", "Arithmetic or unit conversion, e.g. '12*7' or '5 km to miles'.",
                      {"expression": {"type": "string"}}, ["expression"]),
    "web_search": _fn("web_search", "Search the web for recent facts.", {"query": {"type": "string"}}, ["query"]),
}


class Toolbox:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 2.0)))
        self.weather_client = OpenMeteoClient(cfg.geocoding_url, cfg.forecast_url, cfg.timeout_s, http=self._http)

    @property
    def names(self) -> list[str]:
        return [n for n in SCHEMAS if n != "web_search" or self.cfg.searxng_url]

    def schemas(self) -> list[dict[str, Any]]:
        return [SCHEMAS[n] for n in self.names]

    async def run(self, name: str, args: dict[str, Any], *, location: Place | None, time_zone: str,
                  language: str = "") -> ToolResult:
        """Run one tool. Arguments come from a model or the device: every one is checked, none is trusted.
        language: the Query's; the tool's summary and spoken errors are said in it."""
        language = primary(language)
        def text(key: str) -> str:
            value = args.get(key)
            return value.strip()[:100] if isinstance(value, str) else ""

        if name == "weather":
            return await self.weather_client.weather(text("city") or None, text("day") or "now", fallback=location,
                                                     language=language)
        if name == "time":
            async def geocode(city: str) -> Place:
                return await self.weather_client.geocode(city, language)
            return await time_in_city(text("city") or None, time_zone, geocode=geocode, language=language)
        if name == "calculator":
            return calculate(text("expression") or str(args.get("expression", "")))
        if name == "web_search" and self.cfg.searxng_url:
            return await web_search(self._http, self.cfg.searxng_url, text("query"))
        raise ToolError(f"unknown tool {name!r}", say(language, "tool_unknown"), code="INVALID_ARGUMENT", retryable=False)

    async def close(self) -> None:
        await self._http.aclose()
