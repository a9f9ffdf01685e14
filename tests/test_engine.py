"""The turn state machine with the real grammar, real actions, real earcons, the real gRPC client and the real
gateway (gateway/server.py on loopback, instant tiers). Audio out is the real VoiceOutput (Piper) into a
MemorySink: what the user heard is read back from the sink, earcons by their exact samples and speech by
transcribing it (Whisper tiny.en)."""
from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from device import commands
from device.actions import DeviceActions
from device.audio import SAMPLE_RATE_HZ, MemorySink, resample
from device.client import AssistantClient
from device.client_events import OFFLINE_SPOKEN
from device.earcons import EARCON_NAMES, earcon
from device.engine import NOTHING_TO_REPEAT, State, TurnEngine
from device.platform import LocalPlatform
from device.voice_output import VoiceOutput
from tests.gateway_support import LiveGateway, free_port
from voxlens.config import DeviceConfig
from voxlens.retry import Backoff

STORY = tuple(f"{w} " for w in ("Once upon a time a small robot sang to the sea every morning and "
                                "every night " * 4).split())   # 64 words: ~20 s of speech
SLOW = {"words": STORY, "word_s": 0.05}                         # a model writing it over ~3 s


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def sounds_like(heard: str, line: str, share: float = 0.8) -> bool:
    """Whisper tiny hears most of a Piper line, not always every ending ("command" for "commands")."""
    said = {w.rstrip("s") for w in words(heard)}
    expected = [w.rstrip("s") for w in words(line)]
    return sum(w in said for w in expected) >= share * len(expected)


class Heard:
    """What the user heard, read back from the sink: earcons by their exact samples, the speech between them
    by transcribing it."""

    def __init__(self, sink: MemorySink, rate_hz: int, stt) -> None:
        self.sink, self.rate_hz, self.stt = sink, rate_hz, stt
        self.tones = {name: earcon(name, rate_hz) for name in EARCON_NAMES}

    def _name(self, chunk: np.ndarray) -> str | None:
        return next((n for n, tone in self.tones.items() if np.array_equal(chunk, tone)), None)

    def story(self, since: int = 0) -> list[tuple[str, str]]:
        """[("earcon", "wake"), ("speech", "volume 25 percent"), ...] from chunk `since` on."""
        out: list[tuple[str, str]] = []
        speech: list[np.ndarray] = []

        def flush() -> None:
            if speech:
                audio = resample(np.concatenate(speech), self.rate_hz, SAMPLE_RATE_HZ)
                out.append(("speech", " ".join(words(self.stt.transcribe(audio).text))))
                speech.clear()

        for chunk in self.sink.chunks[since:]:
            name = self._name(chunk)
            if name is None:
                speech.append(chunk)
            else:
                flush()
                out.append(("earcon", name))
        flush()
        return out

    def speech(self, since: int = 0) -> list[str]:
        return [text for kind, text in self.story(since) if kind == "speech"]

    def speech_s(self, since: int = 0) -> float:
        return sum(len(c) for c in self.sink.chunks[since:] if self._name(c) is None) / self.rate_hz

    @property
    def mark(self) -> int:
        return len(self.sink.chunks)


@pytest_asyncio.fixture(loop_scope="function")  # the gateway must run on the test's own loop
async def live(open_meteo):
    gateway = LiveGateway(open_meteo, token="", echo=False)  # the tiers answer "It is sunny today."
    await gateway.start()
    yield gateway
    await gateway.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def slow(open_meteo):
    gateway = LiveGateway(open_meteo, token="", echo=False, **SLOW)
    await gateway.start()
    yield gateway
    await gateway.stop()


def _ten_twenty_five(tz):  # an injected clock: the spoken time must not depend on when the suite runs
    return datetime(2026, 12, 4, 10, 25, tzinfo=tz)


