"""Preemptive generation through the real engine, the real gRPC client and the real gateway on loopback (instant
tiers that answer with the question's own words): a question leaves on the settled partial; a final with other
words cancels it on the wire and sends the final; a final with the same words adopts its answer; nothing of a
preemptive turn is ever spoken before the final matches. Audio out is the real VoiceOutput (Piper) into a
MemorySink, read back by Whisper tiny.en."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Self

import numpy as np
import pytest
import pytest_asyncio

from device import commands
from device.actions import DeviceActions
from device.audio import SAMPLE_RATE_HZ, MemorySink, resample
from device.client import AssistantClient
from device.engine import State, TurnEngine
from device.platform import LocalPlatform
from device.preemptive import same_words
from device.voice_output import VoiceOutput
from tests.gateway_support import LiveGateway, until
from voxlens.config import DeviceConfig
from voxlens.retry import Backoff

pytestmark = pytest.mark.asyncio(loop_scope="function")
NEVER_S = 3600.0   # a model still writing its first word: the turn is in flight when the final comes


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest_asyncio.fixture(loop_scope="function")
async def gw(open_meteo):
    gateway = LiveGateway(open_meteo, token="", echo=True)   # each tier answers with the question's words
    await gateway.start()
    yield gateway
    await gateway.stop()


class Device:
    """The engine with preemption on, wired to the live gateway; what it said is read back from the sink."""

    def __init__(self, tmp_path: Path, tts, stt, port: int) -> None:
        self.cfg = DeviceConfig(gateway=f"127.0.0.1:{port}", media_dir=str(tmp_path / "media"))
        self.events: list[dict] = []
        self.sink = MemorySink()
        self.tts, self.stt = tts, stt
        self.platform = LocalPlatform(self.cfg.media_dir)
        self.client = AssistantClient(self.cfg, status=self.platform, backoff=Backoff(initial_s=0.05, max_s=0.2))
        self.engine = TurnEngine(self.cfg, grammar=commands.load_grammar(), speaker=VoiceOutput(tts, self.sink),
                                 actions=DeviceActions(self.platform, self.cfg.zone), client=self.client,
                                 emit=self.events.append, preemptive=True)

    async def __aenter__(self) -> Self:
        await self.client.start()
        assert await self.client.wait_connected(10.0)
        await self.engine.wake()
        await self.engine.speech_started()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.engine.close()
        self.platform.close()
        await self.client.close()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]

    def speech_samples(self) -> int:
        """Samples played other than the wake earcon (the first chunk, played at wake())."""
        return sum(len(c) for c in self.sink.chunks[1:])

    def heard(self) -> list[str]:
        audio = resample(np.concatenate(self.sink.chunks[1:]), self.tts.sample_rate_hz, SAMPLE_RATE_HZ)
        return words(self.stt.transcribe(audio).text)

    async def final(self, text: str) -> dict:
        task = self.engine.utterance(text)
        assert task is not None
        await asyncio.wait_for(task, 30.0)
        return self.of("turn")[-1]


def asked(gw: LiveGateway) -> list[str]:
    """The question of each request the gateway's model received (the last paragraph of the last user message)."""
    return [str(next(m["content"] for m in reversed(r.messages) if m["role"] == "user")).split("\n\n")[-1]
            for r in gw.small.requests]


async def test_a_final_that_differs_cancels_the_preemptive_turn_on_the_wire_and_sends_the_final(
        tmp_path, tts, stt, gw):
    gw.small.word_s = NEVER_S
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        await dev.engine.preempt("What is the capital of")             # the user paused mid-question
        await until(lambda: len(gw.small.requests) == 1, 10.0)   # the gateway's model is on it
        gw.small.word_s = 0.0
        turn = await dev.final("What is the capital of Italy?")  # ... and went on
        await until(lambda: gw.stopped == 1, 10.0)              # the first model stream was stopped mid-answer
        assert gw.count("voxlens_turns_total", finish_reason="cancelled") == 1
        assert asked(gw) == ["What is the capital of", "What is the capital of Italy?"]
        wasted = dev.of("preemptive_wasted")
        assert [(w["text"], w["final"], w["reason"]) for w in wasted] == [
            ("What is the capital of", "What is the capital of Italy?", "final differs")]
        assert not dev.of("preemptive_used")
        assert (turn["outcome"], words(turn["answer"])) == ("ok", words("What is the capital of Italy?"))
        assert "italy" in dev.heard()


