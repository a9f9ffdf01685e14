"""Weather from Open-Meteo: the geocoding API (city -> coordinates) then the forecast API.

Why both base URLs are configurable: production talks to open-meteo.com (or a
self-hosted Open-Meteo); tests point them at a local server speaking the same
documented JSON, so this exact client code is what gets tested.
Docs: https://open-meteo.com/en/docs and https://open-meteo.com/en/docs/geocoding-api
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.tools.base import ToolError, ToolResult
from voxlens.phrases import entry, say

log = logging.getLogger(__name__)

# WMO weather interpretation codes, as listed in the Open-Meteo forecast docs.
WMO_CODES = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast", 45: "fog", 48: "freezing fog",
    51: "light drizzle", 53: "drizzle", 55: "heavy drizzle", 56: "freezing drizzle", 57: "freezing drizzle",
    61: "light rain", 63: "rain", 65: "heavy rain", 66: "freezing rain", 67: "freezing rain",
    71: "light snow", 73: "snow", 75: "heavy snow", 77: "snow grains", 80: "light showers", 81: "showers",
    82: "violent showers", 85: "snow showers", 86: "heavy snow showers", 95: "thunderstorms",
    96: "thunderstorms with hail", 99: "thunderstorms with heavy hail",
}
DAYS = ("now", "today", "tomorrow")


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float
    country: str = ""
    timezone: str = ""


def _describe(code: Any, language: str = "en") -> str:
    """A WMO code in words, in the language (voxlens/phrases/<lang>.yaml weather_codes; WMO_CODES: the English)."""
    try:
        number = int(code)
    except (TypeError, ValueError):
        return say(language, "mixed_weather").lower()
    return entry(language, "weather_codes", number, WMO_CODES.get(number) or say(language, "mixed_weather").lower())


def _round(value: Any) -> int:
    return int(round(float(value)))


class OpenMeteoClient:
    def __init__(self, geocoding_url: str, forecast_url: str, timeout_s: float = 3.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self.geocoding_url = geocoding_url
        self.forecast_url = forecast_url
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)))

    async def _get(self, url: str, params: dict[str, Any], language: str = "en") -> dict[str, Any]:
        try:
            resp = await self._http.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise ToolError(f"Open-Meteo at {url} timed out ({type(exc).__name__})",
                            say(language, "weather_slow"), code="DEADLINE_EXCEEDED") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"Open-Meteo at {url} is unreachable: {exc}; check tools.geocoding_url/forecast_url",
                            say(language, "weather_unreachable")) from exc
        if resp.status_code != 200:
            reason = ""
            try:
                reason = resp.json().get("reason", "")
            except ValueError:
                pass
            raise ToolError(f"Open-Meteo at {url} answered HTTP {resp.status_code} {reason}".strip(),
                            say(language, "weather_broken"),
                            retryable=resp.status_code >= 500)
        try:
            body = resp.json()
        except ValueError as exc:
            raise ToolError(f"Open-Meteo at {url} sent invalid JSON", say(language, "weather_unreadable")) from exc
        if not isinstance(body, dict):
            raise ToolError(f"Open-Meteo at {url} sent {type(body).__name__}, expected an object",
                            say(language, "weather_unreadable"))
        return body

    async def geocode(self, city: str, language: str = "en") -> Place:
        body = await self._get(self.geocoding_url, {"name": city, "count": 1, "language": language or "en",
                                                    "format": "json"}, language)
        results = body.get("results") or []  # the API omits "results" when nothing matches
        if not results:
            raise ToolError(f"Open-Meteo geocoding found no place named {city!r}",
                            say(language, "place_not_found", city=city), code="NOT_FOUND", retryable=False)
        r = results[0]
        try:
            return Place(str(r["name"]), float(r["latitude"]), float(r["longitude"]),
                         str(r.get("country", "")), str(r.get("timezone", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ToolError(f"Open-Meteo geocoding result lacks {exc}", say(language, "weather_unreadable")) from exc

    async def forecast(self, place: Place, day: str = "now", language: str = "en") -> ToolResult:
        day = day if day in DAYS else "now"
        body = await self._get(self.forecast_url, {
            "latitude": place.latitude, "longitude": place.longitude,
            "current": "temperature_2m,weather_code,wind_speed_10m",
            "daily": "weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max",
            "timezone": "auto", "forecast_days": 2,
        }, language)
        unit = (body.get("current_units") or {}).get("temperature_2m", "°C")
        try:
            if day == "now":
                cur = body["current"]
                temp = _round(cur["temperature_2m"])
                sky = _describe(cur.get("weather_code"), language)
                summary = say(language, "weather_now", place=place.name, temperature=temp, conditions=sky)
                data = {"place": place.name, "day": day, "temperature": temp, "unit": unit, "conditions": sky,
                        "wind_speed": cur.get("wind_speed_10m")}
                return ToolResult("weather", data, summary, (str(temp),))
            daily = body["daily"]
            i = 0 if day == "today" else 1
            hi, lo = _round(daily["temperature_2m_max"][i]), _round(daily["temperature_2m_min"][i])
            sky = _describe(daily["weather_code"][i], language)
            rain = (daily.get("precipitation_probability_max") or [None, None])[i]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ToolError(f"Open-Meteo forecast lacks the field {exc}", say(language, "weather_unreadable")) from exc
        summary = say(language, "weather_day", day=say(language, day), place=place.name, conditions=sky, high=hi, low=lo)
        data = {"place": place.name, "day": day, "high": hi, "low": lo, "unit": unit, "conditions": sky,
                "precipitation_probability": rain}
        return ToolResult("weather", data, summary, (str(hi), str(lo)))

    async def weather(self, city: str | None, day: str = "now", *, fallback: Place | None = None,
                      language: str = "en") -> ToolResult:
        """Weather for a named city, else for the device's location (`fallback`), said in `language`."""
        if city:
            place = await self.geocode(city, language)
        elif fallback is not None:
            place = fallback
        else:
            raise ToolError("weather asked without a city and the device sent no location",
                            say(language, "which_city_weather"), code="INVALID_ARGUMENT", retryable=False)
        return await self.forecast(place, day, language)

    async def close(self) -> None:
        await self._http.aclose()
