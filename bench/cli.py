"""`voxlens bench NAME`: benchmarks that print a table and write JSON under bench/out/.

To add one, add a line to BENCHMARKS: name -> ("module:function", help), and any options of its own to
EXTRA_ARGUMENTS. The function
takes the parsed arguments and returns an exit code; it imports what it needs itself.
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"

BENCHMARKS: dict[str, tuple[str, str]] = {
    "speech": ("bench.speech:run", "STT WER/RTF and end-of-speech latency, TTS first audio, VAD end delay"),
    "endpoint": ("bench.endpoint:run", "end of turn on real recordings: delay after the true end and cut-offs at spliced mid-sentence pauses, silence vs Smart Turn, idle and busy CPU"),
    "voice": ("bench.voice:run", "voice-to-voice latency (true end of speech -> first audio), 20 commands + 20 questions, waterfall PNG"),
    "wakeword": ("bench.wakeword:bench_cli", "wake-word recipe on real voices: FRR on 56 real speakers, false accepts per hour"),
    "wyoming": ("bench.wyoming:run", "VoxLens's Wyoming STT/TTS beside wyoming-faster-whisper and wyoming-piper (same models), measured by wyoming-bench"),
    "first-token": ("bench.first_token:run", "small tier: time to first token and prompt tokens decoded per turn over a scripted conversation, idle and busy CPU"),
    "grammar": ("bench.grammar:run", "command grammar per language (Home Assistant's templates + ours): load and match time, idle and busy CPU"),
    "answer-language": ("bench.answer_languages:run", "does the small model answer in the question's language? the eight languages' questions as text and, with --spoken, spoken by espeak-ng and heard by whisper-base"),
    "recheck": ("bench.recheck:run", "near-miss command recheck on real speech that is not a command: isolated words, telephone and read speech; how many turn into a command"),
    "gateway": ("bench.gateway:run", "time to first token per tier; gateway overhead at 1/100/1000 streams; 50 devices on one small model, idle and busy CPU"),
}

EXTRA_ARGUMENTS: dict[str, tuple[tuple[tuple[str, ...], dict], ...]] = {
    "speech": ((("--load",), {"type": int, "default": 2, "metavar": "N",
                              "help": "busy workers for the device-final vs stock WER rows' loaded run (0: idle only)"}),
               (("--language",), {"metavar": "en,de,...", "default": "",
                                  "help": "instead: WER and language identification per language with the "
                                          "multilingual whisper (real English eval clips, espeak-ng clips for the rest)"})),
    "answer-language": ((("--language",), {"metavar": "en,de,...", "default": "", "help": "languages (default: the eight)"}),
                        (("--spoken",), {"action": "store_true", "help": "also ask each question spoken (espeak-ng -> whisper-base)"})),
    "voice": ((("--load",), {"type": int, "default": 0, "metavar": "N",
                             "help": "run again with N busy workers (a pure-Python spin and a numpy loop in turn) "
                                     "and print the loaded figures beside the idle ones"}),
              (("--ab-preemptive",), {"action": "store_true",
                                      "help": "every utterance twice in a row, [device] preemptive off then on, "
                                              "reported as two runs (a shared machine's drift falls on both)"}),
              (("--ab",), {"metavar": "SECTION.NAME=VALUE", "default": "",
                           "help": "every utterance twice in a row, as configured then with these settings changed "
                                   "(e.g. audio.block_ms=80,vad.command_silence_ms=128), reported as two runs"}),
              (("--kinds",), {"metavar": "commands,questions,...", "default": "",
                              "help": "only these kinds (commands, questions, recorded, paused, offline, gapped: a command going on after "
                                      "a 100 / 150 ms gap, cut counted; default all)"})),
}


def write_json(path: str | Path, result: object) -> Path:
    """A benchmark's result as JSON (its folder made), for the figures quoted in the README."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run a benchmark: a table on screen, JSON under bench/out/")
    sub = p.add_subparsers(dest="bench_name", metavar="NAME", required=True)
    for name, (target, helptext) in BENCHMARKS.items():
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--out", default=str(OUT_DIR / f"{name}.json"), help="where the JSON goes")
        sp.add_argument("--quick", action="store_true", help="a smaller run (a few clips) to check it works")
        for flags, options in EXTRA_ARGUMENTS.get(name, ()):
            sp.add_argument(*flags, **options)
        sp.set_defaults(func=_runner(target))


def _runner(target: str):
    def run(args: argparse.Namespace) -> int:
        module, _, function = target.partition(":")
        return int(getattr(importlib.import_module(module), function)(args) or 0)
    return run
