"""The pass that can become the final decodes with `[stt] final_beam_size`; the partials while speaking keep
`beam_size`. Real tiny.en on a real recording where greedy and beam 5 hear a name differently."""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

import numpy as np
import pytest

from device.audio import FRAME_SAMPLES, read_wav, split_frames
from device.stt import StreamingTranscription

pytestmark = pytest.mark.asyncio(loop_scope="session")
CLIP = "arctic_aew_a0001.wav"   # "Author of the danger trail, Philip Steels, etc."


def words(text: str) -> list[str]:
    """Case and punctuation aside (the last 80 ms frame is padded with silence, which can change a capital)."""
    return re.findall(r"[\w']+", text.lower())


@pytest.fixture(scope="module")
def clip(shared_eval) -> np.ndarray:
    """The recording as the device hears it: whole 80 ms frames (the last one padded with silence)."""
    return np.concatenate(split_frames(read_wav(shared_eval / "speech" / CLIP)))


@pytest.fixture(scope="module")
def beams(stt):
    """(greedy everywhere, greedy partials + beam-5 final) on the one loaded model."""
    return stt.with_config(replace(stt.cfg, beam_size=1, final_beam_size=1)), \
        stt.with_config(replace(stt.cfg, beam_size=1, final_beam_size=5))


async def test_the_clip_tells_the_beams_apart(beams, clip):
    greedy, _ = beams
    assert words(greedy.transcribe(clip).text) != words(greedy.with_config(replace(greedy.cfg, beam_size=5)).transcribe(clip).text)


async def test_the_final_pass_after_the_endpoint_uses_the_final_beam(beams, clip):
    _, final5 = beams
    beam5_text = final5.with_config(replace(final5.cfg, beam_size=5)).transcribe(clip).text
    async with StreamingTranscription(final5, background=False) as stream:
        for frame in split_frames(clip):
            stream.push(frame)
        final = await stream.finish()
    assert not final.reused_partial and words(final.text) == words(beam5_text)


async def test_a_greedy_partial_never_becomes_the_final_but_the_pass_after_a_pause_does(beams, clip):
    """Partials while speaking are greedy: settled() stays None; a silent frame starts a beam-5 pass over
    everything, which settled() then offers (the preemptive query) and finish() reuses without another pass."""
    _, final5 = beams
    beam5_text = final5.with_config(replace(final5.cfg, beam_size=5)).transcribe(clip).text
    stream = StreamingTranscription(final5, interval_ms=400)
    for frame in split_frames(clip):
        stream.push(frame, is_speech=True)
    deadline = time.monotonic() + 30
    while stream.partial() is None:              # a greedy pass while "speaking"
        assert time.monotonic() < deadline, "no partial"
        await asyncio.sleep(0.02)
    assert stream.settled() is None
    stream.push(np.zeros(FRAME_SAMPLES, dtype=np.int16), is_speech=False)   # the pause: the final's pass
    while stream.settled() is None:
        assert time.monotonic() < deadline, "no settled partial after the pause"
        await asyncio.sleep(0.02)
    assert words(stream.settled().text) == words(beam5_text)
    final = await stream.finish()
    assert final.reused_partial and words(final.text) == words(beam5_text)
