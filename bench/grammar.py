"""`voxlens bench grammar`: load and match time of the command grammar per language, idle and busy CPU.

Why: a language's grammar (Home Assistant's templates merged with ours) loads on its first utterance and
every transcript is matched against it before anything else happens, so both sit on the path to the
first audio. Load is measured cold (HA's data re-read, hassil's number tries rebuilt).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import tomllib
from pathlib import Path

from bench.busy import busy_workers

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "de", "fr", "it", "pt", "hi", "es", "th")


def _sentences() -> dict[str, list[str]]:
    commands = tomllib.loads((HERE / "grammar_sentences.toml").read_text(encoding="utf-8"))
    questions = tomllib.loads((HERE / "multilingual_questions.toml").read_text(encoding="utf-8"))
    return {lang: commands[lang] + questions.get(lang, []) for lang in LANGUAGES}


def measure(language: str, sentences: list[str], repeats: int) -> dict:
    from device import commands, ha_intents

    ha_intents._ha_grammar.cache_clear()
    start = time.perf_counter()
    grammar = commands.Grammar(language)
    load_ms = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(repeats):
        for text in sentences:
            start = time.perf_counter()
            grammar.understand(text)
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"language": language, "load_ms": round(load_ms, 1), "match_p50_ms": round(statistics.median(times), 3),
            "match_p95_ms": round(times[int(0.95 * (len(times) - 1))], 3), "match_max_ms": round(times[-1], 3),
            "utterances": len(sentences)}


def run(args: argparse.Namespace) -> int:
    sentences = _sentences()
    repeats = 3 if args.quick else 20
    results: dict[str, list[dict]] = {}
    for label, workers in (("idle", 0), ("busy", 2)):
        with busy_workers(workers):
            results[label] = [measure(lang, sentences[lang], repeats) for lang in LANGUAGES]
    print(f"{'lang':5} {'load idle':>10} {'load busy':>10} {'p50 idle':>9} {'p95 idle':>9} {'p50 busy':>9} {'p95 busy':>9}")
    for idle, busy in zip(results["idle"], results["busy"]):
        print(f"{idle['language']:5} {idle['load_ms']:8.0f}ms {busy['load_ms']:8.0f}ms {idle['match_p50_ms']:7.2f}ms "
              f"{idle['match_p95_ms']:7.2f}ms {busy['match_p50_ms']:7.2f}ms {busy['match_p95_ms']:7.2f}ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"busy_workers": 2, "repeats": repeats, **results}, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")
    return 0
