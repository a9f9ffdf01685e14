"""Device actions: what a recognised command does, and the short confirmation the user hears.

Why: on real glasses volume, camera and battery are platform calls; here a
`Platform` protocol names them and `LocalPlatform` keeps real state, runs real
asyncio timers and writes timestamped placeholder files for photos and videos,
so the whole device runs headless and in tests. `DeviceActions` turns a
`CommandMatch` into a call plus an `ActionResult` (a phrase and/or an earcon).
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Awaitable, Callable, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device.commands import CommandMatch
from protos import assistant_pb2 as pb
from voxlens.config import DeviceConfig

log = logging.getLogger(__name__)

STEP_PERCENT = 10
DEFAULT_MEDIA_DIR = Path("~/.local/share/voxlens/media")
MAX_TIMER_S = 24 * 3600

Control = Literal["stop", "repeat"]


class ActionError(ValueError):
    """A device setting is unusable (time zone, media folder); the message names the setting and the fix."""


@dataclass(frozen=True)
class ActionResult:
    """What the device says and plays after an action. speech "" means earcon only."""

    speech: str = ""
    earcon: str | None = None        # an earcons.EARCON_NAMES name
    control: Control | None = None   # for the engine: stop playback / repeat the last answer
    ok: bool = True


@dataclass
class Timer:
    name: str               # "" for an unnamed timer
    duration_s: float
    deadline_s: float       # on the event loop's monotonic clock
    task: asyncio.Task | None = field(default=None, repr=False)

    def remaining_s(self, now_s: float) -> float:
        return max(0.0, self.deadline_s - now_s)


TimerCallback = Callable[[Timer], Awaitable[None] | None]


class Platform(Protocol):
    """What the device hardware/OS provides. Real glasses implement this against their platform APIs."""

    def volume(self) -> int: ...
    def set_volume(self, percent: int) -> int: ...
    def muted(self) -> bool: ...
    def set_muted(self, muted: bool) -> None: ...
    def brightness(self) -> int: ...
    def set_brightness(self, percent: int) -> int: ...
    def take_photo(self) -> Path: ...
    def start_video(self) -> Path: ...
    def stop_video(self) -> Path | None: ...
    def recording(self) -> bool: ...
    def battery_percent(self) -> int | None: ...
    def network(self) -> int: ...  # a pb.NetworkType value
    def start_timer(self, duration_s: float, name: str = "") -> Timer: ...
    def cancel_timers(self, name: str = "") -> list[Timer]: ...
    def timers(self) -> list[Timer]: ...
    def timer_now_s(self) -> float: ...


def _clamp(percent: int | float) -> int:
    return int(max(0, min(100, round(percent))))


def _read_battery_percent() -> int | None:
    """The host's battery if it has one (Linux sysfs), else None: no invented numbers."""
    for capacity in sorted(Path("/sys/class/power_supply").glob("*/capacity")):
        try:
            return _clamp(int(capacity.read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def _detect_network() -> int:
    """WIFI/ETHERNET when a non-loopback interface is up, OFFLINE when none is, UNKNOWN off Linux."""
    net = Path("/sys/class/net")
    if not net.is_dir():
        return pb.NETWORK_TYPE_UNKNOWN
    up = []
    for iface in net.iterdir():
        if iface.name == "lo":
            continue
        try:
            if (iface / "operstate").read_text().strip() in ("up", "unknown"):
                up.append(iface)
        except OSError:
            continue
    if not up:
        return pb.NETWORK_TYPE_OFFLINE
    return pb.NETWORK_TYPE_WIFI if any((i / "wireless").exists() for i in up) else pb.NETWORK_TYPE_ETHERNET


class LocalPlatform:
    """The default platform: real state in memory, real asyncio timers, placeholder media files."""

    def __init__(self, media_dir: str | Path = "", *, on_timer: TimerCallback | None = None,
                 battery_percent: int | None = None, network: int | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.media_dir = Path(media_dir or DEFAULT_MEDIA_DIR).expanduser()
        self.on_timer = on_timer
        self._volume, self._brightness, self._muted = 60, 70, False
        self._battery = battery_percent
        self._network = network
        self._now = now or (lambda: datetime.now().astimezone())
        self._video: tuple[Path, datetime] | None = None
        self._timers: list[Timer] = []

    # ------------------------------------------------------------ audio and display
    def volume(self) -> int:
        return self._volume

    def set_volume(self, percent: int) -> int:
        self._volume = _clamp(percent)
        return self._volume

    def muted(self) -> bool:
        return self._muted

    def set_muted(self, muted: bool) -> None:
        self._muted = muted

    def brightness(self) -> int:
        return self._brightness

    def set_brightness(self, percent: int) -> int:
        self._brightness = _clamp(percent)
        return self._brightness

    # ------------------------------------------------------------ camera
    def _media_path(self, kind: str, at: datetime) -> Path:
        try:
            self.media_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ActionError(f"cannot create the media folder {self.media_dir} ({exc.strerror}); "
                              "set [device] media_dir to a writable folder") from exc
        stem = f"{kind}-{at:%Y%m%d-%H%M%S}-{at.microsecond // 1000:03d}"
        path = self.media_dir / f"{stem}.json"
        suffix = 1
        while path.exists():
            path, suffix = self.media_dir / f"{stem}-{suffix}.json", suffix + 1
        return path

    def _write(self, path: Path, record: dict) -> None:
        try:
            path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ActionError(f"cannot write {path} ({exc.strerror}); "
                              "set [device] media_dir to a writable folder") from exc

    def take_photo(self) -> Path:
        at = self._now()
        path = self._media_path("photo", at)
        self._write(path, {"kind": "photo", "placeholder": True, "taken_at": at.isoformat()})
        return path

    def start_video(self) -> Path:
        if self._video is not None:
            return self._video[0]
        at = self._now()
        path = self._media_path("video", at)
        self._write(path, {"kind": "video", "placeholder": True, "started_at": at.isoformat()})
        self._video = (path, at)
        return path

    def stop_video(self) -> Path | None:
        if self._video is None:
            return None
        (path, started), at = self._video, self._now()
        self._video = None
        self._write(path, {"kind": "video", "placeholder": True, "started_at": started.isoformat(),
                           "stopped_at": at.isoformat(), "duration_s": round((at - started).total_seconds(), 3)})
        return path

    def recording(self) -> bool:
        return self._video is not None

    # ------------------------------------------------------------ battery and network
    def battery_percent(self) -> int | None:
        return self._battery if self._battery is not None else _read_battery_percent()

    def network(self) -> int:
        return self._network if self._network is not None else _detect_network()

    # ------------------------------------------------------------ timers
    def timer_now_s(self) -> float:
        return asyncio.get_running_loop().time()

    def start_timer(self, duration_s: float, name: str = "") -> Timer:
        """Needs a running event loop; the timer fires on_timer when it runs out."""
        if not 0 < duration_s <= MAX_TIMER_S:
            raise ValueError(f"timer duration must be between 0 and {MAX_TIMER_S} s, got {duration_s}")
        timer = Timer(name=name, duration_s=duration_s, deadline_s=self.timer_now_s() + duration_s)
        timer.task = asyncio.get_running_loop().create_task(self._run_timer(timer), name=f"timer:{name or 'unnamed'}")
        self._timers.append(timer)
        return timer

    async def _run_timer(self, timer: Timer) -> None:
        await asyncio.sleep(timer.duration_s)
        if timer in self._timers:
            self._timers.remove(timer)
        if self.on_timer is None:
            return
        try:
            outcome = self.on_timer(timer)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # a failing alarm must not kill the loop; say why in the log
            log.exception("timer callback failed for timer %r", timer.name or "unnamed")

    def cancel_timers(self, name: str = "") -> list[Timer]:
        """Cancel the timers with this name, or every timer when name is empty."""
        chosen = [t for t in self._timers if not name or t.name == name]
        for timer in chosen:
            self._timers.remove(timer)
            if timer.task is not None:
                timer.task.cancel()
        return chosen

    def timers(self) -> list[Timer]:
        return sorted(self._timers, key=lambda t: t.deadline_s)

    def close(self) -> None:
        self.cancel_timers()


# ---------------------------------------------------------------- phrases


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
        return cls(platform or LocalPlatform(cfg.media_dir, on_timer=on_timer), time_zone=cfg.time_zone)

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
