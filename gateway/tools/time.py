"""Time and date in any city, or in the device's own time zone, with zoneinfo.

Why a local lookup first: most city names are the last part of an IANA zone
("Tokyo" -> Asia/Tokyo) and need no network; other cities go through the
Open-Meteo geocoder, which returns each place's time zone.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from gateway.tools.base import ToolError, ToolResult
from voxlens.phrases import phrase, say, words

Geocoder = Callable[[str], Awaitable["object"]]


@lru_cache(maxsize=1)
def _zones_by_city() -> dict[str, str]:
    out: dict[str, str] = {}
    for key in sorted(available_timezones()):
        if "/" in key and not key.startswith(("Etc/", "SystemV/", "US/")):
            out.setdefault(key.rsplit("/", 1)[1].replace("_", " ").lower(), key)
    return out


def zone_for_city(city: str) -> str | None:
    return _zones_by_city().get(city.strip().lower())


def _zone(name: str, language: str = "en") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown time zone {name!r}", say(language, "unknown_zone"), code="INVALID_ARGUMENT",
                        retryable=False) from exc


def time_in_zone(zone_name: str, place: str, now_utc: datetime | None = None, language: str = "en") -> ToolResult:
    """The summary is said in `language` (voxlens/phrases/<lang>.yaml); the data stays as the tool found it."""
    now = (now_utc or datetime.now(timezone.utc)).astimezone(_zone(zone_name, language))
    clock = now.strftime("%H:%M")
    date = phrase(language, "short_date").format(weekday=words(language, "weekdays")[now.weekday()],
                                                 month=words(language, "months")[now.month - 1], day=now.day)
    summary = say(language, "time_in_place", time=clock, date=date, place=place)
    return ToolResult("time", {"place": place, "time_zone": zone_name, "time": clock, "date": date,
                               "iso": now.isoformat(timespec="minutes")}, summary, (clock,))


async def time_in_city(city: str | None, device_zone: str, geocode: Geocoder | None = None,
                       now_utc: datetime | None = None, language: str = "en") -> ToolResult:
    """The time in `city`, else in the device's zone. `geocode` (Open-Meteo) resolves cities zoneinfo does not name."""
    if not city:
        if not device_zone:
            raise ToolError("time asked without a city and the device sent no time zone",
                            say(language, "which_city_time"), code="INVALID_ARGUMENT", retryable=False)
        return time_in_zone(device_zone, phrase(language, "your_time_zone"), now_utc, language)
    zone_name = zone_for_city(city)
    place = city.strip().title()
    if zone_name is None and geocode is not None:
        found = await geocode(city)
        zone_name = getattr(found, "timezone", "") or None
        place = getattr(found, "name", place)
    if zone_name is None:
        raise ToolError(f"no time zone known for {city!r}", say(language, "zone_not_found", city=city),
                        code="NOT_FOUND", retryable=False)
    return time_in_zone(zone_name, place, now_utc, language)