class Rig:
    def __init__(self, tmp_path: Path, tts, stt, port: int | None, recheck=None, **cfg_kw) -> None:
        self.cfg = DeviceConfig(gateway=f"127.0.0.1:{port or free_port()}", media_dir=str(tmp_path / "media"),
                                **cfg_kw)
        self.events: list[dict] = []
        self.sink = MemorySink()
        self.speaker = VoiceOutput(tts, self.sink)
        self.heard = Heard(self.sink, tts.sample_rate_hz, stt)
        self.platform = LocalPlatform(self.cfg.media_dir, on_timer=lambda t: self.engine.timer_fired(t))
        self.client = AssistantClient(self.cfg, status=self.platform, backoff=Backoff(initial_s=0.05, max_s=0.2))
        self.engine = TurnEngine(self.cfg, grammar=commands.load_grammar(), speaker=self.speaker,
                                 actions=DeviceActions(self.platform, self.cfg.zone, now=_ten_twenty_five),
                                 client=self.client, recheck=recheck,
                                 emit=self.events.append)

    async def __aenter__(self) -> "Rig":
        await self.client.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.engine.close()
        self.platform.close()
        await self.client.close()

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["event"] == "state"]

    def turn(self) -> dict:
        return [e for e in self.events if e["event"] == "turn"][-1]

    async def say(self, text: str) -> None:
        """Wake word, then a final transcript; waits for the turn."""
        await self.engine.wake()
        await self.engine.speech_started()
        task = self.engine.utterance(text)
        assert task is not None
        await asyncio.wait_for(task, 20.0)


async def test_local_command_turn_and_follow_up_window(tmp_path: Path, tts, stt) -> None:
    async with Rig(tmp_path, tts, stt, None, follow_up_s=0.15) as rig:
        await rig.say("Set the volume to 25%.")
        (wake, done, (kind, said)) = rig.heard.story()
        assert (wake, done, kind) == (("earcon", "wake"), ("earcon", "done"), "speech")
        assert "volume" in said and "25" in said, said
        assert rig.platform.volume() == 25
        assert rig.states() == ["listening", "thinking", "speaking", "follow_up"]
        turn = rig.turn()
        assert (turn["kind"], turn["name"], turn["route"], turn["outcome"]) == ("command", "volume_set", "device", "ok")
        assert set(turn["timings_ms"]) == {"intent", "first_audio"}
        # follow-up: speech without the wake word is a new turn
        await rig.engine.speech_started()
        assert rig.engine.state is State.LISTENING
        await asyncio.wait_for(rig.engine.utterance("volume up"), 20.0)
        assert rig.platform.volume() == 35
        await asyncio.sleep(0.3)
        assert rig.engine.state is State.IDLE  # the window closed by itself
        assert rig.engine.utterance("volume up") is None  # no wake word, not in follow-up: ignored
        assert rig.platform.volume() == 35


async def test_listening_times_out_to_idle(tmp_path: Path, tts, stt) -> None:
    async with Rig(tmp_path, tts, stt, None, listen_timeout_s=0.1) as rig:
        await rig.engine.wake()
        await asyncio.sleep(0.25)
        assert rig.states() == ["listening", "idle"]


async def test_early_endpoint_only_for_complete_commands_while_listening(tmp_path: Path, tts, stt) -> None:
    async with Rig(tmp_path, tts, stt, None) as rig:
        assert await rig.engine.partial("set a timer for two minutes") == ""  # idle: not our utterance
        await rig.engine.wake()
        assert await rig.engine.partial("set a timer for two minutes") == "whole"
        assert await rig.engine.partial("set the volume to twenty") == ""
        assert await rig.engine.partial("what's the weather in") == ""
        assert [e["event"] for e in rig.events].count("endpoint_early") == 1
        assert await rig.engine.partial("volume up") == "closed"
        ran: list[str] = []
        asyncio.get_running_loop().call_soon(ran.append, "during match")   # hassil runs off the loop
        assert await rig.engine.partial("set a timer for ten minutes") == "whole"
        assert ran == ["during match"]


