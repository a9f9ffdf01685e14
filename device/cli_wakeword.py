"""`voxlens wakeword train|eval`: make a wake-phrase head from synthetic speech, and measure one on real audio."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("wakeword", help="train and evaluate wake-word heads")
    sub = p.add_subparsers(dest="wakeword_command", metavar="ACTION")

    t = sub.add_parser("train", help="train a head for PHRASE from synthetic speech (CPU, minutes)")
    t.add_argument("phrase", help='the wake phrase, e.g. "hey vox lens"')
    t.add_argument("-o", "--output", required=True, help="where to write the ONNX head")
    t.add_argument("--minutes", type=float, default=10.0, help="time budget on 2 cores (default 10; counts scale with it)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sources", default="hibari,piper", help="voice sources, comma-separated (kokoro, hibari, piper; default hibari,piper)")
    t.add_argument("--confusables", type=int, default=0, help="phoneme-edited near-miss negatives per 10 minutes (default 0: measured to hurt real FRR)")
    t.add_argument("--json", action="store_true", help="print the training report as one JSON line")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="false rejects over positive clips, false accepts per hour over negatives")
    e.add_argument("--model", required=True, help="ONNX head (path or catalog name)")
    e.add_argument("--positives", required=True, help="folder of WAV clips that each contain the phrase")
    e.add_argument("--negatives", required=True, action="append", help="folder of WAVs without it (repeatable); streamed as one")
    e.add_argument("--min-hours", type=float, default=0.0, help="loop the negatives up to this many hours")
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--patience", type=int, default=1, help="consecutive frames over threshold to fire")
    e.add_argument("--json", action="store_true", help="one JSON object on stdout")
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from device.wakeword_train.train import SOURCES, TrainPlan, train_head

    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        print(f"voxlens wakeword train: unknown voice source(s) {unknown}; choose from {', '.join(SOURCES)}", file=sys.stderr)
        return 2
    if not args.phrase.strip():
        print("voxlens wakeword train: the phrase is empty", file=sys.stderr)
        return 2
    k = args.minutes / 10.0
    plan = TrainPlan.for_minutes(args.phrase, args.minutes, seed=args.seed, sources=sources,
                                 hibari_confusables=int(args.confusables * k), kokoro_confusables=int(args.confusables * k / 6),
                                 hibari_partials=int(args.confusables * k / 4))
    report = train_head(args.phrase, args.output, plan=plan)
    if args.json:
        print(json.dumps({"output": str(report.path), "phrase": report.phrase, "clips": report.clips,
                          "windows_positive": report.windows_positive, "windows_negative": report.windows_negative,
                          "seconds": {k: round(v, 1) for k, v in report.seconds.items()}}))
    else:
        print(f"wrote {report.path} for {report.phrase!r}: {sum(report.clips.values())} clips "
              f"({', '.join(f'{k} {v}' for k, v in report.clips.items())}), "
              f"{report.windows_positive} positive / {report.windows_negative} negative windows, "
              f"{report.seconds['total']:.0f} s")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from device.wakeword import WakeWordError
    from device.wakeword_eval import evaluate, load_negatives, wav_files

    try:
        negatives = load_negatives(args.negatives, args.min_hours)
        result = evaluate(args.model, wav_files(args.positives), negatives, args.threshold, args.patience)
    except WakeWordError as exc:
        print(f"voxlens wakeword eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"{result.model}  threshold {result.threshold}  patience {result.patience_frames}")
    print(f"  false rejects  {result.false_rejects}/{result.positives} = {100 * result.frr:.1f} %")
    print(f"  false accepts  {result.false_accepts} in {result.negative_hours:.2f} h = {result.fa_per_hour:.2f} per hour")
    print(f"  positive max-score percentiles  {result.positive_max_score_percentiles}")
    print(f"  negative frame-score percentiles {result.negative_frame_score_percentiles}")
    print("  threshold    FRR %   FA/h")
    for row in result.sweep:
        print(f"  {row['threshold']:>9}  {100 * row['frr']:6.1f}  {row['fa_per_hour']:7.2f}")
    return 0
