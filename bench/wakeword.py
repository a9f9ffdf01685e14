"""Wake-word benchmark: a head's FRR on real speakers and false accepts per hour on real + an hour of other speech.

`run(model, positives)` prints a table and writes bench/out/wakeword.json. The
"other speech" hour is synthesized once into bench/out/wakeword_other_speech/
(Piper joe and hibari reading random word sequences and sentences with a seed
the trainer never uses), then reused. Also times the streaming detector per
80 ms frame (noisy on a shared machine).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out"
SHARED_EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
RATE_HZ = 16000


def build_other_speech(folder: Path = OUT / "wakeword_other_speech", minutes: float = 60.0, seed: int = 9001) -> Path:
    """~`minutes` of synthesized ordinary speech as 16 kHz WAVs (cached: rebuilt only when short)."""
    from device.audio import write_wav
    from device.wakeword_eval import read_wav_16k
    from device.wakeword_train import texts
    from device.wakeword_train.voices import HibariVoice, PiperVoice

    folder.mkdir(parents=True, exist_ok=True)
    have = sum(len(read_wav_16k(p)) for p in folder.glob("*.wav")) / RATE_HZ / 60
    if have >= minutes * 0.98:
        return folder
    rng = np.random.default_rng(seed)
    hib, pip = HibariVoice(), PiperVoice()
    from tqdm import tqdm

    total_s, i = have * 60, len(list(folder.glob("*.wav")))
    bar = tqdm(total=int(minutes * 60), initial=int(total_s), desc="other speech", unit="s")
    while total_s < minutes * 60:
        parts = []
        for _ in range(10):
            text = " ".join(str(rng.choice(texts.SENTENCES)) if rng.random() < 0.2 else texts.random_word_text(rng, set(), 4, 12) for _ in range(2))
            clip = pip.synthesize_text(text, rng) if rng.random() < 0.5 else hib.synthesize(hib.phonemize(text), rng)
            parts += [clip, np.zeros(int(rng.uniform(0.1, 0.8) * RATE_HZ), np.float32)]
        audio = np.concatenate(parts)
        pcm = np.clip(audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.05, 0.9) * 32767, -32768, 32767).astype(np.int16)
        write_wav(folder / f"other_{i:04d}.wav", pcm, RATE_HZ)
        i += 1
        total_s += len(pcm) / RATE_HZ
        bar.update(int(len(pcm) / RATE_HZ))
    bar.close()
    return folder


def run(model: str = "hey-vox-lens", positives: Path | None = None, threshold: float = 0.5, other_minutes: float = 60.0) -> dict:
    """Evaluate `model`; default positives: the 56 real 'hey chatterbox' speakers (pass a chatterbox head)."""
    from device.wakeword import WakeWordDetector
    from device.wakeword_eval import evaluate, load_negatives, wav_files

    positives = positives or SHARED_EVAL / "wakeword" / "hey_chatterbox"
    other = build_other_speech(minutes=other_minutes)
    real_neg = load_negatives([SHARED_EVAL / "negatives" / "words_en", SHARED_EVAL / "speech"])
    synth_neg = load_negatives([other])
    rows = {}
    for label, neg in (("real negatives + speech", real_neg), ("synthesized other speech", synth_neg)):
        rows[label] = evaluate(model, wav_files(positives), neg, threshold).to_dict()
    det = WakeWordDetector([model], threshold=threshold)
    audio = real_neg[: 20 * RATE_HZ]
    t0 = time.perf_counter()
    det.process_audio(audio)
    per_frame_ms = (time.perf_counter() - t0) / (len(audio) / 1280) * 1000
    result = {"model": str(model), "threshold": threshold, "detector_ms_per_frame": round(per_frame_ms, 3), "sets": rows}
    print(f"wake word {model} @ {threshold}: {per_frame_ms:.2f} ms per 80 ms frame (streaming, one head)")
    print(f"{'negatives':<28}{'hours':>7}{'FA':>5}{'FA/h':>8}{'FRR %':>8}")
    for label, r in rows.items():
        print(f"{label:<28}{r['negative_hours']:>7.2f}{r['false_accepts']:>5}{r['fa_per_hour']:>8.2f}{100 * r['frr']:>8.1f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "wakeword.json").write_text(json.dumps(result, indent=1))
    return result


def bench_cli(args) -> int:
    """`voxlens bench wakeword`: train a 'hey chatterbox' head with the default recipe (synthetic speech only,
    cached in bench/out/), then score it on the 56 real speakers and the negatives, at 0.5 and at the
    device's default threshold."""
    from device.wakeword_train.train import TrainPlan, train_head
    from voxlens.config import WakewordConfig

    minutes = 1.0 if args.quick else 5.0
    head = OUT / f"hey_chatterbox_{minutes:g}min.onnx"
    if not head.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        print(f"training {head.name} ({minutes:g} min budget)…", flush=True)
        train_head("hey chatterbox", head, plan=TrainPlan.for_minutes("hey chatterbox", minutes))
    results = {}
    for threshold in sorted({0.5, WakewordConfig().threshold}):
        results[str(threshold)] = run(str(head), threshold=threshold, other_minutes=10.0 if args.quick else 60.0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0