async def test_the_engine_says_when_speech_matters(tmp_path: Path, tts, stt) -> None:
    """The audio loop asks the engine, frame by frame, whether to endpoint speech: idle hears only the wake
    word; listening hears and transcribes; speech over an answer is heard (to barge in) but not transcribed
    until the barge-in has moved the engine back to listening."""
    async with Rig(tmp_path, tts, stt, None) as rig:
        assert (rig.engine.hears_speech, rig.engine.transcribes) == (False, False)
        await rig.engine.wake()
        assert (rig.engine.hears_speech, rig.engine.transcribes) == (True, True)
        rig.engine._set(State.SPEAKING)
        assert (rig.engine.hears_speech, rig.engine.transcribes) == (True, False)
        rig.engine.barge_in_on_speech = False
        assert rig.engine.hears_speech is False
        rig.engine.barge_in_on_speech = True
        await rig.engine.speech_started()
        assert rig.engine.state is State.LISTENING and rig.engine.transcribes


async def test_stop_and_repeat(tmp_path: Path, tts, stt) -> None:
    async with Rig(tmp_path, tts, stt, None) as rig:
        await rig.say("repeat that")
        (nothing,) = rig.heard.speech()
        assert sounds_like(nothing, NOTHING_TO_REPEAT), nothing
        mark = rig.heard.mark
        await rig.say("what time is it")
        answer = rig.turn()["answer"]
        assert answer.startswith("It's ")
        (first,) = rig.heard.speech(mark)
        mark = rig.heard.mark
        await rig.say("say that again")
        assert rig.turn()["answer"] == answer
        (again,) = rig.heard.speech(mark)
        assert re.findall(r"\d+", again) == re.findall(r"\d+", first) and re.findall(r"\d+", first)
        mark = rig.heard.mark
        await rig.say("never mind")
        assert rig.heard.story(mark) == [("earcon", "wake")]  # stopped: nothing said after the wake tone
        assert rig.engine.state is State.IDLE


async def test_question_streams_the_gateway_answer_with_timings(tmp_path: Path, tts, stt, live) -> None:
    async with Rig(tmp_path, tts, stt, live.port) as rig:
        await rig.engine.wake()
        origin = rig.engine.clock()
        task = rig.engine.utterance("why is the sky blue", speech_end_s=origin, endpoint_s=origin + 0.2,
                                    transcript_s=origin + 0.3)
        await asyncio.wait_for(task, 20.0)
        assert rig.heard.story() == [("earcon", "wake"), ("speech", "it is sunny today")]
        (asked,) = live.big.requests           # "why": a complex question, the big tier
        assert asked.messages[-1] == {"role": "user", "content": "why is the sky blue"}
        turn = rig.turn()
        assert (turn["kind"], turn["route"], turn["answer"]) == ("query", "big:instant", "It is sunny today.")
        ms = turn["timings_ms"]
        assert ms["endpoint"] == pytest.approx(200, abs=1) and ms["transcript"] == pytest.approx(300, abs=1)
        assert ms["route"] <= ms["first_token"] <= ms["first_audio"]
        assert rig.states() == ["listening", "thinking", "speaking", "follow_up"]


async def test_weather_intent_gets_a_filler_before_the_answer(tmp_path: Path, tts, stt, live) -> None:
    async with Rig(tmp_path, tts, stt, live.port) as rig:
        await rig.say("What's the weather in Paris?")
        (wake, (kind, said)) = rig.heard.story()
        assert wake == ("earcon", "wake") and kind == "speech"
        assert said.startswith("checking the weather") and "21" in said, said  # the filler, then the tool's facts
        assert "21" in rig.turn()["answer"]
        assert [e["phase"] for e in rig.events if e["event"] == "tool"] == ["started", "finished"]
        (transcript,) = [e for e in rig.events if e["event"] == "transcript"]
        assert (transcript["kind"], transcript["name"], transcript["slots"]) == ("intent", "weather", {"city": "Paris"})
        json.dumps(rig.events)  # the events file is JSON lines


