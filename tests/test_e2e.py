"""End to end: WAV in, WAV out. Real wake word, Silero, whisper, Piper, grammar, gRPC on loopback and the small LLM.

Each test speaks a script with Piper, plays it to the device in real time (as a
microphone would), and checks what the device did and what it said (whisper
transcribes the device's output).
"""
from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from device.app import DeviceModels, run_device
from device.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ, MemorySink, resample, split_frames
from voxlens.config import AudioConfig, Config, DeviceConfig, GatewayConfig, RouterConfig, ToolsConfig

pytestmark = pytest.mark.asyncio(loop_scope="session")  # same loop as the session-scoped model and gateway

WAKE = "Hey vox lens."


@pytest.fixture(scope="session")
async def gateway(small_backend, open_meteo):
    from gateway.server import start_gateway

    tools = ToolsConfig(geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
    gw = await start_gateway(GatewayConfig(host="127.0.0.1"), tools, RouterConfig(), port=0,
                             backends={"small": small_backend, "big": None})
    yield gw
    await gw.stop(0.5)


@pytest.fixture(scope="session")
async def long_answer_gateway(small_backend):
    """A gateway whose answers run long (same loaded model, higher token cap), so a barge-in lands mid-generation."""
    from gateway.backends.llama_cpp_backend import LlamaCppBackend
    from gateway.server import start_gateway
    from voxlens.config import BackendConfig

    await small_backend.load()
    backend = LlamaCppBackend(BackendConfig(model=str(small_backend.path), max_tokens=400, temperature=0.0),
                              llm=small_backend._llm)
    gw = await start_gateway(GatewayConfig(host="127.0.0.1"), ToolsConfig(), RouterConfig(), port=0,
                             backends={"small": backend, "big": None})
    yield gw
    await gw.stop(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Until:
    """Silence until the device has done something, as a user waits for the answer before speaking again.

    Why: a script with fixed gaps races the device on a busy machine (the next wake word lands before the
    answer is spoken); waiting on the device's own events keeps the test's meaning at any speed."""

    done: Callable[[list[dict]], bool]
    timeout_s: float = 120.0


def turns_ended(n: int) -> Until:
    return Until(lambda events: len(_of(events, "turn")) >= n)


def speaking() -> Until:
    return Until(lambda events: any(e["event"] == "state" and e["state"] == "speaking" for e in events))


def _script(speak, *parts: str | float | Until) -> list[np.ndarray | Until]:
    """Spoken lines (str), silences (float seconds) at 16 kHz, and waits on the device (Until)."""
    out: list[np.ndarray | Until] = []
    for p in parts:
        out.append(p if isinstance(p, Until) else
                   (speak(p) if isinstance(p, str) else np.zeros(int(p * SAMPLE_RATE_HZ), np.int16)).astype(np.int16))
    return out


class UserSource:
    """A microphone in real time: the script's audio, and silence frames for as long as an Until waits."""

    def __init__(self, parts: list[np.ndarray | Until], events: list[dict], block_samples: int = FRAME_SAMPLES) -> None:
        self.parts, self.events, self.block_samples = parts, events, block_samples

    async def __aiter__(self):
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        block_s = self.block_samples / SAMPLE_RATE_HZ
        silence = np.zeros(self.block_samples, np.int16)

        async def paced(frame: np.ndarray) -> np.ndarray:
            nonlocal sent
            sent += 1
            delay = start + sent * block_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            return frame

        for part in self.parts:
            if isinstance(part, Until):
                async with asyncio.timeout(part.timeout_s):  # only a hang reaches this
                    while not part.done(self.events):
                        yield await paced(silence)
                continue
            for frame in split_frames(part, self.block_samples):
                yield await paced(frame)


async def _run(tmp_path: Path, models: DeviceModels, script: list[np.ndarray | Until], gateway_port: int,
               block_ms: int = AudioConfig.block_ms, **device_kw):
    cfg = Config(device=DeviceConfig(gateway=f"127.0.0.1:{gateway_port}", media_dir=str(tmp_path / "media"),
                                     follow_up_s=1.0, **device_kw), audio=AudioConfig(block_ms=block_ms))
    events: list[dict] = []
    sink = MemorySink(realtime=True)

    def emit(event: dict) -> None:
        event["played_samples"] = sink.samples_written  # what had been played when this happened
        events.append(event)

    run = await run_device(cfg, models, UserSource(script, events, cfg.audio.block_samples), sink, emit=emit,
                           linger_s=20.0)
    return run, events, sink


def _heard(models: DeviceModels, sink: MemorySink) -> str:
    """What the device said, as whisper hears it."""
    assert sink.samples_written > 0, "the device played nothing"
    audio = resample(sink.audio, sink.rate_hz, SAMPLE_RATE_HZ)
    return models.stt.transcribe(audio).text.lower()


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event"] == kind]


async def test_question_goes_through_the_gateway_and_is_spoken(tmp_path, device_models, gateway, user_speak):
    audio = _script(user_speak, 0.5, WAKE, 0.3, "What is the capital of France?", 1.5)
    run, events, sink = await _run(tmp_path, device_models, audio, gateway.port)
    assert len(_of(events, "wake")) == 1
    (final,) = _of(events, "transcript_final")
    assert "capital" in final["text"].lower() and "france" in final["text"].lower()
    (route,) = _of(events, "route")
    assert route["tier"] == "small"
    (turn,) = _of(events, "turn")
    assert turn["kind"] == "query" and turn["outcome"] == "ok" and len(turn["answer"].split()) >= 3
    for stage in ("endpoint", "transcript", "intent", "route", "first_token", "first_audio"):
        assert stage in turn["timings_ms"], f"turn timings lack {stage}: {turn['timings_ms']}"
    heard = _heard(device_models, sink)
    answer_words = {w for w in re.findall(r"[a-z]+", turn["answer"].lower()) if len(w) > 3}
    assert answer_words & set(re.findall(r"[a-z]+", heard)), f"spoken output {heard!r} does not carry the answer {turn['answer']!r}"


@pytest.mark.parametrize("block_ms", [32, 80])
async def test_any_microphone_block_wakes_and_runs_a_command(tmp_path, device_models, gateway, user_speak, block_ms):
    """[audio] block_ms = 32 (Silero's window, the default) or 80 (the wake word's frame): the wake word gets its
    80 ms frames either way (a framer in the audio loop), the endpointer and STT take each block as it comes."""
    audio = _script(user_speak, 0.5, WAKE, 0.3, "Take a photo.", 1.5)
    run, events, sink = await _run(tmp_path, device_models, audio, gateway.port, block_ms=block_ms)
    assert len(_of(events, "wake")) == 1
    (turn,) = _of(events, "turn")
    assert (turn["kind"], turn["name"], turn["route"]) == ("command", "take_photo", "device"), turn
    assert list((tmp_path / "media").glob("*")), "no photo was taken"


async def test_timer_fires_with_alarm_and_spoken_notice(tmp_path, device_models, gateway, user_speak):
    audio = _script(user_speak, 0.5, WAKE, 0.3, "Set a timer for two seconds.", 1.0)
    run, events, sink = await _run(tmp_path, device_models, audio, gateway.port)
    (turn,) = _of(events, "turn")
    assert turn["kind"] == "command" and turn["route"] == "device"
    (fired,) = _of(events, "timer_fired")
    assert fired["duration_s"] == 2
    heard = _heard(device_models, sink)
    # "Timer set for 2 seconds." then the alarm and "Your timer is done."
    assert "set" in heard and "done" in heard, f"expected the confirmation and the notice in {heard!r}"


async def test_weather_intent_reaches_the_gateway_and_the_temperature_is_spoken(tmp_path, device_models, gateway,
                                                                               open_meteo, user_speak):
    before = len(open_meteo.requests)
    audio = _script(user_speak, 0.5, WAKE, 0.3, "What's the weather in Paris?", 1.5)
    run, events, sink = await _run(tmp_path, device_models, audio, gateway.port)
    (turn,) = _of(events, "turn")
    assert turn["kind"] == "intent" and turn["name"] == "weather"
    paths = [path for path, _ in open_meteo.requests[before:]]
    assert "/v1/search" in paths and "/v1/forecast" in paths
    assert "21" in turn["answer"], turn["answer"]
    heard = _heard(device_models, sink)
    assert "21" in heard or "twenty" in heard, f"the temperature is not in what was spoken: {heard!r}"


@pytest.mark.parametrize("on_speech, reason", [(False, "wake word"), (True, "user speech")])
async def test_barge_in_stops_the_answer_and_cancels_the_turn_at_the_gateway(tmp_path, device_models, user_speak,
                                                                              long_answer_gateway, on_speech, reason):
    gateway = long_answer_gateway
    cancelled = gateway.metrics.turns.labels(finish_reason="cancelled")
    before = cancelled._value.get()
    # the wake word starts as soon as the answer does, so it lands while the gateway is still generating
    audio = _script(user_speak, 0.5, WAKE, 0.3, "Tell me a long story about a lighthouse keeper.", speaking(),
                    WAKE, 2.5)
    run, events, sink = await _run(tmp_path, device_models, audio, gateway.port, barge_in_on_speech=on_speech)
    story = [{k: e.get(k) for k in ("event", "state", "reason", "text", "outcome", "played_samples")} for e in events
             if e["event"] in ("wake", "wake_rejected", "barge_in", "state", "turn")]
    assert len(_of(events, "wake")) == 2, story
    barge = _of(events, "barge_in")[0]
    assert barge["reason"] == reason and barge["turn_id"], story
    first_turn = _of(events, "turn")[0]
    assert first_turn["outcome"] == "cancelled", story
    async with asyncio.timeout(60):  # the Cancel travels asynchronously; the outer timeout only catches a hang
        while cancelled._value.get() <= before:
            await asyncio.sleep(0.02)
    # After the barge-in only the wake earcon may play: the answer stopped (within one 20 ms sink slice).
    from device.earcons import earcon

    after_s = (sink.samples_written - barge["played_samples"]) / sink.rate_hz
    assert after_s <= len(earcon("wake", sink.rate_hz)) / sink.rate_hz + 0.1, (f"{after_s:.2f} s played after the barge-in",
                                                                              story)


async def test_gateway_down_speaks_the_offline_message_and_commands_still_work(tmp_path, device_models, user_speak):
    audio = _script(user_speak, 0.5, WAKE, 0.3, "What is the capital of France?", turns_ended(1), 0.5,
                    WAKE, 0.3, "Volume up.", 1.5)
    run, events, sink = await _run(tmp_path, device_models, audio, _free_port())
    turns = _of(events, "turn")
    assert [t["outcome"] for t in turns] == ["offline", "ok"], turns
    assert turns[1]["kind"] == "command" and run.platform.volume() > 60
    heard = _heard(device_models, sink)
    assert "reach" in heard and ("volume" in heard or "value" in heard), heard  # tiny.en hears Piper's "volume" as "value"


async def test_a_pause_mid_command_does_not_end_the_turn(tmp_path, device_models, gateway, user_speak):
    """"Set a timer for … ten minutes": the grammar finds "set a timer for" incomplete and Smart Turn hears an
    unfinished turn, so the 600 ms pause (longer than the 400 ms silence rule without them) does not cut the user
    off: one turn, the whole command, run on the device."""
    audio = _script(user_speak, 0.5, WAKE, 0.3, "Set a timer for", 0.6, "ten minutes.", turns_ended(1), 0.3)
    run, events, sink = await _run(tmp_path, device_models, audio, gateway.port)
    story = [{k: e.get(k) for k in ("event", "text", "reason", "turn_probability")} for e in events
             if e["event"] in ("speech_end", "transcript_final", "endpoint_early", "turn")]
    finals = _of(events, "transcript_final")
    assert len(finals) == 1, story
    words = set(re.findall(r"[a-z0-9]+", finals[0]["text"].lower()))
    assert "timer" in words and words & {"ten", "10"} and "minutes" in words, story
    (turn,) = _of(events, "turn")
    assert turn["kind"] == "command" and turn["route"] == "device", story
    (heard,) = _of(events, "transcript")
    assert heard["name"] == "timer_set" and heard["slots"] == {"duration_s": 600}, heard
    assert any(e["event"] == "turn_held" for e in events) or not any(
        e["event"] == "speech_end" and e["reason"] == "smart_turn" for e in events), story
