"""Wyoming services over real TCP with the `wyoming` package's own client: Describe/Info, real speech
transcribed, a sentence synthesised and streamed, a wake phrase detected, bad input refused with an
Error, and a client that drops mid-stream costing only its own session.

Models load once per session (conftest's stt, tts, silero); every wait is on an event from the
server (a read with a generous hang guard), never on time.
"""
from __future__ import annotations

import asyncio
import csv
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice
from wyoming.wake import Detect, Detection, NotDetected

from device.audio import SAMPLE_RATE_HZ, read_wav, resample
from device.wyoming.audio import AudioConverter, AudioRefused
from device.wyoming.server import UriError, WyomingServer, parse_uri
from device.wyoming.stt import StableWords, SttService
from device.wyoming.tts import TtsService
from device.wyoming.wake import WakeService
from voxlens import config as config_mod

session_loop = pytest.mark.asyncio(loop_scope="session")  # the servers live on the session's loop

HANG_GUARD_S = 120.0   # a read that waits longer than this is a hang, not a slow machine
RATE = SAMPLE_RATE_HZ


# ---------------------------------------------------------------- helpers

def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _heard(reference: str, hypothesis: str, share: float = 0.7) -> bool:
    """Most reference words are in the hypothesis (tiny.en may slip a word)."""
    ref, hyp = _words(reference), set(_words(hypothesis))
    return sum(w in hyp for w in ref) >= share * len(ref)


def _manifest(shared_eval: Path) -> dict[str, str]:
    with open(shared_eval / "speech" / "manifest.tsv", encoding="utf-8") as fh:
        return {row["file"]: row["reference_transcript"] for row in csv.DictReader(fh, delimiter="\t")}


def _audio_events(audio: bytes, rate: int = RATE, width: int = 2, channels: int = 1, chunk_bytes: int = 2048) -> list[Event]:
    frame = width * channels
    chunk_bytes -= chunk_bytes % frame
    chunks = [AudioChunk(rate=rate, width=width, channels=channels, audio=audio[i:i + chunk_bytes]).event()
              for i in range(0, len(audio), chunk_bytes)]
    return [AudioStart(rate=rate, width=width, channels=channels).event(), *chunks, AudioStop().event()]


async def _read_until(client: AsyncTcpClient, done: Callable[[Event], bool]) -> list[Event]:
    events: list[Event] = []
    while True:
        event = await asyncio.wait_for(client.read_event(), HANG_GUARD_S)
        assert event is not None, f"the server closed the connection; events so far: {[e.type for e in events]}"
        events.append(event)
        if done(event):
            return events


async def _exchange(port: int, events: list[Event], done: Callable[[Event], bool]) -> list[Event]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in events:
            await client.write_event(event)
        return await _read_until(client, done)


def _is(*kinds) -> Callable[[Event], bool]:
    return lambda e: any(k.is_type(e.type) for k in kinds)


async def _describe(port: int) -> Info:
    (event,) = await _exchange(port, [Describe().event()], _is(Info))
    return Info.from_event(event)


# ---------------------------------------------------------------- services, once per module

@pytest.fixture(scope="module")
async def stt_server(stt, silero):
    async with WyomingServer("tcp://127.0.0.1:0", SttService(stt, silero).handler) as server:
        yield server


@pytest.fixture(scope="module")
async def tts_server(tts):
    async with WyomingServer("tcp://127.0.0.1:0", TtsService(tts, "piper-joe-medium").handler) as server:
        yield server


@pytest.fixture(scope="module")
def wake_front():
    from device.wakeword.frontend import FrontEnd

    return FrontEnd()


@pytest.fixture(scope="module")
async def wake_server(stt, wake_front):
    """The shipped defaults ([wakeword]: hey-vox-lens at 0.1, the STT verifier), as the device runs them."""
    service = WakeService.load(config_mod.load(environ={}), stt=stt, front=wake_front)
    async with WyomingServer("tcp://127.0.0.1:0", service.handler) as server:
        yield server


