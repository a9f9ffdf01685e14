"""Device actions on the default platform: real state, real asyncio timers, real files, device-time-zone answers."""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from device import commands
from device.actions import ActionResult, DeviceActions, spoken_duration, timer_done_phrase
from device.platform import ActionError, LocalPlatform, Timer
from device.commands import CommandMatch
from voxlens.config import DeviceConfig

FIXED_UTC = datetime(2026, 11, 29, 14, 5, 0, tzinfo=timezone.utc)  # a Sunday


def make(tmp_path: Path, tz: str = "Europe/Paris", **platform_kw) -> DeviceActions:
    platform = LocalPlatform(tmp_path / "media", **platform_kw)
    return DeviceActions(platform, time_zone=tz, now=lambda zone: FIXED_UTC.astimezone(zone))


def say(actions: DeviceActions, text: str) -> ActionResult:
    """Through the real grammar, as the engine will do it."""
    match = commands.parse(text)
    assert match is not None, text
    return actions.run(match)


def test_volume_keeps_state_and_clamps(tmp_path: Path) -> None:
    actions = make(tmp_path)
    assert say(actions, "Set the volume to 25%.") == ActionResult("Volume 25 percent.", "done")
    assert say(actions, "volume up").speech == "Volume 35 percent."
    assert say(actions, "turn it down").speech == "Volume 25 percent."
    assert actions.platform.volume() == 25
    say(actions, "set the volume to max")
    assert say(actions, "louder").speech == "Volume 100 percent."
    say(actions, "volume to zero")
    assert say(actions, "volume down").speech == "Volume 0 percent."


def test_mute_is_a_tone_and_volume_change_unmutes(tmp_path: Path) -> None:
    actions = make(tmp_path)
    result = say(actions, "mute")
    assert (result.speech, result.earcon) == ("", "done")
    assert actions.platform.muted()
    say(actions, "volume up")
    assert not actions.platform.muted()
    say(actions, "mute")
    assert say(actions, "unmute").speech == "Sound on." and not actions.platform.muted()


def test_brightness(tmp_path: Path) -> None:
    actions = make(tmp_path)
    assert say(actions, "set the brightness to 40 percent").speech == "Brightness 40 percent."
    assert say(actions, "brighter").speech == "Brightness 50 percent."
    assert say(actions, "dim the screen").speech == "Brightness 40 percent."
    assert actions.platform.brightness() == 40


def test_photo_writes_a_timestamped_placeholder(tmp_path: Path) -> None:
    actions = make(tmp_path)
    assert say(actions, "take a photo") == ActionResult("Photo taken.", "done")
    say(actions, "take a picture")  # same instant: a second, distinct file
    files = sorted((tmp_path / "media").iterdir())
    assert len(files) == 2
    assert files[0].name.startswith("photo-2026") and files[0].suffix == ".json"
    record = json.loads(files[0].read_text())
    assert record["kind"] == "photo" and record["placeholder"] is True
    assert datetime.fromisoformat(record["taken_at"]).tzinfo is not None


def test_video_start_stop_records_duration(tmp_path: Path) -> None:
    times = iter([datetime(2026, 11, 29, 15, 0, 0, tzinfo=timezone.utc), datetime(2026, 11, 29, 15, 0, 12, tzinfo=timezone.utc)])
    actions = make(tmp_path, now=lambda: next(times))
    assert say(actions, "stop recording").ok is False
    assert say(actions, "start recording video").speech == "Recording."
    assert actions.platform.recording()
    assert say(actions, "record a video").speech == "Already recording."
    assert say(actions, "Stop recording.").speech == "Video saved."
    (video,) = (tmp_path / "media").iterdir()
    record = json.loads(video.read_text())
    assert record["kind"] == "video" and record["duration_s"] == 12.0
    assert video.name == "video-20261129-150000-000.json"


def test_unwritable_media_dir_is_a_spoken_error_and_an_operator_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "media"
    blocker.write_text("a file where the folder should be")
    actions = DeviceActions(LocalPlatform(blocker), time_zone="UTC")
    with caplog.at_level(logging.ERROR, logger="device.actions"):
        result = say(actions, "take a photo")
    assert (result.ok, result.earcon) == (False, "error")
    assert "set [device] media_dir to a writable folder" in caplog.text


async def test_timer_fires_callback_on_the_event_loop(tmp_path: Path) -> None:
    fired: list[Timer] = []
    done = asyncio.Event()

    async def on_timer(timer: Timer) -> None:
        fired.append(timer)
        done.set()

    actions = make(tmp_path, on_timer=on_timer)
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = actions.run(CommandMatch("timer_set", {"duration_s": 0.15, "name": "tea"}))
    assert result.speech == "Tea timer set for 1 second."
    await asyncio.wait_for(done.wait(), 2.0)
    assert loop.time() - start >= 0.14
    assert [t.name for t in fired] == ["tea"]
    assert timer_done_phrase(fired[0]) == "Your tea timer is done."
    assert actions.platform.timers() == []


