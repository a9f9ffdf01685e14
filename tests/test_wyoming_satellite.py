"""The device as a Home Assistant satellite, over real TCP with the `wyoming` package on both sides.

Home Assistant cannot run here, so a stand-in does what its Wyoming integration does with a
satellite (homeassistant/components/wyoming/assist_satellite.py): connect, Describe, RunSatellite,
ping; per RunPipeline read the audio to AudioStop, and answer with Transcribe, Transcript,
Synthesize and the answer's AudioStart/AudioChunk/AudioStop, then wait for Played. Its pipeline is
VoxLens's real STT (what it heard) and Piper (what it says). The device side is the real one: the
user's voice (hibari) in real time through the wake word, Silero, whisper, the grammar and the
engine; what it plays lands in a MemorySink. Waits are on events, never on time.
"""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.satellite import RunSatellite
from wyoming.snd import Played
from wyoming.tts import Synthesize

from device.audio import SAMPLE_RATE_HZ, MemorySink, resample
from device.client_events import (OFFLINE_SPOKEN, AnswerTextEvent, AudioEvent, GatewayError, GatewayUnavailable,
                                  RouteEvent, TurnEndEvent)
from device.commands import Understanding
from device.wyoming.satellite import NOT_HEARD_SPOKEN, TIER, PipelineLink, run_satellite, satellite_info
from device.wyoming.server import WyomingServer
from tests.test_e2e import Until, UserSource, _script, speaking, turns_ended
from voxlens.config import Config, DeviceConfig

session_loop = pytest.mark.asyncio(loop_scope="session")  # the session's models and fixtures live on its loop

HANG_GUARD_S = 120.0   # only a hang waits this long
WAKE = "Hey vox lens."
QUESTION = "What is on my shopping list?"
ANSWER = "Your shopping list has apples and bread."
COMMAND = "Set the volume to 20 percent."


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event"] == kind]


def _running(n: int) -> Until:
    """Home Assistant has said RunSatellite n times (a reconnection says it again)."""
    return Until(lambda events: len(_of(events, "satellite_running")) >= n)


def _audio_events(pcm: np.ndarray, rate: int, chunk: int = 1024) -> list[Event]:
    fmt = {"rate": rate, "width": 2, "channels": 1}
    return [AudioStart(**fmt).event(),
            *[AudioChunk(audio=pcm[i:i + chunk].tobytes(), **fmt).event() for i in range(0, len(pcm), chunk)],
            AudioStop().event()]


class HomeAssistant:
    """Home Assistant's side of a satellite: one connection at a time, reconnecting when it drops.

    drop_first: close the connection after the first pipeline's audio (the network gone mid-turn),
    then connect again and go on, as Home Assistant's integration does."""

    def __init__(self, stt, tts, *, drop_first: bool = False, answer: str = ANSWER) -> None:
        self.stt, self.tts, self.drop_first, self.answer = stt, tts, drop_first, answer
        self.heard: list[str] = []            # what each pipeline's STT transcribed
        self.info: Info | None = None
        self.played = asyncio.Event()
        self.pongs = 0

    async def serve(self, port: int) -> None:
        while True:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                await client.write_event(RunSatellite().event())
                await client.write_event(Ping(text="ha").event())
                if not await self._pipelines(client):
                    return

    async def _pipelines(self, client: AsyncTcpClient) -> bool:
        """Events until the satellite closes (False) or this side drops the link (True: connect again)."""
        audio: list[bytes] | None = None
        while (event := await client.read_event()) is not None:
            if Info.is_type(event.type):
                self.info = Info.from_event(event)
            elif Pong.is_type(event.type):
                self.pongs += 1
            elif Played.is_type(event.type):
                self.played.set()
            elif RunPipeline.is_type(event.type):
                run = RunPipeline.from_event(event)
                assert (run.start_stage, run.end_stage) == (PipelineStage.ASR, PipelineStage.TTS)
                audio = []
            elif AudioChunk.is_type(event.type) and audio is not None:
                chunk = AudioChunk.from_event(event)
                assert (chunk.rate, chunk.width, chunk.channels) == (SAMPLE_RATE_HZ, 2, 1)
                audio.append(chunk.audio)
            elif AudioStop.is_type(event.type) and audio is not None:
                if self.drop_first:
                    self.drop_first = False
                    return True
                await self._answer(client, np.frombuffer(b"".join(audio), np.int16))
                audio = None
        return False

    async def _answer(self, client: AsyncTcpClient, pcm: np.ndarray) -> None:
        await client.write_event(Transcribe(language="en").event())
        text = (await asyncio.to_thread(self.stt.transcribe, pcm)).text
        self.heard.append(text)
        await client.write_event(Transcript(text=text).event())
        await client.write_event(Synthesize(text=self.answer).event())
        speech = await asyncio.to_thread(self.tts.synthesize, self.answer)
        for event in _audio_events(speech, self.tts.sample_rate_hz):
            await client.write_event(event)


