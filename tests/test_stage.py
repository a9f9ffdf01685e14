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
