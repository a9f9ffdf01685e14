"""`voxlens bench recheck`: what the near-miss command recheck ([device] command_recheck) does to real speech
that is not a command.

Why: the recheck decodes a short transcript again with the command vocabulary as Whisper's prompt and takes a
command that reads like it (device/command_recheck.py). Its gain shows in `bench voice --kinds commands`
(misheard commands run on the device); its risk is ordinary speech turned into a command. Real recordings
nobody here produced (../shared/eval: isolated words, including "up", "down", "off", "stop"; telephone
speech; read speech; sentences) are heard by the device's Whisper as if said after the wake word: how many
are commands on the first pass, how many earn a recheck, and how many the recheck turns into a command
(each listed). What it costs in time is measured where it is spent, idle and busy: `bench voice`.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from bench.cli import write_json
from bench.speech import EVAL_DIR, summary

NEGATIVES = EVAL_DIR.parent / "negatives"
SETS = {"isolated words": [NEGATIVES / "speech_commands_words", NEGATIVES / "words_en"],
        "telephone speech": [NEGATIVES / "phone_speech"], "read speech": [NEGATIVES / "librispeech"],
        "sentences": [EVAL_DIR]}


def _clips(folders: list[Path], quick: bool) -> list[Path]:
    files = sorted(f for folder in folders for f in folder.glob("*.wav"))
    return files[::20] if quick else files


def _labels() -> dict[str, str]:
    """What the speaker said, where the set names it (file -> words)."""
    out = {}
    for folder in SETS["isolated words"]:
        meta = folder / "metadata.csv"
        if meta.exists():
            with open(meta, encoding="utf-8") as fh:
                out.update({row[0]: row[1] for row in csv.reader(fh) if len(row) > 1})
    return out


def measure(stt, grammar, files: list[Path], labels: dict[str, str]) -> dict:
    from device.audio import read_wav
    from device.command_recheck import pick, worth_a_recheck

    first_pass, rechecked, taken, ms = [], 0, [], []
    for f in files:
        audio = read_wav(f)   # 16 kHz mono int16, resampled if needed
        text = stt.transcribe(audio).text
        said = labels.get(f.name) or (f.name.split("_nohash")[0].rsplit("_", 1)[0].replace("_unknown__", "")
                                      if "_nohash" in f.name else "?")   # Speech Commands names the word
        if grammar.understand(text).command is not None:
            first_pass.append({"file": f.name, "said": said, "heard": text})
            continue
        if not worth_a_recheck(text, grammar.words):
            continue
        rechecked += 1
        t0 = time.perf_counter()
        heard = stt.transcribe(audio, prompt=grammar.words.command_prompt, refit_loops=False).text
        found = pick(text, heard, grammar.parse, grammar.skip_words)
        ms.append((time.perf_counter() - t0) * 1000)
        if found.command is not None:
            taken.append({"file": f.name, "said": said, "heard": text, "recheck": heard,
                          "command": found.command.name, "similarity": round(found.similarity, 2)})
    return {"clips": len(files), "first_pass_commands": first_pass, "rechecked": rechecked, "taken": taken,
            "recheck_ms": summary(ms)}


def run(args: argparse.Namespace) -> int:
    from device.audio import read_wav  # noqa: F401  (fail early on a broken install)
    from device.commands import load_grammar
    from device.stt import SpeechToText, model_for
    from voxlens.config import load as load_config

    cfg = load_config()
    stt = SpeechToText(model_for(cfg.models.stt, cfg.stt), cfg.stt)
    grammar = load_grammar("en")
    labels = _labels()
    result: dict = {"stt": stt.name, "sets": {}}
    t0 = time.perf_counter()
    for name, folders in SETS.items():
        files = _clips(folders, args.quick)
        if not files:
            raise SystemExit(f"bench recheck: no clips under {', '.join(map(str, folders))}; "
                             "fix: put the shared eval set beside the project (../shared/eval)")
        result["sets"][name] = measure(stt, grammar, files, labels)
        print(f"  {name}: done", flush=True)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(f"\nvoxlens bench recheck ({stt.name}): real speech that is not a command, heard after the wake word")
    print(f"{'set':18} {'clips':>6} {'commands on the 1st pass':>25} {'rechecked':>10} {'turned into a command':>22}"
          f" {'recheck p50 ms':>15}")
    for name, r in result["sets"].items():
        print(f"{name:18} {r['clips']:>6} {len(r['first_pass_commands']):>25} {r['rechecked']:>10} "
              f"{len(r['taken']):>22} {r['recheck_ms']['p50']:>15}")
    for name, r in result["sets"].items():
        for t in r["taken"]:
            print(f"  taken ({name}, {t['file']}): said {t['said']!r}, heard {t['heard']!r}, rechecked {t['recheck']!r} -> "
                  f"{t['command']} (similarity {t['similarity']})")
    out = write_json(args.out, result)
    print(f"wrote {out} in {result['elapsed_s']} s")
    return 0
