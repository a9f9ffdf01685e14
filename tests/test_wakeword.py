"""Wake word: the incremental front end, the detector on synthesized and real speech, bad heads, a tiny training run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.wakeword import Detection, WakeHead, WakeWordDetector, WakeWordError
from device.wakeword.eval import read_wav_16k, stream_scores, wav_files
from device.wakeword.frontend import FRAME_SAMPLES, FrontEnd, StreamingFeatures
from voxlens.config import Config

RATE = 16000


@pytest.fixture(scope="session")
def front() -> FrontEnd:
    return FrontEnd()


@pytest.fixture(scope="session")
def hibari():
    from device.wakeword.train.voices import HibariVoice

    return HibariVoice()


SHIPPED = Config().wakeword  # the device's own settings: tests here use them, not a test threshold


@pytest.fixture(scope="session")
def detector(front: FrontEnd) -> WakeWordDetector:
    return WakeWordDetector(list(SHIPPED.heads), threshold=SHIPPED.threshold, patience_frames=SHIPPED.patience_frames,
                            refractory_s=SHIPPED.refractory_s, front=front)


def _speech_wav(shared_eval: Path, n: int) -> np.ndarray:
    return np.concatenate([read_wav_16k(p) for p in wav_files(shared_eval / "speech")[:n]])


def test_incremental_features_equal_the_full_computation(front: FrontEnd, shared_eval: Path) -> None:
    rng = np.random.default_rng(1)
    speech = _speech_wav(shared_eval, 1)[: 3 * RATE]
    # real speech, digital silence (exercises the mel model's top_db clip), quiet noise, a loud burst
    audio = np.concatenate([
        speech, np.zeros(RATE // 2, np.int16), rng.normal(0, 30, RATE).astype(np.int16),
        np.clip(rng.normal(0, 20000, RATE // 3), -32768, 32767).astype(np.int16), speech[: RATE],
    ])
    audio = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES]
    stream = StreamingFeatures(front)
    windows = []
    for i in range(0, len(audio), FRAME_SAMPLES):
        stream.push(audio[i:i + FRAME_SAMPLES])
        windows.append(stream.window()[0])
    incremental = np.stack(windows)
    full = front.embeddings_full(audio)
    assert full.shape == (len(audio) // FRAME_SAMPLES, 96)
    np.testing.assert_allclose(incremental[:, -1], full, rtol=0, atol=1e-3 * np.abs(full).max())
    batched = front.embeddings_batch(audio[np.newaxis])[0]
    np.testing.assert_allclose(batched, full, rtol=0, atol=1e-3 * np.abs(full).max())
    # the window a head sees 16 frames in is exactly the last 16 full-computation embeddings
    np.testing.assert_allclose(incremental[40], full[25:41], rtol=0, atol=1e-3 * np.abs(full).max())


def test_the_shipped_wake_decision_wakes_at_the_phrase_and_only_there(detector: WakeWordDetector, shared_eval: Path,
                                                                     stt) -> None:
    """The shipped first stage and verifier, as the device runs them (WakeConfirmer, second look), on five
    renderings of the phrase after real speech. Piper joe never speaks a positive in training, so this is a
    voice the head has not heard say the phrase. One rendering in five may be missed (seeds 0-4 all wake today;
    whisper hears seed 7's as "A box lens.", 0.68 of the phrase's phonemes, under the 0.75 bar: a false reject
    like the few percent the bench measures on real speakers); a wake anywhere but at the phrase never is."""
    from device.app import load_verifiers
    from device.wakeword.confirm import WakeConfirmer
    from device.wakeword.train.voices import PiperVoice

    confirmer = WakeConfirmer(detector, load_verifiers(Config(), detector, stt), SHIPPED.second_look_s)
    assert set(confirmer.verifiers) == set(detector.names)   # the shipped verifier, not the first stage alone
    speech = _speech_wav(shared_eval, 2)[: 4 * RATE].astype(np.float32)
    voice, woke_at_phrase, story = PiperVoice(), 0, []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        phrase = voice.synthesize_text("Hey vox lens.", rng)
        phrase_i16 = (phrase / np.abs(phrase).max() * 0.3 * 32767)
        lead = np.zeros(int(2.5 * RATE), np.float32)
        audio = np.concatenate([speech, lead + rng.normal(0, 20, len(lead)), phrase_i16,
                                np.zeros(RATE, np.float32)]).astype(np.int16)
        phrase_end = len(speech) + len(lead) + len(phrase_i16)
        confirmer.reset()
        decisions = [d for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
                     for d in confirmer.process(audio[i:i + FRAME_SAMPLES])]
        story.append((seed, phrase_end / RATE, [(d.det.sample / RATE, d.accepted, d.verdict and d.verdict.text)
                                                for d in decisions]))
        woke = [d.det for d in decisions if d.accepted]
        assert all(abs(w.sample - phrase_end) <= 0.5 * RATE for w in woke), story[-1]   # never on the speech
        assert all(isinstance(w, Detection) and w.name == "hey-vox-lens" for w in woke)
        woke_at_phrase += len(woke) == 1
    assert woke_at_phrase >= 4, story


def test_streaming_detector_scores_equal_batched_scores(detector: WakeWordDetector, front: FrontEnd, shared_eval: Path) -> None:
    audio = _speech_wav(shared_eval, 1)[: 3 * RATE]
    audio = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES]
    detector.reset()
    live = []
    for i in range(0, len(audio), FRAME_SAMPLES):
        detector.process(audio[i:i + FRAME_SAMPLES])
        live.append(detector.last_scores["hey-vox-lens"])
    batched = stream_scores(front, WakeHead("hey-vox-lens"), audio)
    np.testing.assert_allclose(live, batched, atol=1e-3)


def test_patience_and_refractory(front: FrontEnd, tmp_path: Path) -> None:
    """A head that always scores 1: patience 3 fires on the 3rd frame, then refractory 1 s holds it for 1 s."""
    path = _constant_head(tmp_path / "always.onnx", 1.0)
    det = WakeWordDetector([path], threshold=SHIPPED.threshold, patience_frames=3, refractory_s=1.0, front=front)
    fired = [d.sample for i in range(30) for d in det.process(np.zeros(FRAME_SAMPLES, np.int16))]
    assert fired[0] == 3 * FRAME_SAMPLES
    assert all(b - a >= RATE for a, b in zip(fired, fired[1:])) and len(fired) == 3
    det.reset()
    assert det.samples_seen == 0


def test_bad_frames_are_rejected(front: FrontEnd, tmp_path: Path) -> None:
    detector = WakeWordDetector([_constant_head(tmp_path / "zero.onnx", 0.0)], front=front)
    with pytest.raises(WakeWordError, match="1280"):
        detector.process(np.zeros(1000, np.int16))
    with pytest.raises(WakeWordError, match="int16"):
        detector.process(np.zeros(FRAME_SAMPLES, np.float32))


def test_missing_head_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(WakeWordError, match=str(missing)):
        WakeHead(missing)


def test_corrupt_head_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07this is not an onnx model" * 10)
    with pytest.raises(WakeWordError, match=f"{bad}.*not a loadable ONNX model"):
        WakeHead(bad)


def test_wrong_shape_head_names_the_file_and_shape(tmp_path: Path) -> None:
    path = _constant_head(tmp_path / "shape.onnx", 0.5, frames=10)
    with pytest.raises(WakeWordError, match=rf"{path}.*\(1, 16, 96\)"):
        WakeHead(path)


def test_tiny_training_run_scores_positive_above_negative(tmp_path: Path, front: FrontEnd, hibari) -> None:
    from device.wakeword.train.train import TrainPlan, train_head

    plan = TrainPlan(
        phrase="hey vox lens", kokoro_positives=0, hibari_positives=24, kokoro_confusables=0, hibari_confusables=24,
        hibari_partials=6, hibari_sentences=24, piper_sentences=0, noise_streams=8, positive_copies=1,
        epochs=30, hidden=16, sources=("hibari",), deadline_s=120,
    )
    out = tmp_path / "tiny.onnx"
    report = train_head("hey vox lens", out, plan=plan)
    assert report.windows_positive > 0 and report.windows_negative > report.windows_positive
    head = WakeHead(out)
    rng = np.random.default_rng(123)
    def score(text: str) -> float:
        clip = hibari.synthesize(hibari.phonemize(text), rng)
        audio = np.concatenate([np.zeros(RATE, np.float32), clip * 10000, np.zeros(RATE // 2, np.float32)]).astype(np.int16)
        return float(stream_scores(front, head, audio).max())
    assert score("Hey vox lens.") > score("The weather is nice today.")


def _constant_head(path: Path, value: float, frames: int = 16) -> Path:
    """An ONNX 'head' returning a constant, for decision-rule and shape tests."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
         helper.make_node("Mul", ["m", "zero"], ["z"]),
         helper.make_node("Add", ["z", "value"], ["y"]),
         helper.make_node("Unsqueeze", ["y", "one"], ["score"])],
        "const",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, frames, 96])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         numpy_helper.from_array(np.array(value, np.float32), "value"),
         numpy_helper.from_array(np.array([1], np.int64), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_detection_carries_the_last_three_seconds_of_audio(front: FrontEnd, tmp_path: Path) -> None:
    det = WakeWordDetector([_constant_head(tmp_path / "always.onnx", 1.0)], threshold=0.5, refractory_s=100.0, front=front)
    first = det.process(np.full(FRAME_SAMPLES, 7, np.int16))
    assert len(first) == 1 and first[0].audio.shape == (3 * RATE,)
    assert (first[0].audio[:-FRAME_SAMPLES] == 0).all() and (first[0].audio[-FRAME_SAMPLES:] == 7).all()  # silence before
    audio = (np.arange(5 * RATE) % 30000).astype(np.int16)
    det.reset()
    det.process_audio(audio[: 4 * RATE])
    np.testing.assert_array_equal(det.recent_audio(), audio[RATE: 4 * RATE])


def test_shipped_defaults_do_not_wake_on_a_minute_of_real_speech(front: FrontEnd, shared_eval: Path, stt) -> None:
    """The device's own settings (first-stage threshold, STT verifier), not a test threshold: the first
    stage may fire on ordinary speech at its low threshold; the verifier must turn every fire down."""
    from device.wakeword.verifier import SttVerifier
    from voxlens.config import Config

    ww = Config().wakeword
    detector = WakeWordDetector(list(ww.heads), threshold=ww.threshold, patience_frames=ww.patience_frames,
                                refractory_s=ww.refractory_s, front=front)
    verifier = SttVerifier(stt, "hey vox lens", ww.verifier_min_similarity, ww.verifier_window_s)
    audio = _speech_wav(shared_eval, 26)
    assert len(audio) > 60 * RATE
    fires = detector.process_audio(audio)
    assert fires, "the first stage no longer fires on this speech: the verifier is not exercised; use more speech"
    verdicts = [verifier.verify(d.audio) for d in fires]
    assert not [v.text for v in verdicts if v.accepted], [(v.text, v.score) for v in verdicts]
