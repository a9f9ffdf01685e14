"""`voxlens wakeword train|eval`: make a wake-phrase head from synthetic speech, and measure one on real audio."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("wakeword", help="train and evaluate wake-word heads")
    sub = p.add_subparsers(dest="wakeword_command", metavar="ACTION")

    t = sub.add_parser("train", help="train a head (and its verifier) for PHRASE: synthetic positives, real negatives (CPU, minutes)")
    t.add_argument("phrase", help='the wake phrase, e.g. "hey vox lens"')
    t.add_argument("-o", "--output", required=True, help="where to write the ONNX head")
    t.add_argument("--minutes", type=float, default=10.0, help="time budget on 2 cores (default 10; counts scale with it)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sources", default="hibari,piper", help="voice sources, comma-separated (kokoro, hibari, piper; default hibari,piper)")
    t.add_argument("--confusables", type=int, default=0, help="phoneme-edited near-miss negatives per 10 minutes (default 0: measured to hurt real FRR)")
    t.add_argument("--negatives", action="append", default=None, metavar="DIR",
                   help="folder of real speech without the phrase (repeatable); default: $VOXLENS_WAKEWORD_NEGATIVES, "
                        "else shared/eval's real ordinary speech beside the checkout")
    t.add_argument("--negative-fold", default="all", choices=["0", "1", "all"],
                   help="train on one speaker fold of the negatives and keep the other unseen for evaluation "
                        "(voxlens bench wakeword does), or all of them (default: a product head)")
    t.add_argument("--mining-rounds", type=int, default=2, help="hard-negative mining rounds (default 2)")
    t.add_argument("--no-verifier", action="store_true", help="do not fit the second-stage head (<output>.verifier.onnx)")
    t.add_argument("--json", action="store_true", help="print the training report as one JSON line")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="false rejects over positive clips, false accepts per hour over negatives")
    e.add_argument("--model", required=True, help="ONNX head (path or catalog name)")
    e.add_argument("--positives", required=True, help="folder of WAV clips that each contain the phrase")
    e.add_argument("--negatives", required=True, action="append", help="folder of WAVs without it (repeatable); streamed as one")
    e.add_argument("--min-hours", type=float, default=0.0, help="loop the negatives up to this many hours")
    e.add_argument("--threshold", type=float, default=None, help="first-stage threshold (default: the device's, wakeword.threshold)")
    e.add_argument("--patience", type=int, default=1, help="consecutive frames over threshold to fire")
    e.add_argument("--verifier", default=None, choices=["none", "stt", "head"],
                   help="confirm each fire: stt (Whisper + phoneme match), head (<model>.verifier.onnx), none; "
                        "default: the device's (wakeword.verifier), so the numbers are what the device does")
    e.add_argument("--phrase", default="", help="the phrase the stt verifier listens for (default: the head's own)")
    e.add_argument("--json", action="store_true", help="one JSON object on stdout")
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from device.wakeword.train.train import SOURCES, TrainPlan, train_head

    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        print(f"voxlens wakeword train: unknown voice source(s) {unknown}; choose from {', '.join(SOURCES)}", file=sys.stderr)
        return 2
    if not args.phrase.strip():
        print("voxlens wakeword train: the phrase is empty", file=sys.stderr)
        return 2
    from device.wakeword.corpus import default_negative_dirs

    negatives = tuple(args.negatives) if args.negatives else tuple(str(d) for d in default_negative_dirs())
    if not negatives:
        print("voxlens wakeword train: no real negative speech found (shared/eval is not beside the checkout and "
              "$VOXLENS_WAKEWORD_NEGATIVES is unset); training on synthetic negatives only, expect many false wakes on "
              "real speech. Fix: --negatives DIR with recordings of ordinary speech", file=sys.stderr)
    k = args.minutes / 10.0
    plan = TrainPlan.for_minutes(args.phrase, args.minutes, seed=args.seed, sources=sources,
                                 hibari_confusables=int(args.confusables * k), kokoro_confusables=int(args.confusables * k / 6),
                                 hibari_partials=int(args.confusables * k / 4), negatives=negatives,
                                 negative_fold=None if args.negative_fold == "all" else int(args.negative_fold),
                                 mining_rounds=args.mining_rounds, verifier=not args.no_verifier)
    try:
        report = train_head(args.phrase, args.output, plan=plan)
    except FileNotFoundError as exc:
        print(f"voxlens wakeword train: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"output": str(report.path), "phrase": report.phrase, "clips": report.clips,
                          "windows_positive": report.windows_positive, "windows_negative": report.windows_negative,
                          "real_negatives": report.real_negatives, "mined": report.mined,
                          "verifier": str(report.verifier_path or ""), "synth_cached": report.synth_cached,
                          "seconds": {k: round(v, 1) for k, v in report.seconds.items()}}))
    else:
        print(f"wrote {report.path} for {report.phrase!r}: {sum(report.clips.values())} synthetic clips "
              f"({', '.join(f'{k} {v}' for k, v in report.clips.items())}{', from cache' if report.synth_cached else ''}), "
              f"real negatives {report.real_negatives or 'none'}, mined {report.mined}, "
              f"{report.windows_positive} positive / {report.windows_negative} negative windows, "
              f"{report.seconds['total']:.0f} s")
        if report.verifier_path:
            print(f"wrote the second-stage head {report.verifier_path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from device.wakeword import WakeWordError
    from device.wakeword.corpus import read_negative_files
    from device.wakeword.eval import evaluate, wav_files

    try:
        files = read_negative_files(args.negatives)
        clips = [a for _, a in files.clips]
        if not clips:
            raise WakeWordError(f"no readable negative audio in {args.negatives} ({files.summary()})")
        if args.min_hours and files.seconds < args.min_hours * 3600:
            clips = clips * int(np.ceil(args.min_hours * 3600 / files.seconds))
        from voxlens.config import load

        ww = load().wakeword
        args.verifier = args.verifier or ww.verifier
        threshold = ww.threshold if args.threshold is None else args.threshold
        verifier = _eval_verifier(args) if args.verifier != "none" else None
        result = evaluate(args.model, wav_files(args.positives), clips, threshold, args.patience, verifier=verifier,
                          second_look_s=ww.second_look_s)
    except (WakeWordError, FileNotFoundError) as exc:
        print(f"voxlens wakeword eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"{result.model}  threshold {result.threshold}  patience {result.patience_frames}  verifier {result.verifier}")
    print(f"  false rejects  {result.false_rejects}/{result.positives} = {100 * result.frr:.1f} %")
    print(f"  false accepts  {result.false_accepts} in {result.negative_hours:.2f} h = {result.fa_per_hour:.2f} per hour")
    print(f"  positive max-score percentiles  {result.positive_max_score_percentiles}")
    print(f"  negative frame-score percentiles {result.negative_frame_score_percentiles}")
    if result.verifier_ms:
        print(f"  verifier cost per fire (ms)      {result.verifier_ms}")
    verified = result.verifier != "none"
    print("  threshold    FRR %   FA/h" + ("   FRR % verified   FA/h verified" if verified else ""))
    for row in result.sweep:
        line = f"  {row['threshold']:>9}  {100 * row['frr']:6.1f}  {row['fa_per_hour']:7.2f}"
        if verified:
            line += f"  {100 * row['frr_verified']:15.1f}  {row['fa_per_hour_verified']:14.2f}"
        print(line)
    return 0


def _eval_verifier(args: argparse.Namespace):
    from device.wakeword import WakeHead, WakeWordError
    from device.wakeword.verifier import HeadVerifier, SttVerifier, verifier_path
    from voxlens.config import load

    cfg = load()
    head = WakeHead(args.model)
    if args.verifier == "head":
        return HeadVerifier(verifier_path(head), cfg.wakeword.verifier_threshold)
    from device.stt import SpeechToText

    try:
        return SttVerifier(SpeechToText(cfg.models.stt, cfg.stt), args.phrase or head.phrase,
                           cfg.wakeword.verifier_min_similarity, cfg.wakeword.verifier_window_s)
    except WakeWordError:
        raise
    except Exception as exc:
        raise WakeWordError(f"the STT verifier cannot start: {exc}") from None