@pytest.fixture(scope="module")
async def chatterbox_server(stt, wake_front, tmp_path_factory):
    """A first stage that fires on every frame, named for real recordings ("hey chatterbox"): only the STT
    verifier, on real voices, decides (tests/test_wakeword_verifier.py does the same on the device)."""
    from tests.test_wakeword import _constant_head

    head = _constant_head(tmp_path_factory.mktemp("heads") / "hey_chatterbox.onnx", 1.0)
    cfg = config_mod.load(environ={})
    cfg = config_mod.replace(cfg, wakeword=config_mod.replace(cfg.wakeword, heads=(str(head),), threshold=0.5))
    service = WakeService.load(cfg, stt=stt, front=wake_front)
    async with WyomingServer("tcp://127.0.0.1:0", service.handler) as server:
        yield server


@pytest.fixture(scope="module")
def user_says():
    """The demo's user voice (hibari, deterministic): the device hears the wake phrase in it (scripts/demo)."""
    from device.demo import user_voice

    return user_voice()


# ---------------------------------------------------------------- Describe / Info

@session_loop
async def test_each_service_describes_its_models_languages_version_and_attribution(stt_server, tts_server, wake_server):
    from voxlens import __version__

    asr = (await _describe(stt_server.port)).asr[0]
    assert asr.name == "voxlens-stt" and asr.version == __version__ and asr.attribution.name == "VoxLens"
    assert asr.supports_transcript_streaming
    assert [m.name for m in asr.models] == ["whisper-tiny.en"] and asr.models[0].languages == ["en"]
    assert "Whisper" in asr.models[0].attribution.name

    tts = (await _describe(tts_server.port)).tts[0]
    assert tts.name == "voxlens-tts" and tts.version == __version__ and tts.supports_synthesize_streaming
    assert [v.name for v in tts.voices] == ["piper-joe-medium"] and tts.voices[0].languages == ["en_US"]
    assert "Piper" in tts.voices[0].attribution.name

    wake = (await _describe(wake_server.port)).wake[0]
    assert wake.name == "voxlens-wake" and wake.version == __version__
    assert [(m.name, m.phrase) for m in wake.models] == [("hey-vox-lens", "hey vox lens")]
    assert "stt" in (wake.models[0].description or "")


# ---------------------------------------------------------------- speech to text

@session_loop
async def test_a_real_recording_is_transcribed_with_the_streaming_transcript_events(stt_server, shared_eval):
    name = "speechbrain_harvard_spk1_snt1.wav"
    audio = read_wav(shared_eval / "speech" / name)
    events = await _exchange(stt_server.port, [Transcribe(language="en").event(), *_audio_events(audio.tobytes())],
                             _is(TranscriptStop))
    kinds = [e.type for e in events]
    assert kinds[0] == "transcript-start" and kinds[-2:] == ["transcript", "transcript-stop"], kinds
    assert set(kinds[1:-2]) <= {"transcript-chunk"}, kinds
    final = Transcript.from_event(events[-2])
    assert final.language == "en"
    assert _heard(_manifest(shared_eval)[name], final.text), final.text
    chunks = "".join(TranscriptChunk.from_event(e).text for e in events if TranscriptChunk.is_type(e.type))
    # chunks are appended and join into the transcript, unless the last pass changed a word already sent
    # (then the transcript rules): either way they say what the transcript says
    assert chunks and _heard(chunks, final.text, 0.6), (chunks, final.text)


@session_loop
async def test_audio_in_another_rate_width_and_channel_count_is_converted(stt_server, shared_eval):
    """The recording as 44.1 kHz stereo 24-bit, as a USB microphone may send it."""
    name = "speechbrain_harvard_spk1_snt2.wav"
    audio = read_wav(shared_eval / "speech" / name).astype(np.float32) / 32768.0
    import soxr

    x = soxr.resample(audio, RATE, 44100)
    i24 = np.clip(np.round(x * (1 << 23)), -(1 << 23), (1 << 23) - 1).astype("<i4")
    stereo = np.repeat(i24, 2)
    packed = stereo.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    events = await _exchange(stt_server.port, _audio_events(packed, 44100, 3, 2, chunk_bytes=6 * 1000),
                             _is(TranscriptStop))
    final = Transcript.from_event(next(e for e in events if Transcript.is_type(e.type)))
    assert _heard(_manifest(shared_eval)[name], final.text), final.text