async def test_timer_remaining_and_cancel(tmp_path: Path) -> None:
    fired: list[Timer] = []
    actions = make(tmp_path, on_timer=fired.append)
    assert say(actions, "how much time is left").speech == "There's no timer running."
    assert say(actions, "Set a timer for 2 minutes.").speech == "Timer set for 2 minutes."
    assert say(actions, "how much time is left").speech == "2 minutes left."
    say(actions, "set a pasta timer for ten minutes")
    remaining = say(actions, "how much time is left").speech
    assert remaining == "Timer: 2 minutes; pasta timer: 10 minutes."
    assert say(actions, "how much time is left on the pasta timer").speech == "10 minutes left on the pasta timer."
    assert say(actions, "cancel the pasta timer").speech == "Pasta timer cancelled."
    assert [t.name for t in actions.platform.timers()] == [""]
    assert say(actions, "cancel the pasta timer").speech == "There's no pasta timer running."
    assert say(actions, "cancel the timer").speech == "Timer cancelled."
    await asyncio.sleep(0)
    assert actions.platform.timers() == [] and fired == []


async def test_cancel_all_and_close_stop_every_task(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, on_timer=lambda t: None)
    actions = DeviceActions(platform)
    for text in ("set a timer for 5 minutes", "set a tea timer for 3 minutes"):
        say(actions, text)
    tasks = [t.task for t in platform.timers()]
    assert say(actions, "cancel my timers").speech == "2 timers cancelled."
    await asyncio.sleep(0)
    assert all(task.cancelled() for task in tasks)


async def test_failing_timer_callback_is_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(timer: Timer) -> None:
        raise RuntimeError("speaker unplugged")

    platform = LocalPlatform(tmp_path, on_timer=broken)
    timer = platform.start_timer(0.01, "eggs")
    with caplog.at_level(logging.ERROR, logger="device.platform"):
        await asyncio.wait_for(timer.task, 1.0)
    assert "timer callback failed for timer 'eggs'" in caplog.text


def test_timer_limits(tmp_path: Path) -> None:
    actions = make(tmp_path)
    assert actions.run(CommandMatch("timer_set", {"duration_s": 0})).ok is False
    with pytest.raises(ValueError, match="between 0 and 86400"):
        actions.platform.start_timer(-1)


def test_time_and_date_use_the_device_time_zone(tmp_path: Path) -> None:
    assert say(make(tmp_path, "Europe/Paris"), "what time is it").speech == "It's 3:05 PM."
    assert say(make(tmp_path, "Asia/Tokyo"), "what time is it").speech == "It's 11:05 PM."
    assert say(make(tmp_path, "America/Los_Angeles"), "What time is it?").speech == "It's 6:05 AM."
    assert say(make(tmp_path, "Europe/Paris"), "what's the date").speech == "It's Sunday, November 29, 2026."
    assert say(make(tmp_path, "Pacific/Kiritimati"), "what's the date").speech == "It's Monday, November 30, 2026."


def test_bad_time_zone_names_the_setting() -> None:
    with pytest.raises(ActionError, match=r"set \[device\] time_zone"):
        DeviceActions(LocalPlatform(), time_zone="Mars/Olympus_Mons")


def test_battery(tmp_path: Path) -> None:
    assert say(make(tmp_path, battery_percent=80), "battery level").speech == "Battery at 80 percent."

    class NoBattery(LocalPlatform):
        def battery_percent(self) -> int | None:
            return None

    result = say(DeviceActions(NoBattery(tmp_path)), "how much battery do I have left")
    assert (result.speech, result.ok) == ("I can't read the battery level.", False)


def test_stop_and_repeat_are_engine_controls(tmp_path: Path) -> None:
    actions = make(tmp_path)
    assert say(actions, "never mind") == ActionResult(control="stop")
    assert say(actions, "say that again") == ActionResult(control="repeat")


def test_unknown_command_is_an_error_not_a_crash(tmp_path: Path) -> None:
    result = make(tmp_path).run(CommandMatch("teleport"))
    assert (result.ok, result.earcon) == (False, "error")


def test_every_grammar_command_has_an_action(tmp_path: Path) -> None:
    grammar = commands.load_grammar()
    names = [n for n, i in grammar.intents.intents.items() if i.data[0].metadata["kind"] == "command"]
    missing = [n for n in names if not hasattr(DeviceActions, f"_do_{n}")]
    assert missing == []


def test_from_config_uses_media_dir_and_time_zone(tmp_path: Path) -> None:
    actions = DeviceActions.from_config(DeviceConfig(media_dir=str(tmp_path / "m"), time_zone="Asia/Tokyo"))
    assert str(actions.tz) == "Asia/Tokyo"
    say(actions, "take a photo")
    assert len(list((tmp_path / "m").iterdir())) == 1


@pytest.mark.parametrize(("seconds", "spoken"), [
    (120, "2 minutes"), (90, "1 minute 30 seconds"), (1, "1 second"), (0.2, "1 second"), (0, "0 seconds"),
    (3600, "1 hour"), (3900, "1 hour 5 minutes"), (3661, "1 hour 1 minute"), (59.5, "1 minute"),
])
def test_spoken_duration(seconds: float, spoken: str) -> None:
    assert spoken_duration(seconds) == spoken
