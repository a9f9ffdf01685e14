"""`voxlens bench wakeword`: the default recipe, judged on real voices it never heard.

For each phrase with real recordings in shared/eval (hey chatterbox, jarvis,
smart mirror, alexa) and each speaker fold k of the real negatives:

1. train a head with the default recipe (`voxlens wakeword train`'s defaults:
   synthetic positives only, real negatives of fold k, hard-negative mining,
   the verifier head), cached in bench/out/wakeword/;
2. score it on every real recording of the phrase (FRR), on the ordinary
   speech of the *other* fold (LibriSpeech read speech + WUW-II telephone
   conversation: false accepts per hour), on the isolated words of the other
   fold, and on synthetic noise; first stage alone, with the STT verifier and
   with the verifier head; at the device's default threshold and as a sweep.

The two folds together score every minute of the hour of ordinary speech with
a head that never trained on it (and never on its speakers). FRR is the mean
of the two heads. A DET curve (FRR against FA/h) per phrase goes to
bench/out/wakeword_det.png beside the JSON. The detector's and verifier's
costs are measured idle and with both cores busy.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out"
RATE_HZ = 16000
PHRASES = {"hey chatterbox": "hey_chatterbox", "jarvis": "jarvis", "smart mirror": "smart_mirror", "alexa": "alexa"}
ORDINARY = ("librispeech", "phone_speech")
WORDS = ("speech_commands_words", "words_en")
SWEEP = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
NOISE_MINUTES = 10.0


def noise_clips(minutes: float = NOISE_MINUTES, seed: int = 4242) -> list[np.ndarray]:
    """Synthetic background noise (white, pink, brown, mains hum) at levels from near-silent to loud, 30 s each."""
    from device.wakeword.train.augment import coloured_noise, to_int16

    rng = np.random.default_rng(seed)
    return [to_int16(coloured_noise(30 * RATE_HZ, rng), float(rng.uniform(-50, -3))) for _ in range(int(minutes * 2))]


def poisson_upper(events: int, confidence: float = 0.95) -> float:
    """The upper end of the two-sided confidence interval of a Poisson count: how many events per unit
    the data cannot rule out. Why: 0 or 1 false accepts in an hour says little on its own (0 in 1.05 h
    still allows 3.5/h), so the bench prints the bound beside the count."""
    from scipy.stats import chi2

    return float(chi2.ppf(1 - (1 - confidence) / 2, 2 * events + 2) / 2)


def other_phrases(phrase: str) -> list[tuple[str, np.ndarray]]:
    """Real recordings of every other wake phrase in shared/eval (never used in training): the nearest
    thing to a wake word that is not this one, each clip a short stream with 1 s of silence after it."""
    from device.wakeword.corpus import SHARED_EVAL
    from device.wakeword.eval import read_wav_16k

    pad = np.zeros(RATE_HZ, np.int16)
    folders = sorted(d for d in (SHARED_EVAL / "wakeword").iterdir() if d.is_dir() and d.name != PHRASES[phrase])
    return [(f"{d.name}/{p.name}", np.concatenate([read_wav_16k(p), pad])) for d in folders for p in sorted(d.glob("*.wav"))]


def train_fold(phrase: str, fold: int, minutes: float) -> Path:
    from device.wakeword.corpus import default_negative_dirs
    from device.wakeword.train.train import TrainPlan, train_head

    head = OUT / "wakeword" / f"{PHRASES[phrase]}_fold{fold}_{minutes:g}min.onnx"
    if not head.is_file() or not head.with_name(head.stem + ".verifier.onnx").is_file():
        print(f"training {head.name} (default recipe, {minutes:g} min budget, negatives fold {fold})…", flush=True)
        plan = TrainPlan.for_minutes(phrase, minutes, negatives=tuple(str(d) for d in default_negative_dirs()),
                                     negative_fold=fold)
        report = train_head(phrase, head, plan=plan)
        print(f"  {report.seconds['total']:.0f} s, real negatives {report.real_negatives}, mined {report.mined}", flush=True)
    return head


def _pool(rows: list[list[dict]], hours: list[float], n_pos: int) -> list[dict]:
    """Sweeps of the two folds -> one: FRR the mean, FA/h over the summed hours."""
    out = []
    for parts in zip(*rows):
        row = {"threshold": parts[0]["threshold"]}
        for suffix in ("", "_verified"):
            if "fa" + suffix not in parts[0]:
                continue
            row["frr" + suffix] = round(sum(p["misses" + suffix] for p in parts) / (n_pos * len(parts)), 4)
            row["fa_per_hour" + suffix] = round(sum(p["fa" + suffix] for p in parts) / sum(hours), 3)
            row["fa" + suffix] = sum(p["fa" + suffix] for p in parts)
        out.append(row)
    return out


def bench_phrase(phrase: str, minutes: float, threshold: float, stt, min_similarity: float, folds=(0, 1),
                 window_s: float = 3.0, second_look_s: float = 0.4) -> dict:
    from device.wakeword.corpus import SHARED_EVAL, read_negative_files
    from device.wakeword.eval import evaluate, wav_files
    from device.wakeword.verifier import HeadVerifier, SttVerifier

    from device.wakeword.features_cache import EmbeddingCache
    from device.wakeword.frontend import FrontEnd

    positives = wav_files(SHARED_EVAL / "wakeword" / PHRASES[phrase])
    noise = noise_clips()
    others = other_phrases(phrase)
    fe = FrontEnd()
    cache = EmbeddingCache(fe)
    unseen = {fold: ([a for _, a in read_negative_files([SHARED_EVAL / "negatives" / n for n in ORDINARY], 1 - fold).clips],
                     [a for _, a in read_negative_files([SHARED_EVAL / "negatives" / n for n in WORDS], 1 - fold).clips])
              for fold in folds}   # each fold's head is scored on the other fold's speakers
    per_verifier: dict[str, dict] = {}
    for kind in ("none", "stt", "head"):
        sweeps, hours, words_fa, words_h, noise_fa, frr_at, fa_at, missed, texts, costs = [], [], 0, 0.0, 0, [], 0, [], [], []
        others_fa, others_texts, bars = 0, [], []
        for fold in folds:
            head = train_fold(phrase, fold, minutes)
            verifier = None
            if kind == "stt":
                verifier = SttVerifier(stt, phrase, min_similarity, window_s)
            elif kind == "head":
                verifier = HeadVerifier(head.with_name(head.stem + ".verifier.onnx"))
            ordinary, words = unseen[fold]
            look = dict(fe=fe, cache=cache, second_look_s=second_look_s)
            r = evaluate(head, positives, ordinary, threshold, verifier=verifier, thresholds=SWEEP, **look)
            rw = evaluate(head, [], words, threshold, verifier=verifier, thresholds=(), **look)
            rn = evaluate(head, [], noise, threshold, verifier=verifier, thresholds=(), **look)
            ro = evaluate(head, [], [a for _, a in others], threshold, verifier=verifier, thresholds=(), **look)
            others_fa += ro.false_accepts
            others_texts += ro.false_accept_texts
            sweeps.append(r.sweep)
            bars.append(r.bar_sweep)
            hours.append(r.negative_hours)
            frr_at.append(r.frr)
            fa_at += r.false_accepts
            words_fa += rw.false_accepts
            words_h += rw.negative_hours
            noise_fa += rn.false_accepts
            missed += r.missed
            texts += r.false_accept_texts
            if r.verifier_ms:
                costs.append(r.verifier_ms)
        per_verifier[kind] = {
            "frr": round(float(np.mean(frr_at)), 4), "fa_per_hour": round(fa_at / sum(hours), 3), "false_accepts": fa_at,
            "fa_per_hour_upper95": round(poisson_upper(fa_at) / sum(hours), 2),
            "ordinary_speech_hours": round(sum(hours), 3),
            "other_phrases_false_accepts": others_fa, "other_phrases_clips": len(others) * len(folds),
            "other_phrases_texts": others_texts[:10],
            "words_fa_per_hour": round(words_fa / words_h, 2) if words_h else None, "words_hours": round(words_h, 3),
            "noise_fa_per_hour": round(noise_fa / (NOISE_MINUTES / 60 * len(folds)), 2),
            "sweep": _pool(sweeps, hours, len(positives)), "missed": sorted(set(missed)),
            "bar_sweep": [{"bar": parts[0]["bar"],
                           "frr": round(sum(p["misses"] for p in parts) / (len(positives) * len(parts)), 4),
                           "fa": sum(p["fa"] for p in parts), "fa_per_hour": round(sum(p["fa"] for p in parts) / sum(hours), 3)}
                          for parts in zip(*bars)] if bars and bars[0] else [],
            "false_accept_texts": texts[:20], "verifier_ms": costs,
        }
    return {"phrase": phrase, "positives": len(positives), "threshold": threshold, "train_minutes": minutes,
            "verifiers": per_verifier}


def measure_costs(head: Path, stt, phrase: str, min_similarity: float, window_s: float = 3.0) -> dict:
    """Detector ms per 80 ms frame (streaming) and STT-verifier ms per fire, idle and with both cores busy."""
    from bench.busy import busy_cpu
    from device.wakeword import WakeWordDetector
    from device.wakeword.corpus import SHARED_EVAL, read_negative_files
    from device.wakeword.verifier import SttVerifier

    speech = np.concatenate([a for _, a in read_negative_files([SHARED_EVAL / "speech"]).clips])[: 20 * RATE_HZ]
    det = WakeWordDetector([str(head)], threshold=0.5)
    ver = SttVerifier(stt, phrase, min_similarity, window_s)

    def once() -> dict:
        det.reset()
        t0 = time.perf_counter()
        det.process_audio(speech)
        frame_ms = (time.perf_counter() - t0) / (len(speech) / 1280) * 1000
        ms = []
        for k in range(8):
            clip = speech[k * RATE_HZ: k * RATE_HZ + 2 * RATE_HZ]
            ms.append(ver.verify(clip).ms)
        return {"detector_ms_per_frame": round(frame_ms, 3), "share_of_one_core": round(frame_ms / 80.0, 4),
                "stt_verifier_ms_p50": round(float(np.percentile(ms, 50)), 1),
                "stt_verifier_ms_p90": round(float(np.percentile(ms, 90)), 1)}

    idle = once()
    with busy_cpu(2):
        loaded = once()
    return {"idle": idle, "busy_2_spinners": loaded}


def plot_det(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        for kind, style in (("none", "o-"), ("stt", "s-"), ("head", "^-")):
            sweep = res["verifiers"][kind]["sweep"]
            suffix = "" if kind == "none" else "_verified"
            x = [max(r["fa_per_hour" + suffix], 0.05) for r in sweep]
            y = [100 * r["frr" + suffix] for r in sweep]
            label = {"none": "first stage", "stt": "+ STT verifier", "head": "+ verifier head"}[kind]
            ax.plot(x, y, style, label=label, markersize=4)
        ax.axvline(0.5, color="grey", lw=0.8, ls="--")
        ax.axhline(5, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlim(0.04, 200)
        ax.set_xlabel("false accepts per hour (0 drawn at 0.05)")
        ax.set_ylabel("false rejects, % of real speakers")
        ax.set_title(f"{res['phrase']!r} ({res['positives']} speakers)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("wake word on real speech never seen in training (sweep over the first-stage threshold)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_cli(args) -> int:
    from device.stt import SpeechToText
    from voxlens.config import load

    cfg = load()
    minutes = 2.0 if args.quick else 10.0
    phrases = ["hey chatterbox"] if args.quick else list(PHRASES)
    folds = (0,) if args.quick else (0, 1)
    stt = SpeechToText(cfg.models.stt, cfg.stt)
    ww = cfg.wakeword
    th, sim, win, look = ww.threshold, ww.verifier_min_similarity, ww.verifier_window_s, ww.second_look_s
    print(f"device defaults: threshold {th}, STT verifier (min similarity {sim}, {win} s window, second look {look} s)")
    results = []
    for phrase in phrases:
        res = bench_phrase(phrase, minutes, th, stt, sim, folds, win, look)
        results.append(res)
        _print_phrase(res)
    costs = measure_costs(train_fold(phrases[0], 0, minutes), stt, phrases[0], sim, win)
    print(f"\ncost: {costs}")
    OUT.mkdir(parents=True, exist_ok=True)
    png = OUT / "wakeword_det.png"
    plot_det(results, png)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threshold": th, "verifier_min_similarity": sim, "verifier_window_s": win,
                               "second_look_s": look, "phrases": results, "costs": costs}, indent=1))
    print(f"wrote {out} and {png}")
    return 0


def _print_phrase(res: dict) -> None:
    print(f"\n{res['phrase']!r}: {res['positives']} real speakers, threshold {res['threshold']}, "
          f"{res['verifiers']['none']['ordinary_speech_hours']:.2f} h of unseen ordinary speech")
    print(f"  {'verifier':<10}{'FRR %':>7}{'FA/h speech':>13}{'(95% up to)':>12}{'FA/h words':>12}{'FA/h noise':>12}"
          f"{'other phrases':>15}")
    for kind, v in res["verifiers"].items():
        print(f"  {kind:<10}{100 * v['frr']:>7.1f}{v['fa_per_hour']:>13.2f}{v['fa_per_hour_upper95']:>12.2f}"
              f"{v['words_fa_per_hour'] or 0:>12.2f}{v['noise_fa_per_hour']:>12.2f}"
              f"{v['other_phrases_false_accepts']:>6} of {v['other_phrases_clips']}")
    bars = res["verifiers"]["stt"].get("bar_sweep") or []
    if bars:
        print("  STT verifier's similarity bar at the threshold: " +
              ", ".join(f"{b['bar']}: FRR {100 * b['frr']:.1f} % FA {b['fa']}" for b in bars))
    print("  sweep (first stage | with STT verifier):")
    stt_sweep = res["verifiers"]["stt"]["sweep"]
    for row in stt_sweep:
        print(f"    {row['threshold']:>5}  FRR {100 * row['frr']:5.1f} %  FA/h {row['fa_per_hour']:7.2f}   |   "
              f"FRR {100 * row['frr_verified']:5.1f} %  FA/h {row['fa_per_hour_verified']:6.2f}")
