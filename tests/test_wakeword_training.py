"""Training with real negatives: bad files, speaker folds, the feature cache, hard-negative mining, the verifier head."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from device.wakeword import WakeHead
from device.wakeword.corpus import fold_of, read_negative_files, speaker_key
from device.wakeword.features_cache import EmbeddingCache, windows_of
from device.wakeword.frontend import FrontEnd

RATE = 16000


@pytest.fixture(scope="module")
def front() -> FrontEnd:
    return FrontEnd()


@pytest.fixture
def feature_cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "features"
    monkeypatch.setenv("VOXLENS_WAKEWORD_CACHE", str(folder))
    return folder


def test_negative_folders_convert_what_they_can_and_skip_the_rest(tmp_path: Path, shared_eval: Path) -> None:
    real = next(iter(sorted((shared_eval / "negatives" / "librispeech").glob("*.wav"))))
    shutil.copy(real, tmp_path / "ok_16k.wav")
    rng = np.random.default_rng(0)
    stereo_8k = (rng.normal(0, 3000, (8000, 2))).astype(np.int16)
    import scipy.io.wavfile
    scipy.io.wavfile.write(tmp_path / "stereo_8k.wav", 8000, stereo_8k)       # converted to 16 kHz mono
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all")
    (tmp_path / "cut.wav").write_bytes(real.read_bytes()[:30])
    files = read_negative_files([tmp_path])
    assert sorted(p.name for p, _ in files.clips) == ["ok_16k.wav", "stereo_8k.wav"]
    assert dict((p.name, len(a)) for p, a in files.clips)["stereo_8k.wav"] == RATE
    assert files.skipped == 3 and len(files.skipped_examples) == 3
    assert "skipped 3" in files.summary() and "cut.wav" in files.summary()
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        read_negative_files([tmp_path / "does-not-exist"])


def test_speaker_folds_keep_each_speaker_on_one_side(shared_eval: Path) -> None:
    assert speaker_key("103-1240-0000.wav") == speaker_key("103-1241-0007.wav") == "103"
    assert speaker_key("WUWII00012_006_pre.wav") == "WUWII00012"
    assert speaker_key("_unknown__bed_5e3dde6b_nohash_0.wav.wav") == "5e3dde6b"
    phone = sorted((shared_eval / "negatives" / "phone_speech").glob("*.wav"))
    by_speaker: dict[str, set[int]] = {}
    for p in phone:
        by_speaker.setdefault(speaker_key(p), set()).add(fold_of(p))
    assert len(by_speaker) > 20 and all(len(f) == 1 for f in by_speaker.values())
    folds = [fold_of(p) for p in phone]
    assert 0.3 < np.mean(folds) < 0.7   # both folds hold a real share


def test_embedding_cache_is_reused_and_a_corrupt_entry_recomputed(front: FrontEnd, tmp_path: Path, shared_eval: Path) -> None:
    from device.wakeword.eval import read_wav_16k, wav_files

    audio = read_wav_16k(wav_files(shared_eval / "speech")[0])
    cache = EmbeddingCache(front, tmp_path)
    first = cache.embeddings(audio)
    assert (cache.hits, cache.misses) == (0, 1)
    np.testing.assert_allclose(first, front.embeddings_batch(audio[np.newaxis, : len(first) * 1280])[0], atol=1e-5)
    again = EmbeddingCache(front, tmp_path).embeddings(audio)
    np.testing.assert_array_equal(first, again)
    (tmp_path / f"{cache.key(audio)}.npy").write_bytes(b"garbage")
    fresh = EmbeddingCache(front, tmp_path)
    np.testing.assert_allclose(fresh.embeddings(audio), first, atol=1e-6)
    assert fresh.misses == 1
    windows = windows_of(first, front.silence_embedding())
    assert windows.shape == (len(first), 16, 96)
    np.testing.assert_array_equal(windows[20], first[5:21])


def test_training_with_real_negatives_mines_reuses_the_cache_and_writes_a_verifier(
        tmp_path: Path, shared_eval: Path, feature_cache: Path) -> None:
    from device.wakeword.train.train import TrainPlan, train_head
    from device.wakeword.verifier import HeadVerifier, verifier_path

    negatives = tmp_path / "real"
    negatives.mkdir()
    for p in sorted((shared_eval / "negatives" / "librispeech").glob("*.wav"))[:6]:
        shutil.copy(p, negatives / p.name)
    plan = TrainPlan(
        phrase="hey vox lens", kokoro_positives=0, hibari_positives=24, hibari_sentences=16, piper_sentences=0,
        noise_streams=6, positive_copies=1, epochs=20, hidden=16, sources=("hibari",), deadline_s=120,
        negatives=(str(negatives),), negative_fold=None, mining_threshold=0.01, mining_rounds=2, verifier_hidden=32,
    )
    out = tmp_path / "a.onnx"
    report = train_head("hey vox lens", out, plan=plan)
    assert "6 files" in report.real_negatives
    assert report.cache_hits == 0 and not report.synth_cached
    assert report.mined and report.mined[0] > 0, report.mined       # unseen real windows the first fit got wrong
    assert report.verifier_path == verifier_path(WakeHead(out)) and report.verifier_path.is_file()
    assert HeadVerifier(report.verifier_path).head.phrase == "hey vox lens"
    again = train_head("hey vox lens", tmp_path / "b.onnx", plan=plan)
    assert again.synth_cached and again.cache_hits == 6
    assert again.mined == report.mined
    assert (tmp_path / "b.onnx").read_bytes() == out.read_bytes()   # the cache changes the cost, not the head