async def _satellite(tmp_path: Path, models, ha: HomeAssistant, script: list) -> tuple[list[dict], MemorySink, object]:
    """The device as a satellite on a free port, Home Assistant connected to it, the script spoken in real time."""
    cfg = Config(device=DeviceConfig(media_dir=str(tmp_path / "media"), follow_up_s=1.0, turn_timeout_s=60.0))
    events: list[dict] = []
    sink = MemorySink(realtime=True)
    serving: asyncio.Queue[str] = asyncio.Queue()

    def emit(event: dict) -> None:
        events.append(event)
        if event["event"] == "satellite_serving":
            serving.put_nowait(event["uri"])

    device = asyncio.create_task(run_satellite(cfg, models, UserSource(script, events), sink,
                                               uri="tcp://127.0.0.1:0", emit=emit, linger_s=30.0))
    async with asyncio.timeout(HANG_GUARD_S):
        uri = await serving.get()
    home = asyncio.create_task(ha.serve(int(uri.rsplit(":", 1)[1])))
    try:
        run = await device
    finally:
        async with asyncio.timeout(HANG_GUARD_S):   # the satellite closed: Home Assistant's loop ends
            await asyncio.gather(home, return_exceptions=True)
    assert home.exception() is None, home.exception()
    return events, sink, run


def _heard(stt, sink: MemorySink) -> str:
    assert sink.samples_written > 0, "the satellite played nothing"
    return stt.transcribe(resample(sink.audio, sink.rate_hz, SAMPLE_RATE_HZ)).text.lower()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


# ---------------------------------------------------------------- the whole device, real models

@session_loop
async def test_commands_stay_local_and_questions_go_to_home_assistant(tmp_path, device_models, user_speak, stt, tts):
    ha = HomeAssistant(stt, tts)
    script = _script(user_speak, 0.5, _running(1), WAKE, 0.3, COMMAND, turns_ended(1), 1.5,
                     WAKE, 0.3, QUESTION, turns_ended(2), 0.5)
    events, sink, run = await _satellite(tmp_path, device_models, ha, script)

    command, question = _of(events, "turn")
    assert command["kind"] == "command" and command["route"] == "device" and command["outcome"] == "ok", command
    assert run.platform.volume() == 20
    assert len(ha.heard) == 1, f"only the question reaches Home Assistant; it heard {ha.heard}"
    assert {"shopping", "list"} <= _words(ha.heard[0]), ha.heard   # the utterance's audio, not just words
    assert question["route"].startswith(f"{TIER}:") and question["outcome"] == "ok", question
    assert question["answer"] == ANSWER
    assert "first_audio" in question["timings_ms"], question["timings_ms"]
    (remote,) = _of(events, "pipeline_transcript")
    assert remote["text"] == ha.heard[0]
    heard = _heard(stt, sink)
    assert {"apples", "bread"} <= _words(heard), f"the answer's audio was not played: {heard!r}"
    async with asyncio.timeout(HANG_GUARD_S):
        await ha.played.wait()   # the satellite said Played once the answer had been played
    assert ha.info is not None and ha.info.satellite is not None and ha.info.satellite.has_vad
    assert ha.pongs >= 1


