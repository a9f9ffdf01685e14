"""The device platform: what the hardware and OS provide (volume, display, camera, battery, network, timers).

Why: on real glasses these are platform calls; `Platform` names them, and
`LocalPlatform` keeps real state in memory, runs real asyncio timers and writes
timestamped placeholder files for photos and videos, so the whole device runs
headless and in tests.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable, Protocol

from protos import assistant_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_MEDIA_DIR = Path("~/.local/share/voxlens/media")
MAX_TIMER_S = 24 * 3600


class ActionError(ValueError):
    """A device setting is unusable (time zone, media folder); the message names the setting and the fix."""


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