@session_loop
async def test_a_recording_sent_at_once_costs_one_pass_and_a_paced_stream_is_transcribed_while_it_arrives(
        stt, silero, shared_eval):
    """Background passes are for microphones: a burst would pay for a pass over its first half-second too."""
    from device.wyoming.stt import _Utterance
    from voxlens.timing import ManualClock

    clock = ManualClock()
    service = SttService(stt, silero, clock=clock)
    audio = read_wav(shared_eval / "speech" / "speechbrain_harvard_spk1_snt1.wav")
    chunks = [audio[i:i + 1024] for i in range(0, len(audio), 1024)]
    burst = _Utterance(service, None)
    for chunk in chunks:      # the clock stands still: the whole recording at once
        burst.feed(chunk)
    final = await burst.stream.finish()
    assert not burst.stream.background and burst.stream.passes == 1 and _heard("the child almost hurt", final.text)
    paced = _Utterance(service, None)
    for chunk in chunks:      # as a microphone delivers it
        clock.advance(len(chunk) / RATE)
        paced.feed(chunk)
    assert paced.stream.background
    assert _heard("the child almost hurt the small dog", (await paced.stream.finish()).text)


def test_stable_words_are_sent_once_two_passes_agree_and_join_into_the_final() -> None:
    words = StableWords()
    assert words.update("The") == ""
    assert words.update("The child al") == "The"               # "The" agreed; the last word is held back
    assert words.update("The child almost hurt") == " child"
    assert words.update("The child almost hurt the") == " almost hurt"
    assert words.finish("The child almost hurt the small dog.") == " the small dog."
    assert words.sent == "The child almost hurt the small dog."
    changed = StableWords()
    changed.update("The child")
    changed.update("The child almost")
    assert changed.finish("A child almost hurt.") == ""       # a word already sent changed: the transcript rules


# ---------------------------------------------------------------- text to speech

def _audio_of(events: list[Event]) -> tuple[AudioStart, np.ndarray]:
    start = AudioStart.from_event(next(e for e in events if AudioStart.is_type(e.type)))
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert all((c.rate, c.width, c.channels) == (start.rate, start.width, start.channels) for c in chunks)
    return start, np.frombuffer(b"".join(c.audio for c in chunks), np.int16)


@session_loop
async def test_a_streamed_text_is_spoken_from_its_first_sentence_on(tts_server, stt):
    """The first audio comes while the second sentence is still unwritten (the test waits for it before
    writing more), the whole answer ends with audio-stop then synthesize-stopped, and it says the words."""
    first, rest = "The kitchen light is off.", " The front door is locked, and the heating is set to twenty degrees."
    async with AsyncTcpClient("127.0.0.1", tts_server.port) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="piper-joe-medium")).event())
        for word in (first + " The").split(" "):
            await client.write_event(SynthesizeChunk(text=word + " ").event())
        early = await _read_until(client, _is(AudioChunk, Error))
        assert AudioChunk.is_type(early[-1].type), early[-1]
        for word in rest.split(" ")[2:]:
            await client.write_event(SynthesizeChunk(text=word + " ").event())
        await client.write_event(Synthesize(text=first + rest).event())   # Home Assistant's copy: ignored
        await client.write_event(SynthesizeStop().event())
        events = early + await _read_until(client, _is(SynthesizeStopped, Error))
    kinds = [e.type for e in events]
    assert kinds[0] == "audio-start" and kinds[-2:] == ["audio-stop", "synthesize-stopped"], kinds
    start, audio = _audio_of(events)
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    assert len(audio) > 3 * start.rate, len(audio) / start.rate   # two sentences: seconds of speech, said once
    heard = stt.transcribe(resample(audio, start.rate, RATE)).text
    assert _heard(first + rest, heard), heard


