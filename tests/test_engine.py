"""The turn state machine with the real grammar, real actions, real earcons and the real gRPC client
against the loopback test peer. Audio out is a RecordingSpeaker (what would be played, paced like speech):
the TTS and sinks are the speech stream's and are joined by the lead."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterable, Callable

import pytest
import pytest_asyncio

from device import commands
from device.actions import DeviceActions
from device.platform import LocalPlatform
from device.client import AssistantClient
from device.client_events import OFFLINE_SPOKEN
from device.earcons import earcon
from device.engine import NOTHING_TO_REPEAT, State, TurnEngine
from tests.grpc_peer import EchoServicer, PeerServer, free_port
from voxlens.config import DeviceConfig
from voxlens.retry import Backoff

WORD_S = 0.02  # how long the recording speaker "plays" each word


class RecordingSpeaker:
    """Plays nothing, records everything, takes WORD_S per word, and stops at once on stop()."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self._generation = 0

    async def earcon(self, name: str) -> None:
        earcon(name)  # the real tone must exist for this name
        self.log.append(("earcon", name))

    async def speak(self, text: str | AsyncIterable[str], on_first_audio: Callable[[], None] | None = None) -> None:
        generation = self._generation
        pieces = [text] if isinstance(text, str) else text
        spoken: list[str] = []

        async def each():
            if isinstance(pieces, list):
                for p in pieces:
                    yield p
            else:
                async for p in pieces:
                    yield p

        try:
            async for piece in each():
                for word in piece.split():
                    if generation != self._generation:
                        break
                    if on_first_audio is not None:
                        on_first_audio()
                        on_first_audio = None
                    spoken.append(word)
                    await asyncio.sleep(WORD_S)
        finally:  # also when the engine cancels the speaking task on barge-in
            self.log.append(("speech", " ".join(spoken)))

    def stop(self) -> None:
        self._generation += 1
        self.log.append(("stop", ""))

    def speech(self) -> list[str]:
        return [text for kind, text in self.log if kind == "speech"]

    def earcons(self) -> list[str]:
        return [text for kind, text in self.log if kind == "earcon"]


@pytest_asyncio.fixture(loop_scope="function")
async def peer():
    server = PeerServer(EchoServicer(), free_port())
    await server.start()
    yield server
    await server.stop()


