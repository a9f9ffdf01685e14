"""`voxlens bench speech --language en,de,...`: WER and language identification per language, multilingual Whisper.

The device's setting is reproduced: whisper-base with [stt] languages = the languages asked for, each
utterance's language identified among them, then transcribed in it.

- REAL recordings: ../shared/eval/speech holds English only (26 clips of real people); they are the
  only real set, and they measure English WER and how often English is identified as English when
  other languages are enabled as well.
- SYNTHETIC: for every language asked for, the questions in bench/multilingual_questions.toml spoken by
  espeak-ng (robotic formant speech; no model here was trained on it, and Whisper hears it worse than
  people). Labelled synthetic in the table and the JSON: not a claim about real speakers.

WER uses Whisper's normalisers (the English one for en, the basic one otherwise); Thai writes no spaces
between words, so Thai is scored by character error rate (CER) instead.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tomllib
from pathlib import Path

import numpy as np

from device.audio import SAMPLE_RATE_HZ, resample

QUESTIONS_FILE = Path(__file__).resolve().parent / "multilingual_questions.toml"


def error_rate(language: str, refs: list[str], hyps: list[str]) -> tuple[str, float]:
    """("WER" or "CER", the rate) with Whisper's normaliser for the language."""
    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer() if language == "en" else BasicTextNormalizer()
    pairs = [(norm(r), norm(h) or "<empty>") for r, h in zip(refs, hyps) if norm(r).strip()]
    if not pairs:
        return "WER", float("nan")
    if language == "th":
        return "CER", jiwer.cer([p[0].replace(" ", "") for p in pairs], [p[1].replace(" ", "") for p in pairs])
    return "WER", jiwer.wer([p[0] for p in pairs], [p[1] for p in pairs])


def synthetic_clips(language: str) -> list[tuple[str, np.ndarray, str]]:
    """(name, 16 kHz int16, reference) for the language's questions, spoken by espeak-ng."""
    from device.espeak_voice import EspeakVoice

    questions = tomllib.loads(QUESTIONS_FILE.read_text(encoding="utf-8")).get(language, [])
    voice = EspeakVoice(language)
    return [(f"espeak-{language}-{i}", resample(voice.synthesize(q), voice.sample_rate_hz, SAMPLE_RATE_HZ), q)
            for i, q in enumerate(questions)]


def score(stt, language: str, clips: list[tuple[str, np.ndarray, str]]) -> dict:
    """Transcribe every clip as the device would; the error rate, the share identified as `language`."""
    hyps, identified, times = [], [], []
    for _, audio, _ in clips:
        t0 = time.perf_counter()
        t = stt.transcribe(audio)
        times.append((time.perf_counter() - t0) * 1000)
        hyps.append(t.text)
        identified.append(t.language)
    metric, rate = error_rate(language, [c[2] for c in clips], hyps)
    right = sum(lang == language for lang in identified)
    return {"clips": len(clips), "metric": metric, "error_rate": round(rate, 4), "lid_correct": right,
            "lid_accuracy": round(right / len(clips), 3) if clips else None,
            "identified_as": {lang: identified.count(lang) for lang in sorted(set(identified))},
            "p50_ms": round(float(np.median(times)), 1) if times else None,
            "hypotheses": hyps}


def run(args: argparse.Namespace) -> int:
    from bench.speech import eval_clips
    from device.stt import SpeechToText
    from voxlens.config import SttConfig

    languages = tuple(dict.fromkeys(x.strip().lower() for x in args.language.split(",") if x.strip()))
    if not languages:
        raise SystemExit("bench speech: --language needs languages, e.g. --language en,de,fr,es")
    t_start = time.perf_counter()
    stt = SpeechToText("whisper-base", SttConfig(languages=languages))
    stt.transcribe(np.zeros(SAMPLE_RATE_HZ, dtype=np.int16))   # warm-up
    result: dict = {"model": "whisper-base", "enabled_languages": list(languages),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_avg_start": list(os.getloadavg())},
                    "real": {}, "synthetic_espeak": {},
                    "note": "real recordings exist for English only (../shared/eval/speech); the other languages "
                            "are espeak-ng speech of bench/multilingual_questions.toml (synthetic)"}
    rows = [["set", "language", "clips", "error rate", "language identified", "p50 per clip"]]
    if "en" in languages:
        real = [(name, audio, ref) for name, audio, ref in eval_clips(args.quick)]
        result["real"]["en"] = r = score(stt, "en", real)
        rows.append(["REAL (eval)", "en", r["clips"], f"{r['metric']} {r['error_rate']:.1%}",
                     f"{r['lid_correct']}/{r['clips']} ({r['lid_accuracy']:.0%})", f"{r['p50_ms']:.0f} ms"])
        # what enabling more languages costs English: the same clips on the English-only default
        result["real"]["en_tiny.en"] = r = score(SpeechToText("whisper-tiny.en"), "en", real)
        rows.append(["REAL (eval), tiny.en", "en", r["clips"], f"{r['metric']} {r['error_rate']:.1%}",
                     "(English only)", f"{r['p50_ms']:.0f} ms"])
    for language in languages:
        clips = synthetic_clips(language)
        if args.quick:
            clips = clips[:2]
        result["synthetic_espeak"][language] = r = score(stt, language, clips)
        rows.append(["SYNTHETIC (espeak-ng)", language, r["clips"], f"{r['metric']} {r['error_rate']:.1%}",
                     f"{r['lid_correct']}/{r['clips']} ({r['lid_accuracy']:.0%})", f"{r['p50_ms']:.0f} ms"])
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    result["elapsed_s"] = round(time.perf_counter() - t_start, 1)

    print(f"voxlens bench speech --language {','.join(languages)}  (whisper-base, language identified among "
          f"these; load avg {result['machine']['load_avg_start'][0]:.1f})")
    print("real recordings: English only in ../shared/eval; other languages: espeak-ng speech (synthetic, robotic)")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    out = Path(args.out)
    if out.name == "speech.json":
        out = out.with_name("speech-languages.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {out} in {result['elapsed_s']} s")
    return 0
