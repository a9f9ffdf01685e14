"""Speech to text with the real tiny.en model: Piper round trip, real recordings, streaming finals."""
from __future__ import annotations

import asyncio
import csv
import re
import time

import numpy as np
import pytest

from device.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ, read_wav, resample, split_frames
from device.stt import SpeechToText, StreamingTranscription

SENTENCES = (
    "Set a timer for ten minutes.",
    "The weather in London is cloudy today.",
    "Please take a photo of the garden.",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def overlap(ref: str, hyp: str) -> float:
    ref_w, hyp_w = words(ref), set(words(hyp))
    return sum(w in hyp_w for w in ref_w) / len(ref_w)


def test_say_then_transcribe_recovers_the_words(stt, speak_16k):
    pause = np.zeros(int(0.4 * SAMPLE_RATE_HZ), dtype=np.int16)
    audio = np.concatenate([x for s in SENTENCES for x in (speak_16k(s), pause)])
    t = stt.transcribe(audio)
    assert t.language == "en" and not t.partial
    assert overlap(" ".join(SENTENCES), t.text) >= 0.8, t.text
    assert t.timings.get("stt.transcribe").duration_ms > 0
    assert t.audio_s == pytest.approx(len(audio) / SAMPLE_RATE_HZ)


def test_real_recordings_transcribe_sensibly(stt, shared_eval):
    rows = list(csv.DictReader(open(shared_eval / "speech" / "manifest.tsv"), delimiter="\t"))
    picked = [r for r in rows if r["file"].startswith(("speechbrain", "arctic"))][:4]
    scores = [overlap(r["reference_transcript"], stt.transcribe(read_wav(shared_eval / "speech" / r["file"])).text)
              for r in picked]
    assert len(scores) == 4 and np.mean(scores) >= 0.7, scores


def test_silence_gives_no_words(stt):
    assert len(words(stt.transcribe(np.zeros(SAMPLE_RATE_HZ, dtype=np.int16)).text)) <= 2


async def test_streaming_final_reuses_a_partial_that_covers_the_speech(stt, speak_16k):
    speech = speak_16k(SENTENCES[0])
    stream = StreamingTranscription(stt, interval_ms=400)
    for frame in split_frames(speech):
        stream.push(frame, is_speech=True)
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    stream.push(silence, is_speech=False)          # speech paused: a pass over everything starts now
    deadline = time.monotonic() + 20
    while not (stream.partial() and stream.partial().audio_s * SAMPLE_RATE_HZ >= len(speech)):
        assert time.monotonic() < deadline, "no partial covered the speech"
        await asyncio.sleep(0.02)
    for _ in range(3):
        stream.push(silence, is_speech=False)      # the endpointer's silence window elapses
    final = await stream.finish()
    assert final.reused_partial and not final.partial
    assert overlap(SENTENCES[0], final.text) >= 0.8, final.text
    assert final.timings.get("stt.final") is not None
    with pytest.raises(RuntimeError, match="after finish"):
        stream.push(silence)


async def test_streaming_final_runs_a_pass_when_speech_changed(stt, speak_16k):
    speech = speak_16k(SENTENCES[2])
    async with StreamingTranscription(stt, background=False) as stream:
        for frame in split_frames(speech):
            stream.push(frame)                      # no partials, speech up to the end
        final = await stream.finish()
    assert not final.reused_partial and stream.passes == 1
    assert overlap(SENTENCES[2], final.text) >= 0.8, final.text


def test_short_window_matches_stock_window(stt, shared_eval):
    """The shortened encoder window gives the same words as the stock 30 s padding."""
    from voxlens.config import SttConfig

    audio = read_wav(shared_eval / "speech" / "speechbrain_harvard_spk1_snt2.wav")
    stock_cfg = SttConfig(encoder_window_s=0)
    assert stt.window_s(3.0) == 10 and stt.window_s(12.5) == 15
    stock = stt.with_config(stock_cfg)              # same loaded model, stock 30 s padding
    assert words(stt.transcribe(audio).text) == words(stock.transcribe(audio).text)


def test_bad_inputs_are_named(stt, tmp_path):
    from models.catalog import ModelError

    with pytest.raises(ModelError, match="no model.bin"):
        SpeechToText(str(tmp_path))
    with pytest.raises(ValueError, match="too long"):
        stt.transcribe(np.zeros(SAMPLE_RATE_HZ * 121, dtype=np.int16))


def test_short_commands_come_out_once(stt, tts):
    """Very short commands can make the short-window decoder loop ("Repeat that. Repeat that. ...");
    the loop check redoes those with the full window, so the words come out once."""
    from device.stt import looks_looped

    for text in ("Repeat that.", "Repeat that.", "Take a photo."):   # Piper varies each rendering slightly
        audio = resample(tts.synthesize(text), tts.sample_rate_hz, SAMPLE_RATE_HZ)
        heard = stt.transcribe(audio).text
        # tiny.en may mishear a word (it hears Piper's "volume" as "value"), but never repeats the phrase
        assert not looks_looped(heard) and 1 <= len(words(heard)) <= len(text.split()), heard


@pytest.mark.parametrize("text,looped", [
    ("Repeat that. Repeat that. Repeat that. Repeat", True),
    ("What time is it in Tokyo? What time is it in Tokyo?", True),
    ("no, no, no, no, no", True),
    ("Brightness up. Brightness up. Brightness", True),   # heard from Piper's "Brightness up." in `bench voice`
    ("five five", False), ("no no no", False), ("turn it up, turn it down", False), ("eight of spades four of clubs seven of hearts", False),
])
def test_loop_detector(text, looped):
    from device.stt import looks_looped

    assert looks_looped(text) is looped
