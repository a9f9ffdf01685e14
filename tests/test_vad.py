"""Silero VAD endpointing on speech built from Piper output and known silence."""
from __future__ import annotations

import numpy as np
import pytest

from device.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ, split_frames
from device.vad import Endpointer, SileroVad
from voxlens.config import VadConfig

PHRASES = ("Turn the volume up a little.", "What is the weather in Paris tomorrow?")


def voiced_bounds(pcm: np.ndarray) -> tuple[int, int]:
    """Where the speech really is inside a Piper clip (it carries its own lead-in and tail)."""
    env = np.convolve(np.abs(pcm.astype(np.float32)), np.ones(160) / 160, mode="same")
    loud = np.flatnonzero(env > 0.02 * env.max())
    return int(loud[0]), int(loud[-1])


@pytest.fixture(scope="module")
def two_phrases(speak_16k):
    rng = np.random.default_rng(0)
    def silence(s: float) -> np.ndarray:
        return rng.normal(0, 30, int(s * SAMPLE_RATE_HZ)).astype(np.int16)
    parts, truth, pos = [], [], 0
    for i, text in enumerate(PHRASES):
        gap = silence(0.7 if i == 0 else 1.2)
        speech = speak_16k(text)
        a, b = voiced_bounds(speech)
        truth.append((pos + len(gap) + a, pos + len(gap) + b))
        parts += [gap, speech]
        pos += len(gap) + len(speech)
    parts.append(silence(1.0))
    return np.concatenate(parts), truth


def run(endpointer: Endpointer, pcm: np.ndarray):
    events = []
    for frame in split_frames(pcm):
        events += endpointer.process(frame)
    return events


def test_streaming_state_matches_whole_file(silero, speak_16k):
    """Frame-by-frame with carried state gives the probabilities faster-whisper's own batched run gives."""
    from faster_whisper.vad import SileroVADModel
    from models.catalog import resolve

    pcm = speak_16k(PHRASES[0])
    silero.reset()
    streamed = [p for f in split_frames(pcm) for p in silero.probs(f)]
    audio = pcm[: len(pcm) // 512 * 512].astype(np.float32) / 32768
    whole = np.ravel(SileroVADModel(str(resolve("silero-vad")))(audio))
    assert len(streamed) >= len(whole) and np.allclose(streamed[: len(whole)], whole, atol=2e-3)
    assert max(whole) > 0.9 and silero.prob(np.zeros(FRAME_SAMPLES, np.int16)) < 0.2


def test_finds_both_utterances_within_150ms(silero, two_phrases):
    pcm, truth = two_phrases
    silero.reset()
    events = run(Endpointer(VadConfig(silence_ms=400), silero), pcm)
    assert [e.kind for e in events] == ["speech_start", "speech_end"] * 2
    for (start, end), (t0, t1) in zip(zip(events[::2], events[1::2]), truth):
        assert abs(start.sample - t0) / 16 <= 150, (start.sample, t0)
        assert abs(end.sample - t1) / 16 <= 150, (end.sample, t1)
        # the decision waits for the silence window, not much longer
        assert 400 <= (end.detected_sample - end.sample) / 16 <= 400 + 80
        # pre-roll: the utterance audio starts before the detected start, so no syllable is cut
        assert len(end.audio) >= (end.sample - start.sample) + 0.2 * SAMPLE_RATE_HZ


def test_max_length_and_end_now(silero, two_phrases):
    pcm, truth = two_phrases
    silero.reset()
    capped = run(Endpointer(VadConfig(max_utterance_s=0.5), silero), pcm)
    ends = [e for e in capped if e.kind == "speech_end"]
    assert ends and ends[0].reason == "max_length"
    assert len(ends[0].audio) <= (0.5 + 0.32 + 0.16) * SAMPLE_RATE_HZ

    silero.reset()
    ep = Endpointer(VadConfig(), silero)
    frames = split_frames(pcm)
    cut = truth[0][0] // FRAME_SAMPLES + 8          # well inside the first phrase
    events = [e for f in frames[:cut] for e in ep.process(f)]
    assert ep.in_speech and [e.kind for e in events] == ["speech_start"]
    (end,) = ep.end_now()
    assert end.reason == "end_now" and not ep.in_speech
    assert ep.end_now() == []                        # nothing to end twice


def test_short_silence_after_complete_hint(silero, two_phrases):
    pcm, truth = two_phrases
    silero.reset()
    ep = Endpointer(VadConfig(silence_ms=700, short_silence_ms=200), silero)
    events = []
    for f in split_frames(pcm):
        if ep.in_speech:
            ep.hint_complete()
        events += ep.process(f)
    end = next(e for e in events if e.kind == "speech_end")
    assert (end.detected_sample - end.sample) / 16 < 400


@pytest.mark.parametrize("command_silence_ms", [64, 96, 160])
def test_end_at_pause_waits_for_command_silence(silero, two_phrases, command_silence_ms):
    """The words at a pause may end the turn (a whole command), but only once the pause has lasted
    command_silence_ms: a shorter gap is a breath inside the command. It ends at the last voice."""
    pcm, _ = two_phrases
    silero.reset()
    ep = Endpointer(VadConfig(silence_ms=700, command_silence_ms=command_silence_ms), silero)
    refused = 0
    for f in split_frames(pcm):
        assert not [e for e in ep.process(f) if e.kind == "speech_end"]
        if not ep.in_speech:
            continue
        silent_ms = (ep._pos - ep._last_voiced_end) / 16
        ended = ep.end_at_pause("command")
        if silent_ms < command_silence_ms:
            assert ended == []
            refused += silent_ms > 0
            continue
        (end,) = ended
        assert end.reason == "command" and (end.detected_sample - end.sample) / 16 >= command_silence_ms
        assert not ep.in_speech
        break
    else:
        pytest.fail("the pause never reached command_silence_ms")
    assert refused   # it was asked during the pause, before it had lasted long enough


def test_missing_model_is_named(tmp_path):
    from models.catalog import ModelError

    with pytest.raises(ModelError, match="nope.onnx"):
        SileroVad(tmp_path / "nope.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="corrupt.onnx"):
        SileroVad(bad)
