"""Device actions: what a recognised command does, and the short confirmation the user hears.

Why: `DeviceActions` turns a `CommandMatch` into a platform call (device/platform.py)
plus an `ActionResult`: a phrase to speak and/or an earcon, or a control for the
engine (stop, repeat). Time, date and timer answers use the device's time zone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Callable, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device.commands import CommandMatch
from device.platform import MAX_TIMER_S, ActionError, LocalPlatform, Platform, Timer, TimerCallback
from voxlens.config import DeviceConfig

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
# every value instead would mean 101 volume lines and a line per minute of the day.
CONFIRMATIONS = (
    "Sound on.", "Photo taken.", "Recording.", "Already recording.", "Video saved.", "I'm not recording.",
    "Timers can run up to 24 hours.", "There's no timer running.", "Timer cancelled.", "Your timer is done.",
    "I can't read the battery level.", "Sorry, that didn't work.", "Sorry, I can't do that yet.",
)
CONFIRMATION_HEADS = ("Volume", "Brightness", "Battery at", "Timer set for", "It's")


def spoken_duration(seconds: float) -> str:
    """120 -> '2 minutes', 90 -> '1 minute 30 seconds', 3900 -> '1 hour 5 minutes' (rounded up to the second)."""
    total = int(-(-seconds // 1))  # ceil: "1 second left" until it really is zero
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in
             ((hours, "hour"), (minutes, "minute"), (secs, "second")) if n]
    return " ".join(parts[:2]) if parts else "0 seconds"


def spoken_time(at: datetime) -> str:
    return f"{at.hour % 12 or 12}:{at.minute:02d} {'AM' if at.hour < 12 else 'PM'}"


def spoken_date(at: datetime) -> str:
    return f"{at:%A}, {at:%B} {at.day}, {at.year}"


def timer_done_phrase(timer: Timer) -> str:
    """What the engine says with the alarm earcon when a timer runs out."""
    return f"Your {timer.name} timer is done." if timer.name else "Your timer is done."


def _timer_label(timer: Timer) -> str:
    return f"{timer.name} timer" if timer.name else "timer"


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

    @classmethod
    def from_config(cls, cfg: DeviceConfig, *, on_timer: TimerCallback | None = None,
                    platform: Platform | None = None) -> "DeviceActions":
        return cls(platform or LocalPlatform(cfg.media_dir, on_timer=on_timer), time_zone=cfg.zone)

    def now(self) -> datetime:
        return self._now(self.tz)

    def run(self, command: CommandMatch) -> ActionResult:
        """Do the command now (all actions are quick, local and non-blocking) and return the confirmation."""
        handler = getattr(self, f"_do_{command.name}", None)
        if handler is None:
            log.error("no device action for command %r; add DeviceActions._do_%s", command.name, command.name)
            return ActionResult("Sorry, I can't do that yet.", "error", ok=False)
        try:
            return handler(command.slots)
        except ActionError as exc:
            log.error("%s failed: %s", command.name, exc)
            return ActionResult("Sorry, that didn't work.", "error", ok=False)

    # volume and brightness
    def _do_volume_up(self, slots: dict) -> ActionResult:
        return self._volume(self.platform.volume() + STEP_PERCENT)

    def _do_volume_down(self, slots: dict) -> ActionResult:
        return self._volume(self.platform.volume() - STEP_PERCENT)

    def _do_volume_set(self, slots: dict) -> ActionResult:
        return self._volume(int(slots["level"]))

    def _volume(self, percent: int) -> ActionResult:
        self.platform.set_muted(False)
        return ActionResult(f"Volume {self.platform.set_volume(percent)} percent.", "done")

    def _do_mute(self, slots: dict) -> ActionResult:
        self.platform.set_muted(True)
        return ActionResult("", "done")  # muted: a tone, not words

    def _do_unmute(self, slots: dict) -> ActionResult:
        self.platform.set_muted(False)
        return ActionResult("Sound on.", "done")

    def _do_brightness_up(self, slots: dict) -> ActionResult:
        return self._brightness(self.platform.brightness() + STEP_PERCENT)

    def _do_brightness_down(self, slots: dict) -> ActionResult:
        return self._brightness(self.platform.brightness() - STEP_PERCENT)

    def _do_brightness_set(self, slots: dict) -> ActionResult:
        return self._brightness(int(slots["level"]))

    def _brightness(self, percent: int) -> ActionResult:
        return ActionResult(f"Brightness {self.platform.set_brightness(percent)} percent.", "done")

    # camera
    def _do_take_photo(self, slots: dict) -> ActionResult:
        self.platform.take_photo()
        return ActionResult("Photo taken.", "done")

    def _do_video_start(self, slots: dict) -> ActionResult:
        if self.platform.recording():
            return ActionResult("Already recording.", "done")
        self.platform.start_video()
        return ActionResult("Recording.", "done")

    def _do_video_stop(self, slots: dict) -> ActionResult:
        if self.platform.stop_video() is None:
            return ActionResult("I'm not recording.", "error", ok=False)
        return ActionResult("Video saved.", "done")

    # timers
    def _do_timer_set(self, slots: dict) -> ActionResult:
        duration_s, name = float(slots["duration_s"]), str(slots.get("name", ""))
        if not 0 < duration_s <= MAX_TIMER_S:
            return ActionResult("Timers can run up to 24 hours.", "error", ok=False)
        timer = self.platform.start_timer(duration_s, name)
        label = _timer_label(timer)
        return ActionResult(f"{label[0].upper()}{label[1:]} set for {spoken_duration(duration_s)}.", "done")

    def _do_timer_cancel(self, slots: dict) -> ActionResult:
        name = str(slots.get("name", ""))
        cancelled = self.platform.cancel_timers(name)
        if not cancelled:
            return ActionResult(f"There's no {name + ' ' if name else ''}timer running.", "error", ok=False)
        if len(cancelled) == 1:
            return ActionResult(f"{_timer_label(cancelled[0]).capitalize()} cancelled.", "done")
        return ActionResult(f"{len(cancelled)} timers cancelled.", "done")

    def _do_timer_remaining(self, slots: dict) -> ActionResult:
        name = str(slots.get("name", ""))
        running = [t for t in self.platform.timers() if not name or t.name == name]
        if not running:
            return ActionResult(f"There's no {name + ' ' if name else ''}timer running.")
        now_s = self.platform.timer_now_s()
        if len(running) == 1:
            left = spoken_duration(running[0].remaining_s(now_s))
            return ActionResult(f"{left} left." if not running[0].name else f"{left} left on the {running[0].name} timer.")
        parts = [f"{_timer_label(t)}: {spoken_duration(t.remaining_s(now_s))}" for t in running[:3]]
        summary = "; ".join(parts) + "."
        return ActionResult(summary[0].upper() + summary[1:])

    # time, date, battery
    def _do_time_now(self, slots: dict) -> ActionResult:
        return ActionResult(f"It's {spoken_time(self.now())}.")

    def _do_date_today(self, slots: dict) -> ActionResult:
        return ActionResult(f"It's {spoken_date(self.now())}.")

    def _do_battery_level(self, slots: dict) -> ActionResult:
        percent = self.platform.battery_percent()
        if percent is None:
            return ActionResult("I can't read the battery level.", "error", ok=False)
        return ActionResult(f"Battery at {percent} percent.")

    # conversation control: the engine acts on these
    def _do_stop(self, slots: dict) -> ActionResult:
        return ActionResult(control="stop")

    def _do_repeat(self, slots: dict) -> ActionResult:
        return ActionResult(control="repeat")
