"""`voxlens bench voice`: voice-to-voice latency, from the true end of the user's speech to the first output sample.

Each utterance is spoken in the user's voice (hibari) after the wake phrase, played to the whole
device in real time (wake word, Silero, streaming whisper, grammar, gRPC to an
in-process gateway with the small model, Piper), and the turn's own timings give
the waterfall. "True end" is the last voiced sample of the spoken utterance
(known exactly, since we made the audio), not the VAD's estimate, so the
endpointing delay is counted in full.

Preemptive generation ([device] preemptive; VOXLENS_DEVICE__PREEMPTIVE=false for the run without it): per
kind, the questions sent on a settled partial before the endpoint, how many the final adopted, how many were
wasted (cancelled: the final differed, or it was a device command), and the head start the adopted ones had
(from the query leaving to the final transcript: the time a turn sent at the final would have lost).

`--ab-preemptive` plays every utterance twice in a row, preemptive off and on (the order alternates: the second
play of a question finds its prompt in the small tier's KV cache), and reports them as two runs;
`--ab vad.command_silence_ms=96` does the same for any settings (comma-separated): as configured, then changed.

`--load N` runs every utterance again with N busy workers beside the device (bench/busy.py: a pure-Python
spin and a numpy loop in turn) and prints both runs side by side, with the audio loop's lag behind the
microphone: figures that hold only on an idle box do not hold on glasses.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.cli import write_json
from bench.speech import summary, voiced_bounds
from device.audio import SAMPLE_RATE_HZ, MemorySink, WavSource, write_wav
from voxlens.config import BackendConfig, Config
from voxlens.config import load as load_config

COMMANDS = (
    "What time is it?", "Volume up.", "Set the volume to thirty percent.", "Mute.", "Unmute.", "Take a photo.",
    "Start recording a video.", "Stop recording.", "Set a timer for five minutes.", "How much time is left?",
    "Cancel the timer.", "What's the date today?", "What's the battery level?", "Brightness up.",
    "Set the brightness to fifty percent.", "Volume down.", "Never mind.", "Repeat that.",
    "Set a timer for ten minutes called pasta.", "Turn the volume down.",
)
QUESTIONS = (
    "What is the capital of France?", "Who wrote Romeo and Juliet?", "How far away is the moon?",
    "What is the tallest mountain in the world?", "How many legs does a spider have?",
    "What language do people speak in Brazil?", "What is the boiling point of water?",
    "Who painted the Mona Lisa?", "What is the largest ocean?", "How many days are in a leap year?",
    "What is photosynthesis?", "Why is the sky blue?", "What is the speed of light?",
    "Who was the first person on the moon?", "What is the capital of Japan?", "How do bees make honey?",
    "What is the chemical symbol for gold?", "How many planets are in the solar system?",
    "What is the largest animal on Earth?", "Give me a synonym for happy.",
)
# A whole command, then more of the same command after a short gap (a breath between words): the command's
# end on its words at the pause ([vad] command_silence_ms) must not cut it there ("cut" counts the ones it did).
# The last two are closed commands (nothing in the grammar follows them: [vad] closed_command_silence_ms), the
# first four only whole ones (command_silence_ms).
GAPPED = (("Set a timer for five minutes", "called pasta."), ("Cancel the timer", "called tea."),
          ("Set a timer for ten minutes", "for the eggs."), ("Take a photo", "of the sunset."),
          ("Volume down", "a little bit."), ("Repeat that", "one more time."))
GAPS_S = (0.1, 0.15)
EXPECTED_KIND = {"commands": "command", "questions": "query", "recorded": "query", "paused": "query",
                 "offline": "query", "gapped": "command"}
STAGES = ("endpoint", "transcript", "intent", "route", "first_token", "first_audio")
WAKE = "Hey vox lens."


async def _one(cfg: Config, models, wav_dir: Path, wake_pcm: np.ndarray, text: str, utt: np.ndarray,
               end: int) -> dict | None:
    """The wake phrase, then `utt` (its voice ends at sample `end`), played in real time to the whole device."""
    from device.app import run_device

    lead = np.zeros(int(0.4 * SAMPLE_RATE_HZ), np.int16)
    gap = np.zeros(int(0.3 * SAMPLE_RATE_HZ), np.int16)
    tail = np.zeros(int(1.2 * SAMPLE_RATE_HZ), np.int16)
    audio = np.concatenate([lead, wake_pcm, gap, utt, tail])
    true_end_at_s = (len(lead) + len(wake_pcm) + len(gap) + end) / SAMPLE_RATE_HZ
    wav = wav_dir / "utterance.wav"
    write_wav(wav, audio, SAMPLE_RATE_HZ)
    events: list[dict] = []
    source = LagProbe(WavSource(wav, realtime=True, block_samples=cfg.audio.block_samples))
    await run_device(cfg, models, source, MemorySink(realtime=False), emit=events.append, linger_s=30.0)
    ends = [e for e in events if e["event"] == "speech_end"]
    turns = [e for e in events if e["event"] == "turn"]
    if not ends or not turns:
        return {"text": text, "ok": False, "why": "no wake word or no endpoint", "events": len(events)}
    # The turn's timings are measured from the VAD's end of speech; shift them to the true end.
    shift_ms = (ends[0]["at_s"] - true_end_at_s) * 1000
    timings = {k: round(v + shift_ms, 1) for k, v in turns[0]["timings_ms"].items()}
    heard = next((e["text"] for e in events if e["event"] == "transcript_final"), "")
    preemptive = {"sent": sum(e["event"] == "preemptive" for e in events),
                  "used": sum(e["event"] == "preemptive_used" for e in events),
                  "wasted": sum(e["event"] == "preemptive_wasted" for e in events),
                  "wasted_done": sum(e["event"] == "preemptive_wasted" and e["gateway_done"] for e in events),
                  "head_start_ms": [e["head_start_ms"] for e in events if e["event"] == "preemptive_used"]}
    rechecks = [e for e in events if e["event"] == "command_recheck"]
    recheck = {"rechecked": bool(rechecks), "taken": rechecks[0]["command"] if rechecks else "",
               "ms": rechecks[0]["ms"] if rechecks else 0.0}
    return {"text": text, "heard": heard, "ok": "first_audio" in timings, "kind": turns[0]["kind"],
            "turns": len(turns), "cut": ends[0]["at_s"] < true_end_at_s - 0.1, "end_reason": ends[0]["reason"],
            "route": turns[0]["route"], "outcome": turns[0]["outcome"], "timings_ms": timings,
            "vad_minus_true_end_ms": round(shift_ms, 1), "audio_lag_max_ms": source.max_lag_ms,
            "preemptive": preemptive, "command_recheck": recheck}


class LagProbe:
    """Wraps a real-time source and records how late the audio loop takes each frame after it was captured.

    Why: under load the device must keep up with the microphone; a frame taken late delays every stage
    behind it, and a microphone's queue would drop frames. The maximum lag is that margin, measured."""

    def __init__(self, source: WavSource) -> None:
        self.source = source
        self.max_lag_ms = 0.0

    async def __aiter__(self):
        loop = asyncio.get_running_loop()
        start = loop.time()
        captured = start
        async for frame in self.source:
            captured += len(frame) / SAMPLE_RATE_HZ   # a block is delivered once fully captured
            self.max_lag_ms = max(self.max_lag_ms, round((loop.time() - captured) * 1000, 1))
            yield frame


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _waterfall_png(result: dict, path: Path) -> None:
    """One bar per kind and CPU condition: when each stage completed (p50), idle and loaded side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{kind} ({re.sub(r' [(].*?[)]', '', name)})", run_result[kind]["stages_p50_ms"])
            for kind in ("commands", "questions") for name, run_result in result["runs"].items() if kind in run_result]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.55 * len(bars)))
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd"]
    for row, (_, stages) in enumerate(bars):
        prev = 0.0
        for i, stage in enumerate(STAGES):
            at = stages.get(stage)
            if at is None or at < prev:
                continue
            ax.barh(row, at - prev, left=prev, color=colors[i], label=stage)
            prev = at
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    ax.set_yticks(range(len(bars)), [label for label, _ in bars])
    ax.invert_yaxis()
    ax.set_xlabel("ms after the true end of speech (p50 of each stage's completion)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _spoken(texts, speak) -> list[tuple[str, np.ndarray, int]]:
    return [(text, speak(text), voiced_bounds(speak(text))[1]) for text in texts]


def _gapped(speak, quick: bool) -> list[tuple[str, np.ndarray, int]]:
    """GAPPED's two halves, trimmed to their voice and joined by each of GAPS_S of silence."""
    cases = []
    for first, rest in GAPPED[:2] if quick else GAPPED:
        a, b = speak(first), speak(rest)
        a, b = a[: voiced_bounds(a)[1]], b[voiced_bounds(b)[0]:]
        for gap in GAPS_S:
            pcm = np.concatenate([a, np.zeros(int(gap * SAMPLE_RATE_HZ), np.int16), b, np.zeros(SAMPLE_RATE_HZ // 5, np.int16)])
            cases.append((f"{first} | {int(gap * 1000)} ms | {rest}", pcm, len(a) + int(gap * SAMPLE_RATE_HZ) + len(b)))
    return cases


def recorded(quick: bool) -> dict[str, list[tuple[str, np.ndarray, int]]]:
    """Real recordings (../shared/eval/speech) as questions: whole, and with a 0.4-0.7 s pause spliced between two
    words (bench/endpoint.py's cases), where a preemptive turn sent at the pause is wasted when the user goes on."""
    from bench.endpoint import build_cases

    whole, spliced = build_cases(quick)
    seen: set[str] = set()
    paused = [c for c in spliced if not (c.name.split("@")[0] in seen or seen.add(c.name.split("@")[0]))]
    refs = _references()
    return {"recorded": [(refs[c.name], c.pcm, c.true_end) for c in whole],
            "paused": [(refs[c.name.split("@")[0]], c.pcm, c.true_end) for c in paused]}


def _references() -> dict[str, str]:
    import csv

    from bench.speech import EVAL_DIR

    with open(EVAL_DIR / "manifest.tsv", encoding="utf-8") as fh:
        return {r["file"]: r["reference_transcript"] for r in csv.DictReader(fh, delimiter="\t")}


KINDS = ("commands", "questions", "recorded", "paused", "offline", "gapped")


async def _run_kinds(variants: dict[str, tuple[Config, Config]], models, wav_dir: Path, wake_pcm: np.ndarray,
                     speak, n: int, real: dict[str, list], kinds: tuple[str, ...] = KINDS) -> dict[str, dict]:
    """Every utterance once per variant (name -> (device config, offline config)), the variants one after the
    other for each utterance so that a shared machine's drift falls on both; a summary per variant and kind.

    The order alternates from one utterance to the next: the small tier keeps the last prompt in its KV cache, so
    a question played again right after costs it one prompt token (~100 ms to the first token instead of ~300),
    and a fixed order handed that to the second variant every time."""
    results: dict[str, dict] = {name: {"load_avg_start": list(os.getloadavg())} for name in variants}
    for kind, items, offline in (("commands", lambda: _spoken(COMMANDS[:n], speak), False),
                                 ("questions", lambda: _spoken(QUESTIONS[:n], speak), False),
                                 ("recorded", lambda: real["recorded"], False), ("paused", lambda: real["paused"], False),
                                 ("offline", lambda: _spoken(QUESTIONS[: max(2, n // 4)], speak), True),
                                 ("gapped", lambda: _gapped(speak, n < 20), False)):
        if kind not in kinds:
            continue
        items = items()
        rows: dict[str, list[dict]] = {name: [] for name in variants}
        for i, (text, utt, end) in enumerate(items):
            for name, (device_cfg, offline_cfg) in play_order(variants, i):
                row = await _one(offline_cfg if offline else device_cfg, models, wav_dir, wake_pcm, text, utt, end)
                rows[name].append(row)
                first = row.get("timings_ms", {}).get("first_audio")
                print(f"  {kind[:-1]:8} {text:45} -> {row.get('heard', '')!r:50} "
                      f"{f'{first:6.0f} ms' if first is not None else 'no audio'}  {name}", flush=True)
        for name in variants:
            results[name][kind] = _kind_summary(kind, rows[name])
    for result in results.values():
        result["load_avg_end"] = list(os.getloadavg())
    return results


def play_order(variants: dict[str, tuple[Config, Config]], i: int) -> list[tuple[str, tuple[Config, Config]]]:
    """The variants in the order utterance `i` plays them: as given on even utterances, reversed on odd ones."""
    order = list(variants.items())
    return order if i % 2 == 0 else order[::-1]


def _kind_summary(kind: str, rows: list[dict]) -> dict:
    """One kind's rows -> voice-to-voice, the stages' p50 and the preemptive counts."""
    ok = [r for r in rows if r["ok"]]
    # The waterfall only uses turns understood as intended (a misheard command that went to the
    # gateway would mix a model's stages into the commands' bar); voice-to-voice counts them all.
    typical = [r for r in ok if r["kind"] == EXPECTED_KIND[kind]] or ok
    return {
        "n": len(rows), "ok": len(ok), "understood_as_intended": len(typical),
        "voice_to_voice_ms": summary([r["timings_ms"]["first_audio"] for r in ok]),
        "stages_p50_ms": {s: round(float(np.percentile([r["timings_ms"][s] for r in typical if s in r["timings_ms"]], 50)), 1)
                          for s in STAGES if sum(s in r["timings_ms"] for r in typical) > len(typical) // 2},
        "audio_lag_max_ms": max((r.get("audio_lag_max_ms", 0.0) for r in rows), default=0.0),
        "preemptive": _preemptive_summary(rows),
        "command_recheck": {"rechecked": sum(r.get("command_recheck", {}).get("rechecked", False) for r in rows),
                            "taken": sum(bool(r.get("command_recheck", {}).get("taken")) for r in rows),
                            "ms": summary([r["command_recheck"]["ms"] for r in rows
                                           if r.get("command_recheck", {}).get("rechecked")])},
        "utterances": rows,
    }


def _preemptive_summary(rows: list[dict]) -> dict:
    """Questions sent before the endpoint: adopted by the final, wasted (cancelled), and the adopted ones' head start."""
    pre = [r["preemptive"] for r in rows if "preemptive" in r]
    head = [ms for p in pre for ms in p["head_start_ms"]]
    return {"sent": sum(p["sent"] for p in pre), "used": sum(p["used"] for p in pre),
            "wasted": sum(p["wasted"] for p in pre), "head_start_ms": summary(head),
            "wasted_after_gateway_answered": sum(p.get("wasted_done", 0) for p in pre),
            "sent_after_true_end_ms": summary([r["timings_ms"]["preempt"] for r in rows
                                               if "preempt" in r.get("timings_ms", {})]),
            "cut": sum(bool(r.get("cut")) for r in rows)}


async def _bench(args: argparse.Namespace) -> dict:
    from bench.busy import busy_workers
    from device.app import load_models
    from gateway.server import start_gateway

    cfg = load_config()  # defaults + $VOXLENS_CONFIG + VOXLENS_* variables, like the device
    cfg = replace(cfg, gateway=replace(cfg.gateway, host="127.0.0.1",
                                       small=replace(cfg.gateway.small, max_tokens=48),
                                       big=BackendConfig(kind="none")))
    models = await asyncio.to_thread(load_models, cfg)
    gw = await start_gateway(cfg.gateway, cfg.tools, cfg.router, port=0)
    from device.demo import user_voice

    cache: dict[str, np.ndarray] = {}
    user = user_voice()  # the user is not the assistant's voice (see device/demo.py)

    def speak(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = user(text)
        return cache[text]

    wake_pcm = speak(WAKE)
    n = 4 if args.quick else 20
    only = tuple(k.strip() for k in (getattr(args, "kinds", "") or ",".join(KINDS)).split(",") if k.strip())
    if unknown := set(only) - set(KINDS):
        raise SystemExit(f"bench voice --kinds: unknown {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    real = recorded(args.quick) if {"recorded", "paused"} & set(only) else {}
    result: dict = {"machine": {"cpus": os.cpu_count()}, "preemptive": cfg.device.preemptive, "runs": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            device_cfg = replace(cfg, device=replace(cfg.device, gateway=f"127.0.0.1:{gw.port}",
                                                     media_dir=f"{tmp}/media", follow_up_s=0.5))
            offline_cfg = replace(device_cfg, device=replace(device_cfg.device, gateway=f"127.0.0.1:{_free_port()}"))
            variants = {"": (device_cfg, offline_cfg)}
            if getattr(args, "ab", ""):
                variants = {", as configured": variants[""],
                            f", {args.ab}": (with_setting(device_cfg, args.ab), with_setting(offline_cfg, args.ab))}
            elif getattr(args, "ab_preemptive", False):
                variants = {f", preemptive {'on' if on else 'off'}": tuple(
                    replace(c, device=replace(c.device, preemptive=on)) for c in (device_cfg, offline_cfg))
                    for on in (False, True)}
            print("idle:")
            for suffix, run in (await _run_kinds(variants, models, Path(tmp), wake_pcm, speak, n, real, only)).items():
                result["runs"][f"idle{suffix}"] = run
            if args.load:
                with busy_workers(args.load) as kinds:
                    name = f"load {args.load} ({', '.join(kinds)})"
                    print(f"{name}:")
                    for suffix, run in (await _run_kinds(variants, models, Path(tmp), wake_pcm, speak, n,
                                                         real, only)).items():
                        result["runs"][f"{name}{suffix}"] = run
    finally:
        await gw.stop(0.5)
    return result


def with_setting(cfg: Config, settings: str) -> Config:
    """`cfg` with settings changed, written as on the command line: "vad.closed_command_silence_ms=128", several
    joined by commas ("audio.block_ms=80,vad.command_silence_ms=128")."""
    for setting in settings.split(","):
        cfg = _with_one(cfg, setting)
    return cfg


def _with_one(cfg: Config, setting: str) -> Config:
    key, eq, value = setting.partition("=")
    section, dot, name = key.strip().partition(".")
    part = getattr(cfg, section, None)
    if not (eq and dot) or part is None or not hasattr(part, name):
        raise SystemExit(f"bench voice --ab {setting!r}: write SECTION.NAME=VALUE with a setting of the config, "
                         "e.g. vad.command_silence_ms=96 (docs/voxlens.example.toml lists them)")
    current = getattr(part, name)
    try:
        new = value.strip().lower() in ("1", "true", "on", "yes") if isinstance(current, bool) else type(current)(value)
    except ValueError:
        raise SystemExit(f"bench voice --ab {setting!r}: {value!r} is not a {type(current).__name__}") from None
    return replace(cfg, **{section: replace(part, **{name: new})})


def _table(result: dict) -> None:
    print("voice-to-voice = true end of speech -> first output sample; stages = when each stage completed (p50, ms);")
    print("lag = the most the audio loop took a frame after it was captured (real time kept if small)")
    width = max(len(name) for name in result["runs"]) + 16
    print(f"{'':10} {'cpu':<{width}} {'n ok':>6} {'p50':>7} {'p90':>7}   " + " ".join(f"{s:>11}" for s in STAGES)
          + f" {'lag max':>8}")
    for kind, target in (("commands", 200), ("questions", 500), ("recorded", 500), ("paused", 500), ("offline", 1000),
                         ("gapped", 200)):
        for name, run_result in result["runs"].items():
            if kind not in run_result:
                continue
            r = run_result[kind]
            v = r["voice_to_voice_ms"]
            label = f"{name}, load avg {run_result['load_avg_end'][0]:.1f}"  # 1-min average at the run's end
            print(f"{kind:10} {label:<{width}} {r['ok']:>3}/{r['n']:<2} {v['p50']:>7} {v['p90']:>7}   "
                  + " ".join(f"{r['stages_p50_ms'].get(s, float('nan')):>11}" for s in STAGES)
                  + f" {r['audio_lag_max_ms']:>8}")
        if any(kind in r for r in result["runs"].values()):
            print(f"{'':10} (target p50 <= {target} ms)")
    print(f"preemptive generation ([device] preemptive = {str(result.get('preemptive')).lower()} unless a run says): "
          "questions sent on a settled partial; used = adopted by the final, wasted = cancelled")
    for kind in ("commands", "questions", "recorded", "paused", "gapped"):
        for name, run_result in result["runs"].items():
            if kind not in run_result:
                continue
            p = run_result[kind]["preemptive"]
            print(f"{kind:10} {name:<{width}} sent {p['sent']:>3}  used {p['used']:>3}  wasted {p['wasted']:>3}  "
                  f"head start p50 {p['head_start_ms']['p50']} / p90 {p['head_start_ms']['p90']} ms  "
                  f"sent p50 {p['sent_after_true_end_ms']['p50']} ms after the true end  cut {p['cut']}  "
                  f"wasted after the gateway answered {p['wasted_after_gateway_answered']}")
    print("understood as intended (a command run on the device, a question asked); rechecked ([device] "
          "command_recheck): short near-miss commands heard again with the command prompt, taken = it found one")
    for kind in KINDS:
        for name, run_result in result["runs"].items():
            if kind not in run_result:
                continue
            r = run_result[kind]
            look = r["command_recheck"]
            print(f"{kind:10} {name:<{width}} {r['understood_as_intended']:>3}/{r['n']:<3} rechecked {look['rechecked']:>3}"
                  f"  taken {look['taken']:>3}  recheck p50 {look['ms']['p50']} ms")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    result = asyncio.run(_bench(args))
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(f"\nvoxlens bench voice ({result['machine']['cpus']} CPUs)")
    _table(result)
    out = write_json(args.out, result)
    png = out.with_suffix(".png")
    _waterfall_png(result, png)
    print(f"wrote {out} and {png} in {result['elapsed_s']} s")
    return 0