@session_loop
async def test_a_dropped_home_assistant_gives_the_offline_line_and_the_satellite_goes_on(
        tmp_path, device_models, user_speak, stt, tts):
    ha = HomeAssistant(stt, tts, drop_first=True)
    script = _script(user_speak, 0.5, _running(1), WAKE, 0.3, QUESTION, turns_ended(1), 1.5,
                     WAKE, 0.3, COMMAND, turns_ended(2), _running(2), 1.5,
                     WAKE, 0.3, QUESTION, turns_ended(3), 0.5)
    events, sink, run = await _satellite(tmp_path, device_models, ha, script)

    dropped, command, answered = _of(events, "turn")
    assert dropped["outcome"] == "offline" and dropped["answer"] == OFFLINE_SPOKEN, dropped
    assert command["route"] == "device" and command["outcome"] == "ok" and run.platform.volume() == 20
    assert answered["route"].startswith(f"{TIER}:") and answered["outcome"] == "ok", answered
    assert _of(events, "satellite_disconnected"), "the satellite did not notice the drop"
    heard = _words(_heard(stt, sink))
    assert "reach" in heard and {"apples", "bread"} <= heard, heard


@session_loop
async def test_the_wake_word_over_home_assistants_answer_stops_it_and_the_device_goes_on(
        tmp_path, device_models, user_speak, stt, tts):
    long_answer = ("Your shopping list has apples, bread, milk, eggs, butter, cheese, tomatoes, onions, rice, pasta, "
                   "coffee and tea, and you wanted to remember the batteries for the kitchen clock.")
    ha = HomeAssistant(stt, tts, answer=long_answer)
    script = _script(user_speak, 0.5, _running(1), WAKE, 0.3, QUESTION, speaking(), 0.5,
                     WAKE, 0.3, COMMAND, turns_ended(2), 0.5)
    events, sink, run = await _satellite(tmp_path, device_models, ha, script)

    interrupted, command = _of(events, "turn")
    assert interrupted["route"].startswith(f"{TIER}:") and interrupted["outcome"] == "cancelled", interrupted
    assert _of(events, "barge_in")
    assert command["route"] == "device" and command["outcome"] == "ok" and run.platform.volume() == 20
    assert len(ha.heard) == 1
    heard = _words(_heard(stt, sink))
    assert "batteries" not in heard, f"the interrupted answer played on to its end: {heard}"
    async with asyncio.timeout(HANG_GUARD_S):
        await ha.played.wait()   # an interrupted answer is over too, for Home Assistant


# ---------------------------------------------------------------- the link alone (no models)

class _Pipeline:
    """A scripted Home Assistant connection for the link's own rules."""

    def __init__(self, client: AsyncTcpClient, running: asyncio.Event) -> None:
        self.client, self._running = client, running

    async def run_satellite(self) -> None:
        """Say RunSatellite and wait until the satellite has taken it."""
        await self.client.write_event(RunSatellite().event())
        await asyncio.wait_for(self._running.wait(), HANG_GUARD_S)

    async def until_audio_stop(self) -> None:
        while (event := await asyncio.wait_for(self.client.read_event(), HANG_GUARD_S)) is not None:
            if AudioStop.is_type(event.type):
                return
        raise AssertionError("the satellite closed before its utterance ended")

    async def answer(self, words: str, tone: int) -> None:
        await self.client.write_event(Transcribe().event())
        await self.client.write_event(Transcript(text=words).event())
        await self.client.write_event(Synthesize(text=words).event())
        for event in _audio_events(np.full(2048, tone, np.int16), 22_050):
            await self.client.write_event(event)


async def _collect(link: PipelineLink, turn_id: str) -> list:
    return [e async for e in link.ask(Understanding(text="q"), turn_id=turn_id, audio=np.ones(4000, np.int16))]


@pytest.fixture
async def linked():
    running = asyncio.Event()

    def emit(event: dict) -> None:
        if event["event"] == "satellite_running":
            running.set()

    link = PipelineLink(DeviceConfig(turn_timeout_s=30.0), satellite_info([("hey_vox_lens", "hey vox lens")], "stt"),
                        emit=emit)
    async with WyomingServer("tcp://127.0.0.1:0", link.handler) as server:
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            yield link, _Pipeline(client, running)


@session_loop
async def test_describe_names_a_satellite_and_it_answers_ping(linked):
    _, ha = linked
    await ha.client.write_event(Describe().event())
    info = Info.from_event(await asyncio.wait_for(ha.client.read_event(), HANG_GUARD_S))
    assert info.satellite is not None and info.satellite.name == "voxlens-satellite"
    assert info.satellite.active_wake_words == ["hey_vox_lens"] and info.wake[0].models[0].phrase == "hey vox lens"
    await ha.client.write_event(Ping(text="x").event())
    assert Pong.from_event(await asyncio.wait_for(ha.client.read_event(), HANG_GUARD_S)).text == "x"