@pytest.mark.parametrize("how", ["wake", "speech"])
async def test_barge_in_stops_playback_and_cancels_the_turn(tmp_path: Path, tts, stt, slow, how: str) -> None:
    async with Rig(tmp_path, tts, stt, slow.port) as rig:
        await rig.engine.wake()
        task = rig.engine.utterance("tell me a story")
        while rig.heard.speech_s() == 0:        # the answer has started to play
            await asyncio.sleep(0.01)
        assert rig.engine.state is State.SPEAKING
        await (rig.engine.wake() if how == "wake" else rig.engine.speech_started())
        assert rig.engine.state is State.LISTENING
        await asyncio.gather(task, return_exceptions=True)   # barge-in returned at once; the turn unwinds on its own
        assert task.cancelled()
        heard_s = rig.heard.speech_s()
        await asyncio.sleep(0.2)
        assert rig.heard.speech_s() == heard_s      # stopped: not one more sample of the answer
        assert heard_s < 10.0, heard_s              # cut off, not the whole ~20 s story
        assert rig.turn()["outcome"] == "cancelled"
        barge = [e for e in rig.events if e["event"] == "barge_in"]
        assert barge and barge[0]["reason"] == ("wake word" if how == "wake" else "user speech")
        assert barge[0]["turn_id"]
        await asyncio.wait_for(_stopped(slow), 5.0)  # the Cancel reached the gateway: the model stopped writing
    assert slow.count("voxlens_turns_total", finish_reason="cancelled") == 1


async def _stopped(gateway: LiveGateway) -> None:
    while gateway.stopped < 1:
        await asyncio.sleep(0.01)


async def test_gateway_down_questions_fail_fast_and_commands_still_work(tmp_path: Path, tts, stt) -> None:
    async with Rig(tmp_path, tts, stt, None) as rig:
        await rig.engine.wake()
        await asyncio.wait_for(rig.engine.utterance("who won the world cup"), 20.0)
        (error, (kind, said)) = rig.heard.story()[-2:]
        assert error == ("earcon", "error") and kind == "speech" and sounds_like(said, OFFLINE_SPOKEN), said
        assert rig.turn()["outcome"] == "offline"
        assert rig.engine.state is State.IDLE
        mark = rig.heard.mark
        await rig.say("volume up")
        (said,) = rig.heard.speech(mark)
        assert "volume" in said and "70" in said, said


async def test_timer_fires_alarm_and_notice(tmp_path: Path, tts, stt) -> None:
    async with Rig(tmp_path, tts, stt, None) as rig:
        await rig.say("set a timer for one second")
        said = rig.heard.speech()[-1]
        assert sounds_like(said, "Timer set for 1 second.", 0.7), said
        mark = rig.heard.mark
        await asyncio.wait_for(_alert_played(rig), 20.0)
        (alarm, (kind, said)) = rig.heard.story(mark)
        assert alarm == ("earcon", "alarm") and kind == "speech" and sounds_like(said, "Your timer is done."), said


async def _alert_played(rig: Rig) -> None:
    """The timer fired and its alarm and notice were played (the engine plays them on their own task)."""
    while not any(e["event"] == "timer_fired" for e in rig.events) or rig.engine._alerts:
        await asyncio.sleep(0.05)


async def test_no_client_configured_is_the_offline_message(tmp_path: Path, tts, stt) -> None:
    sink = MemorySink()
    cfg = DeviceConfig(media_dir=str(tmp_path))
    engine = TurnEngine(cfg, grammar=commands.load_grammar(), actions=DeviceActions(LocalPlatform(tmp_path)),
                        speaker=VoiceOutput(tts, sink))
    await engine.wake()
    await asyncio.wait_for(engine.utterance("tell me a joke"), 20.0)
    (said,) = Heard(sink, tts.sample_rate_hz, stt).speech()
    assert sounds_like(said, OFFLINE_SPOKEN), said
    await engine.close()