@session_loop
async def test_a_synthesize_request_is_answered_with_audio(tts_server):
    events = await _exchange(tts_server.port, [Synthesize(text="What time is it?").event()], _is(AudioStop, Error))
    start, audio = _audio_of(events)
    assert start.rate == 22050 and 0.5 * start.rate < len(audio) < 4 * start.rate
    assert np.abs(audio).max() > 1000   # speech, not silence


# ---------------------------------------------------------------- wake word

@session_loop
async def test_the_shipped_wake_phrase_is_detected_and_other_speech_is_not(wake_server, user_says, shared_eval):
    """The shipped head and verifier on the wake phrase in the demo's user voice, then on a real sentence."""
    phrase = np.concatenate([np.zeros(RATE // 2, np.int16), user_says("Hey vox lens."), np.zeros(RATE, np.int16)])
    async with AsyncTcpClient("127.0.0.1", wake_server.port) as client:
        for event in [Detect(names=["hey_vox_lens"]).event(), *_audio_events(phrase.tobytes())]:
            await client.write_event(event)
        events = await _read_until(client, _is(Detection, NotDetected, Error))
        assert Detection.is_type(events[-1].type), events[-1]
        detection = Detection.from_event(events[-1])
        assert detection.name == "hey-vox-lens"
        assert 0 < detection.timestamp <= len(phrase) * 1000 // RATE
        speech = read_wav(shared_eval / "speech" / "speechbrain_harvard_spk1_snt3.wav")
        for event in [Detect().event(), *_audio_events(speech.tobytes())]:
            await client.write_event(event)
        events = await _read_until(client, _is(Detection, NotDetected, Error))
        assert NotDetected.is_type(events[-1].type), events[-1]


@session_loop
async def test_a_real_speaker_saying_the_phrase_is_detected_and_the_verifier_turns_other_speech_down(
        chatterbox_server, shared_eval):
    from device.wakeword.eval import read_wav_16k, wav_files

    phrase = read_wav_16k(wav_files(shared_eval / "wakeword" / "hey_chatterbox")[0])
    clip = np.concatenate([np.zeros(RATE // 4, np.int16), phrase, np.zeros(RATE, np.int16)])
    events = await _exchange(chatterbox_server.port, [Detect(names=["hey chatterbox"]).event(),
                                                      *_audio_events(clip.tobytes())], _is(Detection, NotDetected, Error))
    assert Detection.is_type(events[-1].type) and Detection.from_event(events[-1]).name == "hey_chatterbox", events[-1]
    speech = read_wav(shared_eval / "speech" / "speechbrain_harvard_spk1_snt4.wav")   # the first stage fires on it too
    events = await _exchange(chatterbox_server.port, _audio_events(speech.tobytes()), _is(Detection, NotDetected, Error))
    assert NotDetected.is_type(events[-1].type), events[-1]


@session_loop
async def test_an_unknown_wake_word_is_refused_naming_the_loaded_ones(wake_server):
    (event,) = await _exchange(wake_server.port, [Detect(names=["ok nabu"]).event()], _is(Error))
    error = Error.from_event(event)
    assert error.code == "unknown-wake-word" and "'hey-vox-lens'" in error.text, error


# ---------------------------------------------------------------- bad input

@session_loop
async def test_unconvertible_audio_is_refused_with_what_is_expected_and_the_connection_goes_on(stt_server, shared_eval):
    speech = read_wav(shared_eval / "speech" / "speechbrain_harvard_spk1_snt1.wav")
    async with AsyncTcpClient("127.0.0.1", stt_server.port) as client:
        bad = [AudioStart(rate=16000, width=5, channels=1).event(),
               AudioChunk(rate=16000, width=5, channels=1, audio=b"\0" * 50).event(), AudioStop().event()]
        for event in bad:
            await client.write_event(event)
        (event,) = await _read_until(client, _is(Error))
        error = Error.from_event(event)
        assert error.code == "audio-format" and "width 5" in error.text and "expected" in error.text, error
        # the refused stream's chunk and stop were dropped quietly; the next request is served
        for event in _audio_events(speech.tobytes()):
            await client.write_event(event)
        events = await _read_until(client, _is(TranscriptStop, Error))
        assert [e.type for e in events][-2:] == ["transcript", "transcript-stop"], [e.type for e in events]


@session_loop
@pytest.mark.parametrize("events, code, says", [
    ([AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0" * 100).event()], "out-of-order", "audio-start"),
    ([Transcribe(language="de").event()], "unsupported-language", "'de'"),
    ([AudioStart(rate=16000, width=2, channels=1).event(),
      AudioChunk(rate=8000, width=2, channels=1, audio=b"\0\0" * 100).event()], "audio-format", "new audio-start"),
    ([AudioStart(rate=16000, width=2, channels=2).event(),
      AudioChunk(rate=16000, width=2, channels=2, audio=b"\0" * 7).event()], "audio-format", "whole sample frames"),
    ([Event(type="audio-start", data={"rate": 16000})], "malformed-event", "'audio-start'"),
])
async def test_bad_stt_requests_are_refused_by_name(stt_server, events, code, says):
    received = await _exchange(stt_server.port, events, _is(Error))
    error = Error.from_event(received[-1])
    assert error.code == code and says in error.text, error


@session_loop
async def test_audio_longer_than_the_limit_is_refused(stt, silero):
    async with WyomingServer("tcp://127.0.0.1:0", SttService(stt, silero, max_audio_s=1.0).handler) as server:
        silence = np.zeros(2 * RATE, np.int16).tobytes()
        events = await _exchange(server.port, _audio_events(silence), _is(Error, TranscriptStop))
    error = Error.from_event(events[-1])
    assert error.code == "audio-too-long" and "1 s" in error.text, error


@session_loop
@pytest.mark.parametrize("events, code", [
    ([Synthesize(text="x" * 6000).event()], "text-too-long"),
    ([SynthesizeStart().event(), *[SynthesizeChunk(text="word " * 400).event() for _ in range(3)]], "text-too-long"),
    ([Synthesize(text="hi", voice=SynthesizeVoice(name="amy")).event()], "unknown-voice"),
    ([SynthesizeChunk(text="hi").event()], "out-of-order"),
])
async def test_bad_tts_requests_are_refused_by_name(tts_server, events, code):
    async with AsyncTcpClient("127.0.0.1", tts_server.port) as client:
        for event in events:
            await client.write_event(event)
        received = await _read_until(client, _is(Error))
        assert Error.from_event(received[-1]).code == code, received[-1]
        # one Error for the request, and the connection still answers
        await client.write_event(Describe().event())
        rest = await _read_until(client, _is(Info, Error))
        assert Info.is_type(rest[-1].type), [e.type for e in rest]


def test_audio_formats_convert_to_16k_mono_int16() -> None:
    t = np.arange(48000) / 48000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1).ravel()
    for width, pack in ((1, lambda x: np.round(x * 127 + 128).astype(np.uint8).tobytes()),
                        (2, lambda x: np.round(x * 32767).astype("<i2").tobytes()),
                        (4, lambda x: np.round(x * 2**31 * 0.999).astype("<i4").tobytes())):
        conv = AudioConverter(48000, width, 2)
        out = np.concatenate([conv.convert(pack(stereo), 48000, width, 2), conv.flush()])
        assert abs(len(out) - RATE) <= 2, len(out)
        spectrum = np.abs(np.fft.rfft(out.astype(np.float32)))
        assert abs(np.argmax(spectrum) * RATE / len(out) - 440) < 3
        assert 0.4 < np.abs(out).max() / 32768 < 0.6
    with pytest.raises(AudioRefused, match="sample rate 50 Hz"):
        AudioConverter(50, 2, 1)
    with pytest.raises(AudioRefused, match="channel count 0"):
        AudioConverter(16000, 2, 0)


@session_loop
async def test_a_service_answers_on_a_unix_socket_too(tts, tmp_path):
    from wyoming.client import AsyncUnixClient

    path = tmp_path / "tts.sock"
    async with WyomingServer(f"unix://{path}", TtsService(tts, "piper-joe-medium").handler) as server:
        assert server.uri == f"unix://{path}"
        async with AsyncUnixClient(path) as client:
            await client.write_event(Synthesize(text="Hi.").event())
            events = await _read_until(client, _is(AudioStop, Error))
        assert len(_audio_of(events)[1]) > 0
    assert not path.exists()


def test_uris_are_tcp_or_unix_and_a_bad_one_names_the_forms() -> None:
    assert parse_uri("tcp://0.0.0.0:10300") == ("tcp", "0.0.0.0", 10300)
    assert parse_uri("unix:///tmp/stt.sock") == ("unix", "/tmp/stt.sock", 0)
    for bad in ("tcp://host", "http://host:1", "10300"):
        with pytest.raises(UriError, match="tcp://HOST:PORT"):
            parse_uri(bad)


# ---------------------------------------------------------------- a client that drops

@session_loop
async def test_a_client_dropping_mid_stream_ends_only_its_own_session(stt_server, tts_server, shared_eval):
    speech = read_wav(shared_eval / "speech" / "speechbrain_harvard_spk1_snt1.wav")
    stream = _audio_events(speech.tobytes())
    steady = AsyncTcpClient("127.0.0.1", stt_server.port)
    await steady.connect()
    try:
        await steady.write_event(stream[0])   # a session in progress, opened before the other client drops
        async with AsyncTcpClient("127.0.0.1", stt_server.port) as dropper:
            for event in stream[: len(stream) // 2]:
                await dropper.write_event(event)
            await _read_until(dropper, _is(TranscriptStart))
        # the dropper's connection is gone mid-stream; its session ends, the steady one stays
        await stt_server.sessions_at_most(1)
        for event in stream[1:]:
            await steady.write_event(event)
        events = await _read_until(steady, _is(TranscriptStop, Error))
        assert _heard("the child almost hurt the small dog", Transcript.from_event(events[-2]).text), events[-2]
    finally:
        await steady.disconnect()
    # the same over text to speech: a listener that hangs up after the first audio
    async with AsyncTcpClient("127.0.0.1", tts_server.port) as dropper:
        await dropper.write_event(Synthesize(text="This answer is long. " * 8).event())
        await _read_until(dropper, _is(AudioChunk))
    events = await _exchange(tts_server.port, [Synthesize(text="Still here.").event()], _is(AudioStop, Error))
    assert AudioStop.is_type(events[-1].type) and len(_audio_of(events)[1]) > 0
    await tts_server.sessions_at_most(0)
    await stt_server.sessions_at_most(0)


# ---------------------------------------------------------------- the command

@session_loop
async def test_the_command_serves_until_sigterm(repo_root: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "voxlens.cli", "wyoming", "tts", "--uri", "tcp://127.0.0.1:0"],
                            cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(proc.stdout.readline)   # printed once the voice is loaded and the port open
        assert "serving on tcp://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        info = await _describe(int(line.rsplit(":", 1)[1]))
        assert info.tts[0].voices[0].name == "piper-joe-medium"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, HANG_GUARD_S) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_head_is_named_when_the_wake_service_starts(capsys, tmp_path) -> None:
    from voxlens.cli import main

    missing = tmp_path / "nope.onnx"
    assert main(["wyoming", "wake", "--head", str(missing), "--uri", "tcp://127.0.0.1:0"]) == 1
    assert str(missing) in capsys.readouterr().err


def test_a_bad_uri_is_a_usage_error(capsys) -> None:
    from voxlens.cli import main

    assert main(["wyoming", "stt", "--uri", "http://0.0.0.0:10300"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err
