"""Semantic end of turn on real recordings: Smart Turn ends a finished sentence on a short pause and
lets a sentence with a pause in the middle go on; without the model the device ends turns on silence.

The clips and cut points are from `voxlens bench endpoint`, chosen where Smart Turn is clear (P(complete)
far from the 0.7 threshold, bench figures in brackets): it is wrong on some other clips, and the bench
counts those; these tests pin the mechanism, not the model's accuracy.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from bench.endpoint import room_tone, speech_end
from device.audio import SAMPLE_RATE_HZ, read_wav, split_frames
from device.smart_turn import MODEL_NAME, features, from_config, load_smart_turn
from device.stt import SpeechToText
from device.utterance import UtteranceStage, utterances
from device.vad import Endpointer, VadEvent
from voxlens.config import VadConfig

MS = SAMPLE_RATE_HZ // 1000
COMPLETE = ("arctic_aew_a0001.wav", "speechbrain_harvard_spk2_snt3.wav")          # [0.97, 0.99]
CUT = (("arctic_axb_a0004.wav", 20928), ("speechbrain_harvard_spk1_snt1.wav", 21390))  # [0.03, 0.02] at the pause


def in_room(clip: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """The clip between 0.5 s and 1.5 s of its own room tone; returns it and the lead length."""
    rng = np.random.default_rng(seed)
    lead = room_tone(clip, SAMPLE_RATE_HZ // 2, rng)
    return np.concatenate([lead, clip, room_tone(clip, 3 * SAMPLE_RATE_HZ // 2, rng)]), len(lead)


def spliced(clip: np.ndarray, cut: int, pause_ms: int = 600) -> tuple[np.ndarray, tuple[int, int]]:
    """The clip with `pause_ms` of room tone inserted at a word boundary; returns it and the pause."""
    rng = np.random.default_rng(5)
    gap = room_tone(clip, pause_ms * MS, rng)
    pcm, lead = in_room(np.concatenate([clip[:cut], gap, clip[cut:]]), 6)
    return pcm, (lead + cut, lead + cut + len(gap))


def ends(ep: Endpointer, pcm: np.ndarray) -> list[VadEvent]:
    return [e for f in split_frames(pcm) for e in ep.process(f) if e.kind == "speech_end"]


@pytest.fixture(scope="module")
def eval_speech(shared_eval):
    return lambda name: read_wav(shared_eval / "speech" / name)


def test_features_match_the_reference_contract():
    """[1, 80, 800] log-mel of the last 8 s, zero-padded in front: a short clip and its padded copy agree."""
    tone = (np.sin(np.arange(SAMPLE_RATE_HZ) * 2 * np.pi * 220 / SAMPLE_RATE_HZ) * 8000).astype(np.int16)
    x = features(tone)
    assert x.shape == (1, 80, 800) and x.dtype == np.float32
    np.testing.assert_allclose(x, features(np.concatenate([np.zeros(9 * SAMPLE_RATE_HZ, np.int16), tone])))


@pytest.mark.parametrize("name", COMPLETE)
def test_finished_sentence_ends_on_the_short_pause(name, eval_speech, silero, smart_turn):
    clip = eval_speech(name)
    pcm, lead = in_room(clip, 1)
    silero.reset()
    ep = Endpointer(VadConfig(), silero, smart_turn)
    found = ends(ep, pcm)
    assert [e.reason for e in found] == ["smart_turn"], [(e.reason, e.turn_probability) for e in found]
    end = found[0]
    assert end.turn_probability >= 0.7
    # Ended on the short pause, well before the 400 ms silence the device waits for without Smart Turn.
    assert (end.detected_sample - end.sample) / MS < VadConfig().silence_ms
    assert end.detected_sample > lead + speech_end(clip)
    assert [v.timings.get("turn.infer") is not None for v in ep.verdicts] == [True]


@pytest.mark.parametrize("name,cut", CUT)
def test_pause_mid_sentence_does_not_end_the_turn(name, cut, eval_speech, silero, smart_turn):
    pcm, pause = spliced(eval_speech(name), cut)
    silero.reset()
    without = ends(Endpointer(VadConfig(smart_turn=False), silero), pcm)
    assert without and without[0].detected_sample < pause[1], "silence alone cuts this one at the pause"
    silero.reset()
    ep = Endpointer(VadConfig(), silero, smart_turn)
    found = ends(ep, pcm)
    assert len(found) == 1 and found[0].detected_sample > pause[1], [(e.reason, e.turn_probability) for e in found]
    assert ep.verdicts and not ep.verdicts[0].complete   # asked at the pause, and it said "not yet"


async def test_device_stage_asks_off_the_loop(eval_speech, silero, smart_turn, stt: SpeechToText):
    """The device's path (UtteranceStage.feed -> a worker thread): one utterance, the whole sentence heard."""
    pcm, _ = spliced(eval_speech(CUT[1][0]), CUT[1][1])
    silero.reset()
    stage = UtteranceStage(Endpointer(VadConfig(), silero, smart_turn), stt)

    async def frames():
        for f in split_frames(pcm):
            yield f

    found = [u async for u in utterances(frames(), stage)]
    assert len(found) == 1 and "dog" in found[0].text.lower(), [u.to_dict() for u in found]


def test_missing_model_warns_and_falls_back_to_silence(tmp_path, monkeypatch, caplog, eval_speech, silero):
    import models.catalog as cat

    monkeypatch.setattr(cat, "_configured_cache_dir", tmp_path)   # an empty cache: the file was never prepared
    with caplog.at_level(logging.WARNING, logger="device.smart_turn"):
        turn = from_config(VadConfig())
    assert turn is None
    msg = caplog.text
    assert "smart-turn-v3.2-cpu.onnx" in msg and f"voxlens models prepare {MODEL_NAME}" in msg, msg
    pcm, _ = in_room(eval_speech(COMPLETE[0]), 1)
    silero.reset()
    assert [e.reason for e in ends(Endpointer(VadConfig(), silero, turn), pcm)] == ["silence"]


def test_corrupt_model_warns(tmp_path, monkeypatch, caplog):
    import models.catalog as cat

    spec = cat.entry(MODEL_NAME).files[0]
    folder = tmp_path / "models" / MODEL_NAME
    folder.mkdir(parents=True)
    (folder / spec.name).write_bytes(b"\0" * spec.size)     # right size, not a model
    monkeypatch.setattr(cat, "_configured_cache_dir", tmp_path)
    with caplog.at_level(logging.WARNING, logger="device.smart_turn"):
        assert load_smart_turn() is None
    assert str(folder / spec.name) in caplog.text and f"voxlens models prepare {MODEL_NAME}" in caplog.text


def test_disabled_by_config_loads_nothing():
    assert from_config(replace(VadConfig(), smart_turn=False)) is None


class _Broken:
    def predict(self, audio: np.ndarray):
        raise RuntimeError("onnxruntime: bad allocation")


async def test_model_failing_at_run_time_falls_back_to_silence(eval_speech, silero, caplog):
    pcm, _ = in_room(eval_speech(COMPLETE[0]), 1)
    silero.reset()
    ep = Endpointer(VadConfig(), silero, _Broken())
    with caplog.at_level(logging.WARNING, logger="device.vad"):
        found = [e for f in split_frames(pcm) for e in await ep.aprocess(f) if e.kind == "speech_end"]
    assert [e.reason for e in found] == ["silence"] and ep.turn is None
    assert "Smart Turn failed" in caplog.text and "bad allocation" in caplog.text