class SlowToUnwind(VoiceOutput):
    """The real VoiceOutput, whose speech, once cancelled, takes until `release` to unwind (a slow cleanup)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.speaking, self.unwinding, self.release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def speak(self, *args, **kw) -> None:
        self.speaking.set()
        try:
            await super().speak(*args, **kw)
        except asyncio.CancelledError:
            self.unwinding.set()
            await self.release.wait()
            raise


async def test_barge_in_returns_to_the_audio_loop_without_waiting_for_the_turn_to_unwind(tmp_path: Path, tts) -> None:
    sink = MemorySink(realtime=True)
    speaker = SlowToUnwind(tts, sink)
    events: list[dict] = []
    engine = TurnEngine(DeviceConfig(media_dir=str(tmp_path)), grammar=commands.load_grammar(),
                        actions=DeviceActions(LocalPlatform(tmp_path)), speaker=speaker, emit=events.append)
    await engine.wake()
    task = engine.utterance("Set the volume to 25%.")
    await speaker.speaking.wait()                       # the command's answer is being spoken
    barging = asyncio.create_task(engine.barge_in("wake word"))
    await speaker.unwinding.wait()                      # the turn is cancelled and still unwinding...
    assert barging.done() and not task.done()          # ...and barge-in has already returned
    played = sink.samples_written
    speaker.release.set()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert sink.samples_written == played               # the token stopped the sink at the trip
    assert [e["outcome"] for e in events if e["event"] == "turn"] == ["cancelled"]
    await engine.close()


# ---------------------------------------------------------------- a second look at a near-miss command
def _after_the_wake(user_speak, text: str, lead_s: float = 0.4) -> np.ndarray:
    """`text` in the user's voice as the device hands it over: the pre-roll before it holds the silence after
    the wake phrase (with 0.2-0.6 s of it tiny.en hears this voice's "Volume up." as "Volume app")."""
    pause = np.zeros(int(lead_s * SAMPLE_RATE_HZ), np.int16)
    return np.concatenate([pause, user_speak(text), np.zeros(int(0.2 * SAMPLE_RATE_HZ), np.int16)])


async def test_a_near_miss_command_is_heard_again_and_runs_on_the_device(tmp_path: Path, tts, stt, user_speak,
                                                                       live) -> None:
    from device.app import _command_recheck

    audio = _after_the_wake(user_speak, "Volume up.")
    first = stt.transcribe(audio).text
    assert commands.load_grammar().parse(first) is None, f"tiny.en now hears {first!r}: pick audio it mishears"
    async with Rig(tmp_path, tts, stt, live.port, recheck=_command_recheck(stt)) as rig:
        before = rig.platform.volume()
        await rig.engine.wake()
        await asyncio.wait_for(rig.engine.utterance(first, audio=audio), 20.0)
        (look,) = [e for e in rig.events if e["event"] == "command_recheck"]
        assert look["text"] == first and look["command"] == "volume_up", look
        turn = rig.turn()
        assert (turn["kind"], turn["name"], turn["route"]) == ("command", "volume_up", "device"), turn
        assert rig.platform.volume() > before
        assert not live.small.requests and not live.big.requests   # the gateway never saw the misheard words


async def test_a_question_that_names_a_command_word_stays_a_question(tmp_path: Path, tts, stt, user_speak,
                                                                   live) -> None:
    """"What is volume?" is worth a second look (short, says "volume"), but no command reads like it."""
    from device.app import _command_recheck

    audio = _after_the_wake(user_speak, "What is volume?")
    first = stt.transcribe(audio).text
    async with Rig(tmp_path, tts, stt, live.port, recheck=_command_recheck(stt)) as rig:
        await rig.engine.wake()
        await asyncio.wait_for(rig.engine.utterance(first, audio=audio), 20.0)
        (look,) = [e for e in rig.events if e["event"] == "command_recheck"]
        assert look["command"] == "", look
        turn = rig.turn()
        assert turn["kind"] == "query" and turn["answer"] == "It is sunny today.", turn
        assert "volume" in turn["text"].lower()
