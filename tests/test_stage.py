"""The one stage shape (voxlens/stage.py) on real parts: Piper's TTS stream and the utterance stage (Silero +
Whisper) take pushed input, end it, and give their results by `async for`; the turn's token stops them."""
from __future__ import annotations

import re

import numpy as np
import pytest

from device.audio import SAMPLE_RATE_HZ, split_frames
from device.tts import SpeechChunk
from device.utterance import Utterance, UtteranceStage
from device.vad import Endpointer
from voxlens.cancel import CancelToken
from voxlens.config import VadConfig
from voxlens.stage import Stage


async def test_tts_stream_as_a_stage_speaks_the_pushed_text(tts) -> None:
    stage = tts.stage()
    assert isinstance(stage, Stage)
    text = "The timer is set. Enjoy your tea."
    for i in range(0, len(text), 5):
        stage.push(text[i:i + 5])
    stage.end_input()
    chunks = [c async for c in stage]
    assert all(isinstance(c, SpeechChunk) for c in chunks)
    assert [c.text for c in chunks] == ["The timer is set.", "Enjoy your tea."]
    assert all(len(c.audio) > 0.3 * tts.sample_rate_hz for c in chunks)   # each a spoken sentence
    with pytest.raises(RuntimeError, match="after end_input"):
        stage.push("more")


async def test_a_tripped_token_ends_the_tts_stage_and_aclose_stops_it_early(tts) -> None:
    token = CancelToken()
    stage = tts.stage(token)
    stage.push("This is the first sentence. This is the second sentence. ")   # input never ended
    got = []
    async for chunk in stage:
        got.append(chunk)
        token.cancel()   # barge-in after the first chunk
    assert len(got) == 1             # ended at the trip, although its input never did
    other = tts.stage()
    other.push("Never spoken at all.")
    await other.aclose()             # closed before anything was read: nothing comes out, nothing hangs
    assert [c async for c in other] == []


async def test_utterance_stage_as_a_stage_gives_the_spoken_utterance(stt, silero, speak_16k) -> None:
    silence = np.zeros(SAMPLE_RATE_HZ, np.int16)
    pcm = np.concatenate([silence, speak_16k("Set a timer for ten minutes."), silence])
    silero.reset()
    stage = UtteranceStage(Endpointer(VadConfig(), silero), stt).stage()
    assert isinstance(stage, Stage)
    for frame in split_frames(pcm):
        stage.push(frame)
    stage.end_input()
    found = [u async for u in stage]
    assert len(found) == 1 and isinstance(found[0], Utterance), [u.to_dict() for u in found]
    heard = set(re.findall(r"[a-z0-9]+", found[0].text.lower()))
    assert {"timer", "minutes"} <= heard and heard & {"ten", "10"}, found[0].text
    await stage.aclose()


def _with_silence(pcm: np.ndarray) -> np.ndarray:
    silence = np.zeros(SAMPLE_RATE_HZ, np.int16)
    return np.concatenate([silence, pcm, silence])


async def test_the_endpointer_as_a_stage_gives_start_and_end_and_ends_an_open_utterance(silero, speak_16k) -> None:
    speech = speak_16k("Set a timer for ten minutes.")
    silero.reset()
    stage = Endpointer(VadConfig(), silero).stage()
    assert isinstance(stage, Stage)
    for frame in split_frames(_with_silence(speech)):
        stage.push(frame)
    stage.end_input()
    events = [e async for e in stage]
    assert [e.kind for e in events] == ["speech_start", "speech_end"], events
    assert events[1].reason == "silence" and events[1].sample > events[0].sample
    # input that ends while the user speaks: end_input closes the utterance ("end_now"), nothing is lost
    silero.reset()
    open_ended = Endpointer(VadConfig(), silero).stage()
    for frame in split_frames(np.concatenate([np.zeros(SAMPLE_RATE_HZ, np.int16), speech])):
        open_ended.push(frame)
    open_ended.end_input()
    kinds = [(e.kind, e.reason) async for e in open_ended]
    assert kinds == [("speech_start", ""), ("speech_end", "end_now")]


async def test_streaming_stt_as_a_stage_gives_partials_then_the_final(stt, speak_16k) -> None:
    from device.stt import transcription_stage

    speech = speak_16k("What is the capital of Italy?")
    stage = transcription_stage(stt)
    for frame in split_frames(speech):
        stage.push((frame, True))
    for frame in split_frames(np.zeros(SAMPLE_RATE_HZ // 2, np.int16)):
        stage.push((frame, False))
    stage.end_input()
    transcripts = [t async for t in stage]
    final = transcripts[-1]
    assert not final.partial and all(t.partial for t in transcripts[:-1])
    assert {"capital", "italy"} <= set(re.findall(r"[a-z]+", final.text.lower())), final.text


async def test_the_wake_rule_as_a_stage_decides_as_process_does(device_models) -> None:
    """The shipped first stage and verifiers through the stage give the same decisions as `process`, frame for frame."""
    from device.wakeword.confirm import WakeConfirmer
    from device.wakeword.detector import FRAME_SAMPLES
    from device.wakeword.train.voices import PiperVoice

    phrase = PiperVoice().synthesize_text("Hey vox lens.", np.random.default_rng(0))
    audio = _with_silence((phrase / np.abs(phrase).max() * 0.3 * 32767).astype(np.int16))
    frames = [audio[i:i + FRAME_SAMPLES] for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    confirmer = WakeConfirmer(device_models.wake, device_models.verifiers, 0.4)

    def key(d):
        return d.det.name, d.det.sample, d.accepted

    confirmer.reset()
    by_process = [key(d) for f in frames for d in confirmer.process(f)]
    confirmer.reset()
    stage = confirmer.stage()
    assert isinstance(stage, Stage)
    for f in frames:
        stage.push(f)
    stage.end_input()
    by_stage = [key(d) async for d in stage]
    confirmer.reset()
    assert by_stage == by_process
    assert [accepted for _, _, accepted in by_stage].count(True) == 1, by_stage


async def test_endpointing_leaves_the_event_loop_free(silero, speak_16k) -> None:
    """While a frame is endpointed (Silero, Smart Turn) other work on the loop runs: a callback scheduled
    before the call has run by the time it returns (work done inline would not yield to it)."""
    import asyncio

    endpointer = Endpointer(VadConfig(), silero)
    silero.reset()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "during vad")
    await endpointer.aprocess(speak_16k("Mute.")[:1280])
    assert ran == ["during vad"]