async def test_a_final_with_the_same_words_sends_nothing_more_and_speaks_the_preemptive_answer(
        tmp_path, tts, stt, gw):
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        await dev.engine.preempt("What is the capital of Italy")
        await until(lambda: len(gw.small.requests) == 1, 10.0)
        turn = await dev.final("What is the capital of Italy?")    # the final: same words, its own punctuation
        assert asked(gw) == ["What is the capital of Italy"]        # one query on the wire, no second one
        assert gw.count("voxlens_turns_total", finish_reason="cancelled") == 0 and gw.stopped == 0
        used = dev.of("preemptive_used")
        assert len(used) == 1 and used[0]["turn_id"] == dev.of("preemptive")[0]["turn_id"]
        assert (turn["outcome"], words(turn["answer"])) == ("ok", words("What is the capital of Italy"))
        assert "preempt" in turn["timings_ms"]
        assert "italy" in dev.heard()


async def test_an_answer_that_arrives_before_the_endpoint_waits_for_the_final(tmp_path, tts, stt, gw):
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        await dev.engine.preempt("How many legs does a spider have")
        pre = dev.engine.preemptive_turn
        assert pre is not None
        await until(lambda: pre.ended, 10.0)               # the whole answer is on the device ...
        await dev.engine.speaker.earcon("wake")            # (anything already queued to the sink has played)
        assert dev.engine.state is State.LISTENING
        assert dev.speech_samples() == len(dev.sink.chunks[-1])   # ... and nothing of it was spoken
        turn = await dev.final("How many legs does a spider have?")
        assert words(turn["answer"]) == words("How many legs does a spider have")
        assert "spider" in dev.heard()


@pytest.mark.parametrize("partial", ["What is the weather on Mars", "x" * 3000])   # answered / refused (too long)
async def test_an_answered_or_refused_preemptive_turn_never_speaks_for_another_final(tmp_path, tts, stt, gw, partial):
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        await dev.engine.preempt(partial)
        pre = dev.engine.preemptive_turn
        assert pre is not None
        await until(lambda: pre.ended, 10.0)
        turn = await dev.final("Who painted the Mona Lisa?")
        assert (turn["outcome"], words(turn["answer"])) == ("ok", words("Who painted the Mona Lisa"))
        heard = dev.heard()
        assert "lisa" in heard and "mars" not in heard, heard
        assert [w["reason"] for w in dev.of("preemptive_wasted")] == ["final differs"]


async def test_no_preemptive_turn_for_a_device_command(tmp_path, tts, stt, gw):
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        await dev.engine.preempt("Set the volume to 25%")
        assert dev.engine.preemptive_turn is None
        await dev.final("Set the volume to 25%.")
        assert dev.platform.volume() == 25 and gw.small.requests == [] and not dev.of("preemptive")


async def test_words_compare_without_case_or_punctuation():
    assert same_words("What's the time?", "what's the time")
    assert not same_words("What is the capital of", "What is the capital of Italy?")


async def test_an_answered_preemptive_turn_the_final_replaces_is_not_the_next_turns_history(tmp_path, tts, stt, gw):
    """The gateway had answered (and remembered) the preemptive question; the late Cancel makes it forget it, so the
    final's prompt holds no exchange the user never had. A confirmed one stays."""
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        await dev.engine.preempt("What is the weather on Mars")
        pre = dev.engine.preemptive_turn
        assert pre is not None
        await until(lambda: pre.ended, 10.0)
        await dev.final("Who painted the Mona Lisa?")
        prompt = " ".join(str(m["content"]) for m in gw.small.requests[-1].messages)
        assert "Mona Lisa" in prompt and "Mars" not in prompt
        await dev.engine.speech_started()                  # the follow-up window: another question
        await dev.engine.preempt("How tall is the Eiffel tower")
        await until(lambda: len(gw.small.requests) == 3, 10.0)
        await dev.final("How tall is the Eiffel tower?")
        prompt = " ".join(str(m["content"]) for m in gw.small.requests[-1].messages)
        assert "Mona Lisa" in prompt and "Mars" not in prompt


async def test_a_barge_in_over_an_adopted_answer_keeps_it_in_the_history(tmp_path, tts, stt, gw):
    """The user heard (part of) the adopted answer and cut it: as for any turn whose TurnEnd has come, nothing is
    cancelled on the wire and the exchange stays the next question's history."""
    async with Device(tmp_path, tts, stt, gw.port) as dev:
        dev.sink.realtime = True                       # playback takes as long as the audio: time to barge in
        await dev.engine.preempt("Who painted the Mona Lisa")
        pre = dev.engine.preemptive_turn
        assert pre is not None
        await until(lambda: pre.ended, 10.0)
        task = dev.engine.utterance("Who painted the Mona Lisa?")
        assert task is not None
        await until(lambda: dev.engine.state is State.SPEAKING and dev.sink.samples_written > 0, 20.0)
        await dev.engine.barge_in("user speech")
        await dev.engine.speech_started()
        await dev.final("How tall is the Eiffel tower?")
        prompt = " ".join(str(m["content"]) for m in gw.small.requests[-1].messages)
        assert "Mona Lisa" in prompt and gw.count("voxlens_turns_total", finish_reason="cancelled") == 0