@session_loop
async def test_no_home_assistant_yet_fails_fast_with_the_offline_line(linked):
    link, _ = linked   # connected, but RunSatellite not said yet
    with pytest.raises(GatewayUnavailable, match="add it in Home Assistant") as err:
        await _collect(link, "t1")
    assert err.value.spoken == OFFLINE_SPOKEN


@session_loop
async def test_a_turn_yields_route_answer_text_audio_and_end(linked):
    link, ha = linked
    await ha.run_satellite()
    turn = asyncio.create_task(_collect(link, "t1"))
    await ha.until_audio_stop()
    await ha.answer("all good", 7)
    events = await asyncio.wait_for(turn, HANG_GUARD_S)
    assert isinstance(events[0], RouteEvent) and events[0].tier == TIER
    assert [e.text for e in events if isinstance(e, AnswerTextEvent)] == ["all good"]
    audio = [e for e in events if isinstance(e, AudioEvent)]
    assert sum(len(e.pcm) for e in audio) == 2048 and {e.rate_hz for e in audio} == {22_050}
    assert isinstance(events[-1], TurnEndEvent) and "pipeline.transcript" in events[-1].timings_ms


@session_loop
async def test_a_cancelled_pipelines_leftovers_are_not_played_in_the_next_turn(linked):
    link, ha = linked
    await ha.run_satellite()
    first = asyncio.create_task(_collect(link, "t1"))
    await ha.until_audio_stop()
    first.cancel()                      # barge-in: the engine leaves the turn and cancels it
    link.cancel("t1")
    await asyncio.gather(first, return_exceptions=True)
    second = asyncio.create_task(_collect(link, "t2"))
    await ha.until_audio_stop()
    await ha.answer("stale", 1)         # the first pipeline's answer arrives late...
    await ha.answer("fresh", 2)         # ...then the second's
    events = await asyncio.wait_for(second, HANG_GUARD_S)
    assert [e.text for e in events if isinstance(e, AnswerTextEvent)] == ["fresh"]
    assert {int(e.pcm[0]) for e in events if isinstance(e, AudioEvent)} == {2}


@session_loop
async def test_a_pipeline_error_is_a_short_spoken_line(linked):
    link, ha = linked
    await ha.run_satellite()
    turn = asyncio.create_task(_collect(link, "t1"))
    await ha.until_audio_stop()
    await ha.client.write_event(Transcribe().event())
    await ha.client.write_event(Error(text="No text recognized", code="stt-no-text-recognized").event())
    with pytest.raises(GatewayError, match="stt-no-text-recognized") as err:
        await asyncio.wait_for(turn, HANG_GUARD_S)
    assert err.value.spoken == NOT_HEARD_SPOKEN


# ---------------------------------------------------------------- the command

@session_loop
async def test_the_command_serves_a_satellite_until_sigterm(repo_root: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from device.audio import write_wav

    silence = tmp_path / "quiet.wav"
    write_wav(silence, np.zeros(SAMPLE_RATE_HZ * 300, np.int16), SAMPLE_RATE_HZ)   # outlasts the test
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "voxlens.cli", "wyoming", "satellite", "--uri", "tcp://127.0.0.1:0",
                             "--input", str(silence), "--output", str(tmp_path / "out.wav"), "--events", str(events)],
                            cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(proc.stdout.readline)   # printed once the models are loaded and the port open
        assert "serving on tcp://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        async with AsyncTcpClient("127.0.0.1", int(line.rsplit(":", 1)[1])) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await asyncio.wait_for(client.read_event(), HANG_GUARD_S))
        assert info.satellite is not None and info.satellite.name == "voxlens-satellite"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, HANG_GUARD_S) == 0, proc.stderr.read()
        assert '"satellite_connected"' in events.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_satellite_uri_is_a_usage_error(capsys) -> None:
    from voxlens.cli import main

    assert main(["wyoming", "satellite", "--uri", "http://0.0.0.0:10700"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err