class Rig:
    def __init__(self, tmp_path: Path, port: int | None, **cfg_kw) -> None:
        self.cfg = DeviceConfig(gateway=f"127.0.0.1:{port or free_port()}", media_dir=str(tmp_path / "media"),
                                **cfg_kw)
        self.events: list[dict] = []
        self.speaker = RecordingSpeaker()
        self.platform = LocalPlatform(self.cfg.media_dir, on_timer=lambda t: self.engine.timer_fired(t))
        self.client = AssistantClient(self.cfg, status=self.platform, backoff=Backoff(initial_s=0.05, max_s=0.2))
        self.engine = TurnEngine(self.cfg, grammar=commands.load_grammar(), speaker=self.speaker,
                                 actions=DeviceActions(self.platform, self.cfg.zone), client=self.client,
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
        await asyncio.wait_for(task, 5.0)


async def test_local_command_turn_and_follow_up_window(tmp_path: Path) -> None:
    async with Rig(tmp_path, None, follow_up_s=0.15) as rig:
        await rig.say("Set the volume to 25%.")
        assert rig.speaker.log == [("earcon", "wake"), ("earcon", "done"), ("speech", "Volume 25 percent.")]
        assert rig.platform.volume() == 25
        assert rig.states() == ["listening", "thinking", "speaking", "follow_up"]
        turn = rig.turn()
        assert (turn["kind"], turn["name"], turn["route"], turn["outcome"]) == ("command", "volume_set", "device", "ok")
        assert set(turn["timings_ms"]) == {"intent", "first_audio"}
        # follow-up: speech without the wake word is a new turn
        await rig.engine.speech_started()
        assert rig.engine.state is State.LISTENING
        await asyncio.wait_for(rig.engine.utterance("volume up"), 5.0)
        assert rig.platform.volume() == 35
        await asyncio.sleep(0.3)
        assert rig.engine.state is State.IDLE  # the window closed by itself
        assert rig.engine.utterance("volume up") is None  # no wake word, not in follow-up: ignored
        assert rig.platform.volume() == 35


async def test_listening_times_out_to_idle(tmp_path: Path) -> None:
    async with Rig(tmp_path, None, listen_timeout_s=0.1) as rig:
        await rig.engine.wake()
        await asyncio.sleep(0.25)
        assert rig.states() == ["listening", "idle"]


async def test_early_endpoint_only_for_complete_commands_while_listening(tmp_path: Path) -> None:
    async with Rig(tmp_path, None) as rig:
        assert rig.engine.partial("set a timer for two minutes") is False  # idle: not our utterance
        await rig.engine.wake()
        assert rig.engine.partial("set a timer for two minutes") is True
        assert rig.engine.partial("set the volume to twenty") is False
        assert rig.engine.partial("what's the weather in") is False
        assert [e["event"] for e in rig.events].count("endpoint_early") == 1


async def test_the_engine_says_when_speech_matters(tmp_path: Path) -> None:
    """The audio loop asks the engine, frame by frame, whether to endpoint speech: idle hears only the wake
    word; listening hears and transcribes; speech over an answer is heard (to barge in) but not transcribed
    until the barge-in has moved the engine back to listening."""
    async with Rig(tmp_path, None) as rig:
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


async def test_stop_and_repeat(tmp_path: Path) -> None:
    async with Rig(tmp_path, None) as rig:
        await rig.say("repeat that")
        assert rig.speaker.speech() == [NOTHING_TO_REPEAT]
        await rig.say("what time is it")
        answer = rig.speaker.speech()[-1]
        assert answer.startswith("It's ")
        await rig.say("say that again")
        assert rig.speaker.speech()[-1] == answer
        await rig.say("never mind")
        assert rig.speaker.log[-1] == ("stop", "") and rig.engine.state is State.IDLE


async def test_question_streams_the_gateway_answer_with_timings(tmp_path: Path, peer: PeerServer) -> None:
    async with Rig(tmp_path, peer.port) as rig:
        await rig.engine.wake()
        origin = rig.engine.clock()
        task = rig.engine.utterance("why is the sky blue", speech_end_s=origin, endpoint_s=origin + 0.2,
                                    transcript_s=origin + 0.3)
        await asyncio.wait_for(task, 5.0)
        assert rig.speaker.speech() == ["why is the sky blue"]
        (query,) = peer.servicer.queries
        assert query.text == "why is the sky blue" and not query.HasField("intent")
        turn = rig.turn()
        assert (turn["kind"], turn["route"], turn["answer"]) == ("query", "none:echo", "why is the sky blue")
        ms = turn["timings_ms"]
        assert ms["endpoint"] == pytest.approx(200, abs=1) and ms["transcript"] == pytest.approx(300, abs=1)
        assert ms["route"] <= ms["first_token"] <= ms["first_audio"]
        assert rig.states() == ["listening", "thinking", "speaking", "follow_up"]


async def test_weather_intent_gets_a_filler_before_the_answer(tmp_path: Path, peer: PeerServer) -> None:
    async with Rig(tmp_path, peer.port) as rig:
        await rig.say("What's the weather in Paris?")
        assert rig.speaker.speech() == ["Checking the weather…", "What's the weather in Paris?"]
        (query,) = peer.servicer.queries
        assert query.intent.name == "weather" and query.intent.slots["city"].text == "Paris"
        assert [e["event"] for e in rig.events].count("tool") == 1
        (transcript,) = [e for e in rig.events if e["event"] == "transcript"]
        assert (transcript["kind"], transcript["name"], transcript["slots"]) == ("intent", "weather", {"city": "Paris"})
        json.dumps(rig.events)  # the events file is JSON lines


@pytest.mark.parametrize("how", ["wake", "speech"])
async def test_barge_in_stops_playback_and_cancels_the_turn(tmp_path: Path, peer: PeerServer, how: str) -> None:
    async with Rig(tmp_path, peer.port) as rig:
        await rig.engine.wake()
        task = rig.engine.utterance("slow answer please")
        while rig.engine.state is not State.SPEAKING:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        turn_id = peer.servicer.queries[0].turn_id
        await (rig.engine.wake() if how == "wake" else rig.engine.speech_started())
        assert rig.engine.state is State.LISTENING
        assert task.cancelled() or task.done()
        await asyncio.wait_for(peer.servicer.cancel_seen.wait(), 2.0)
        assert peer.servicer.cancels == [turn_id]
        assert ("stop", "") in rig.speaker.log
        spoken = rig.speaker.speech()[0].split()
        assert 0 < len(spoken) < 20  # cut off, not the whole 150-word answer
        assert rig.turn()["outcome"] == "cancelled"
        barge = [e for e in rig.events if e["event"] == "barge_in"]
        assert barge and barge[0]["reason"] == ("wake word" if how == "wake" else "user speech")
        assert barge[0]["turn_id"] == turn_id


async def test_gateway_down_questions_fail_fast_and_commands_still_work(tmp_path: Path) -> None:
    async with Rig(tmp_path, None) as rig:
        await rig.engine.wake()
        await asyncio.wait_for(rig.engine.utterance("who won the world cup"), 1.0)
        assert rig.speaker.log[-2:] == [("earcon", "error"), ("speech", OFFLINE_SPOKEN)]
        assert rig.turn()["outcome"] == "offline"
        assert rig.engine.state is State.IDLE
        await rig.say("volume up")
        assert rig.speaker.speech()[-1] == "Volume 70 percent."


async def test_timer_fires_alarm_and_notice(tmp_path: Path) -> None:
    async with Rig(tmp_path, None) as rig:
        await rig.say("set a timer for one second")
        assert rig.speaker.speech()[-1] == "Timer set for 1 second."
        await asyncio.sleep(1.2)
        assert rig.speaker.log[-2:] == [("earcon", "alarm"), ("speech", "Your timer is done.")]
        assert any(e["event"] == "timer_fired" for e in rig.events)


async def test_no_client_configured_is_the_offline_message(tmp_path: Path) -> None:
    speaker = RecordingSpeaker()
    cfg = DeviceConfig(media_dir=str(tmp_path))
    engine = TurnEngine(cfg, grammar=commands.load_grammar(), actions=DeviceActions(LocalPlatform(tmp_path)),
                        speaker=speaker)
    await engine.wake()
    await asyncio.wait_for(engine.utterance("tell me a joke"), 1.0)
    assert speaker.speech() == [OFFLINE_SPOKEN]
    await engine.close()
