"""Device actions: what a recognised command does, and the short confirmation the user hears.

Why: `DeviceActions` turns a `CommandMatch` into a platform call (device/platform.py)
plus an `ActionResult`: a phrase to speak and/or an earcon, or a control for the
engine (stop, repeat). Time, date and timer answers use the device's time zone. What it says is
data (voxlens/phrases/<lang>.yaml), in the language the command was said in (CommandMatch.language).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device.commands import CommandMatch
from device.platform import (
    MAX_TIMER_S,
    ActionError,
    LocalPlatform,
    Platform,
    Timer,
    TimerCallback,
)
from voxlens.config import DeviceConfig
from voxlens.phrases import phrase, say, words

log = logging.getLogger(__name__)

STEP_PERCENT = 10

Control = Literal["stop", "repeat"]


@dataclass(frozen=True)
class ActionResult:
    """What the device says and plays after an action. speech "" means earcon only."""

    speech: str = ""
    earcon: str | None = None        # an earcons.EARCON_NAMES name
    control: Control | None = None   # for the engine: stop playback / repeat the last answer
    ok: bool = True


# ---------------------------------------------------------------- phrases

# What the device says after a command, synthesised once at start-up (device/app.py PREPARED_LINES) so that a
# command's first audio costs no synthesis. A line with a value ("Volume 60 percent.") plays its cached head
# ("Volume") while the value is synthesised (~50 ms against 400+ ms of head: bench/first_piece.py); caching
# every value instead would mean 101 volume lines and a line per minute of the day. English: the start-up voice's.
_FIXED = ("sound_on", "photo_taken", "recording", "already_recording", "video_saved", "not_recording",
          "timer_too_long", "no_timer", "timer_cancelled", "timer_done", "battery_unknown", "action_failed",
          "cant_do_yet")
CONFIRMATIONS = tuple(say("en", key) for key in _FIXED)
CONFIRMATION_HEADS = tuple(phrase("en", "heads"))


def spoken_duration(seconds: float, language: str = "en") -> str:
    """120 -> '2 minutes', 90 -> '1 minute 30 seconds', 3900 -> '1 hour 5 minutes' (rounded up to the second)."""
    total = int(-(-seconds // 1))  # ceil: "1 second left" until it really is zero
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [phrase(language, unit)[0 if n == 1 else 1].format(n=n)
             for n, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")) if n]
    return " ".join(parts[:2]) if parts else say(language, "zero_seconds")


def spoken_time(at: datetime, language: str = "en") -> str:
    return phrase(language, "clock").format(hour=at.hour, hour12=at.hour % 12 or 12, minute=at.minute,
                                            ampm=phrase(language, "am" if at.hour < 12 else "pm"))


def spoken_date(at: datetime, language: str = "en") -> str:
    return phrase(language, "date").format(weekday=words(language, "weekdays")[at.weekday()],
                                           month=words(language, "months")[at.month - 1], day=at.day, year=at.year)


def timer_done_phrase(timer: Timer, language: str = "en") -> str:
    """What the engine says with the alarm earcon when a timer runs out."""
    return say(language, "named_timer_done", name=timer.name) if timer.name else say(language, "timer_done")


def _timer_label(timer: Timer, language: str = "en") -> str:
    """'pasta timer' mid-sentence (not capitalised, unlike `say`)."""
    return phrase(language, "named_timer_label").format(name=timer.name) if timer.name else phrase(language, "timer_label")


# ---------------------------------------------------------------- actions


class DeviceActions:
    """Runs device commands against a platform and says what happened."""

    def __init__(self, platform: Platform, time_zone: str = "UTC",
                 now: Callable[[tzinfo], datetime] | None = None) -> None:
        try:
            self.tz = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ActionError(f"unknown time zone {time_zone!r}; set [device] time_zone to an IANA name "
                              "such as 'Europe/Paris'") from exc
        self.platform = platform
        self._now = now or (lambda tz: datetime.now(tz))
        self.language = "en"  # the command's being run: its confirmation is said in it

    def _say(self, key: str, **values: object) -> str:
        return say(self.language, key, **values)

    @classmethod
    def from_config(cls, cfg: DeviceConfig, *, on_timer: TimerCallback | None = None,
                    platform: Platform | None = None) -> DeviceActions:
        return cls(platform or LocalPlatform(cfg.media_dir, on_timer=on_timer), time_zone=cfg.zone)

    def now(self) -> datetime:
        return self._now(self.tz)

    def run(self, command: CommandMatch) -> ActionResult:
        """Do the command now (all actions are quick, local and non-blocking) and return the confirmation."""
        self.language = command.language
        handler = getattr(self, f"_do_{command.name}", None)
        if handler is None:
            log.error("no device action for command %r; add DeviceActions._do_%s", command.name, command.name)
            return ActionResult(self._say("cant_do_yet"), "error", ok=False)
        try:
            return handler(command.slots)
        except ActionError as exc:
            log.error("%s failed: %s", command.name, exc)
            return ActionResult(self._say("action_failed"), "error", ok=False)

    # volume and brightness
    def _do_volume_up(self, slots: dict) -> ActionResult:
        return self._volume(self.platform.volume() + STEP_PERCENT)

    def _do_volume_down(self, slots: dict) -> ActionResult:
        return self._volume(self.platform.volume() - STEP_PERCENT)

    def _do_volume_set(self, slots: dict) -> ActionResult:
        return self._volume(int(slots["level"]))

    def _volume(self, percent: int) -> ActionResult:
        self.platform.set_muted(False)
        return ActionResult(self._say("volume", percent=self.platform.set_volume(percent)), "done")

    def _do_mute(self, slots: dict) -> ActionResult:
        self.platform.set_muted(True)
        return ActionResult("", "done")  # muted: a tone, not words

    def _do_unmute(self, slots: dict) -> ActionResult:
        self.platform.set_muted(False)
        return ActionResult(self._say("sound_on"), "done")

    def _do_brightness_up(self, slots: dict) -> ActionResult:
        return self._brightness(self.platform.brightness() + STEP_PERCENT)

    def _do_brightness_down(self, slots: dict) -> ActionResult:
        return self._brightness(self.platform.brightness() - STEP_PERCENT)

    def _do_brightness_set(self, slots: dict) -> ActionResult:
        return self._brightness(int(slots["level"]))

    def _brightness(self, percent: int) -> ActionResult:
        return ActionResult(self._say("brightness", percent=self.platform.set_brightness(percent)), "done")

    # camera
    def _do_take_photo(self, slots: dict) -> ActionResult:
        self.platform.take_photo()
        return ActionResult(self._say("photo_taken"), "done")

    def _do_video_start(self, slots: dict) -> ActionResult:
        if self.platform.recording():
            return ActionResult(self._say("already_recording"), "done")
        self.platform.start_video()
        return ActionResult(self._say("recording"), "done")

    def _do_video_stop(self, slots: dict) -> ActionResult:
        if self.platform.stop_video() is None:
            return ActionResult(self._say("not_recording"), "error", ok=False)
        return ActionResult(self._say("video_saved"), "done")

    # timers
    def _do_timer_set(self, slots: dict) -> ActionResult:
        duration_s, name = float(slots["duration_s"]), str(slots.get("name", ""))
        if not 0 < duration_s <= MAX_TIMER_S:
            return ActionResult(self._say("timer_too_long"), "error", ok=False)
        timer = self.platform.start_timer(duration_s, name)
        duration = spoken_duration(duration_s, self.language)
        if timer.name:
            return ActionResult(self._say("named_timer_set", name=timer.name, duration=duration), "done")
        return ActionResult(self._say("timer_set", duration=duration), "done")

    def _do_timer_cancel(self, slots: dict) -> ActionResult:
        name = str(slots.get("name", ""))
        cancelled = self.platform.cancel_timers(name)
        if not cancelled:
            return ActionResult(self._no_timer(name), "error", ok=False)
        if len(cancelled) == 1:
            if cancelled[0].name:
                return ActionResult(self._say("named_timer_cancelled", name=cancelled[0].name), "done")
            return ActionResult(self._say("timer_cancelled"), "done")
        return ActionResult(self._say("timers_cancelled", count=len(cancelled)), "done")

    def _do_timer_remaining(self, slots: dict) -> ActionResult:
        name = str(slots.get("name", ""))
        running = [t for t in self.platform.timers() if not name or t.name == name]
        if not running:
            return ActionResult(self._no_timer(name))
        now_s = self.platform.timer_now_s()
        if len(running) == 1:
            left = spoken_duration(running[0].remaining_s(now_s), self.language)
            if running[0].name:
                return ActionResult(self._say("named_time_left", left=left, name=running[0].name))
            return ActionResult(self._say("time_left", left=left))
        parts = [f"{_timer_label(t, self.language)}: {spoken_duration(t.remaining_s(now_s), self.language)}"
                 for t in running[:3]]
        summary = "; ".join(parts) + "."
        return ActionResult(summary[0].upper() + summary[1:])

    def _no_timer(self, name: str) -> str:
        return self._say("no_named_timer", name=name) if name else self._say("no_timer")

    # time, date, battery
    def _do_time_now(self, slots: dict) -> ActionResult:
        return ActionResult(self._say("time_now", time=spoken_time(self.now(), self.language)))

    def _do_date_today(self, slots: dict) -> ActionResult:
        return ActionResult(self._say("date_today", date=spoken_date(self.now(), self.language)))

    def _do_battery_level(self, slots: dict) -> ActionResult:
        percent = self.platform.battery_percent()
        if percent is None:
            return ActionResult(self._say("battery_unknown"), "error", ok=False)
        return ActionResult(self._say("battery", percent=percent))

    # conversation control: the engine acts on these
    def _do_stop(self, slots: dict) -> ActionResult:
        return ActionResult(control="stop")

    def _do_repeat(self, slots: dict) -> ActionResult:
        return ActionResult(control="repeat")
