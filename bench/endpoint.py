"""`voxlens bench endpoint`: how soon each endpointer ends a finished turn, and how often it cuts one off.

Real recordings only (../shared/eval/speech, 26 clips), in their own room tone:
- delay: the true end of speech (10 ms energy envelope above 5 % of the peak and 3x the clip's noise
  floor) -> the endpoint decision, on each clip with 1.5 s of room tone appended. A Smart Turn decision
  also waits for the model: its measured cost on that call is added (the device asks it in a thread
  while frames queue, so the turn ends that much later; a decision made by silence owes it nothing).
- cut-offs: each clip spliced at up to two word boundaries inside the sentence (faster-whisper word
  timestamps; the cut moved to the quietest 10 ms within 60 ms of the gap's middle), with 400-700 ms
  of room tone inserted there; a cut-off is an endpoint before the speech after the pause. A natural
  clip ended before its true end counts as a cut-off too.
- Idle, then with 2 busy workers (bench/busy.py). Smart Turn's cost per call is printed for both.
Endpointers: silence alone (400 ms, the rule without Smart Turn; 700 ms), a short silence alone (120 ms:
what Smart Turn is meant to buy, without it), and Smart Turn (asked after 120 ms, waiting up to 1 s when
it says unfinished) at thresholds 0.7 (the default) and 0.5. The pauses are 400-700 ms by construction, so
a 700 ms silence cannot cut them: it is there to show the delay that buys, not as a fair cut-off count.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from bench.speech import EVAL_DIR, summary
from device.audio import SAMPLE_RATE_HZ, read_wav, split_frames
from voxlens.config import VadConfig

MS = SAMPLE_RATE_HZ // 1000
LEAD_S, TAIL_S = 0.5, 1.5


@dataclass(frozen=True)
class Case:
    name: str
    pcm: np.ndarray
    true_end: int          # sample where the speech ends
    pause: tuple[int, int] | None = None   # inserted silence [start, end), spliced cases only


def room_tone(clip: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise at the clip's own floor (10th percentile of its 10 ms envelope), so splices do not stand out."""
    env = np.convolve(np.abs(clip.astype(np.float32)), np.ones(160) / 160, mode="same")
    sigma = max(1.0, float(np.percentile(env, 10)) / 0.8)
    return np.clip(rng.normal(0, sigma, n), -32768, 32767).astype(np.int16)


def speech_end(clip: np.ndarray) -> int:
    env = np.convolve(np.abs(clip.astype(np.float32)), np.ones(160) / 160, mode="same")
    bar = max(0.05 * env.max(), 3 * np.percentile(env, 10))
    return int(np.flatnonzero(env > bar)[-1])


def word_gaps(model, clip: np.ndarray) -> list[int]:
    """Cut points between words inside the sentence (not before the first two words nor after the last)."""
    segments, _ = model.transcribe(clip.astype(np.float32) / 32768, word_timestamps=True, beam_size=1)
    words = [w for seg in segments for w in seg.words]
    env = np.convolve(np.abs(clip.astype(np.float32)), np.ones(160) / 160, mode="same")
    cuts = []
    for a, b in pairwise(words[1:]):
        mid = int((a.end + b.start) / 2 * SAMPLE_RATE_HZ)
        lo, hi = max(0, mid - 60 * MS), min(len(clip), mid + 60 * MS)
        if hi - lo > 0 and len(clip) - mid > 300 * MS:
            cuts.append(lo + int(np.argmin(env[lo:hi])))
    return cuts


def build_cases(quick: bool) -> tuple[list[Case], list[Case]]:
    from faster_whisper import WhisperModel

    from models.catalog import resolve

    with open(EVAL_DIR / "manifest.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    rows = rows[::5] if quick else rows
    model = WhisperModel(str(resolve("whisper-tiny.en")), device="cpu", compute_type="int8")
    rng = np.random.default_rng(11)
    whole, spliced = [], []
    for r in rows:
        clip = read_wav(EVAL_DIR / r["file"])
        lead = room_tone(clip, int(LEAD_S * SAMPLE_RATE_HZ), rng)
        tail = room_tone(clip, int(TAIL_S * SAMPLE_RATE_HZ), rng)
        whole.append(Case(r["file"], np.concatenate([lead, clip, tail]), len(lead) + speech_end(clip)))
        gaps = word_gaps(model, clip)
        for cut in sorted(rng.choice(gaps, size=min(2, len(gaps)), replace=False)) if gaps else []:
            gap = room_tone(clip, int(rng.uniform(0.4, 0.7) * SAMPLE_RATE_HZ), rng)
            pcm = np.concatenate([lead, clip[:cut], gap, clip[cut:], tail])
            start = len(lead) + int(cut)
            spliced.append(Case(f"{r['file']}@{cut / SAMPLE_RATE_HZ:.2f}s", pcm,
                                start + len(gap) + speech_end(clip[cut:]), (start, start + len(gap))))
    return whole, spliced


def run_case(case: Case, cfg: VadConfig, vad, turn) -> dict:
    """Feed the case frame by frame (as fast as it goes); the first speech_end is the endpoint."""
    from device.vad import Endpointer

    vad.reset()
    ep = Endpointer(cfg, vad, turn)
    for frame in split_frames(case.pcm):
        asked = len(ep.verdicts)
        ends = [e for e in ep.process(frame) if e.kind == "speech_end"]
        if ends:
            end = ends[0]
            cost_ms = 0.0
            if end.reason == "smart_turn" and len(ep.verdicts) > asked:
                cost_ms = sum(t.duration_ms for t in ep.verdicts[-1].timings.records)
            cut = end.detected_sample < case.true_end - 100 * MS if case.pause is None \
                else end.detected_sample < case.pause[1]
            return {"case": case.name, "reason": end.reason, "cut": bool(cut),
                    "delay_ms": round((end.detected_sample - case.true_end) / MS + cost_ms, 1),
                    "turn_cost_ms": round(cost_ms, 1), "turn_p": end.turn_probability,
                    "costs_ms": [round(sum(t.duration_ms for t in v.timings.records), 1) for v in ep.verdicts]}
    return {"case": case.name, "reason": "none", "cut": False, "delay_ms": None, "costs_ms": []}


def endpointers(turns: dict[float, object]) -> dict[str, tuple[VadConfig, object]]:
    base = VadConfig(smart_turn=False)
    out = {"silence 400 ms": (base, None), "silence 700 ms": (replace(base, silence_ms=700), None),
           "short silence 120 ms": (replace(base, silence_ms=120), None)}
    for thr, turn in turns.items():
        out[f"smart turn p>={thr}"] = (replace(VadConfig(), smart_turn_threshold=thr), turn)
    return out


def drift(whole: list[Case], spliced: list[Case], turn) -> dict:
    """How many finished sentences and mid-sentence cuts Smart Turn calls complete, by trailing silence."""
    out = {}
    for ms in (0, 120, 300):
        w = [turn.predict(c.pcm[: c.true_end + ms * MS]).probability for c in whole]
        s = [turn.predict(c.pcm[: c.pause[0] + ms * MS]).probability for c in spliced]
        out[f"{ms} ms"] = {"whole_complete": sum(p >= turn.threshold for p in w),
                           "spliced_complete": sum(p >= turn.threshold for p in s)}
    return out


def measure(whole: list[Case], spliced: list[Case], vad, turns) -> dict:
    out = {}
    for label, (cfg, turn) in endpointers(turns).items():
        a = [run_case(c, cfg, vad, turn) for c in whole]
        b = [run_case(c, cfg, vad, turn) for c in spliced]
        ok = [r["delay_ms"] for r in a if r["delay_ms"] is not None and not r["cut"]]
        costs = [c for r in a + b for c in r["costs_ms"]]
        out[label] = {"delay_ms": summary(ok), "whole_cut": sum(r["cut"] for r in a), "whole_n": len(a),
                      "spliced_cut": sum(r["cut"] for r in b), "spliced_n": len(b),
                      "ended_by": {k: sum(r["reason"] == k for r in a) for k in ("silence", "smart_turn")},
                      "turn_cost_ms": summary(costs) if costs else None, "whole": a, "spliced": b}
    return out


def table(runs: dict[str, dict]) -> str:
    lines = [(f"{'endpointer':<22} {'run':<6} {'delay p50':>9} {'p90':>6} {'max':>6}  {'cut (pause)':>11}  "
              f"{'cut (whole)':>11}  {'by smart turn':>13}  {'turn cost p50/p90':>17}")]
    for run, res in runs.items():
        for label, r in res.items():
            d, c = r["delay_ms"], r["turn_cost_ms"]
            cost = f"{c['p50']:.0f}/{c['p90']:.0f} ms" if c else "-"
            lines.append(f"{label:<22} {run:<6} {d['p50']:>7.0f}ms {d['p90']:>6.0f} {d['max']:>6.0f}  "
                         f"{r['spliced_cut']:>4}/{r['spliced_n']:<6} {r['whole_cut']:>4}/{r['whole_n']:<6} "
                         f"{r['ended_by']['smart_turn']:>6}/{r['whole_n']:<6}  {cost:>17}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from bench.busy import busy_workers
    from device.smart_turn import SmartTurn
    from device.vad import SileroVad

    whole, spliced = build_cases(args.quick)
    vad = SileroVad()
    turns = {0.7: SmartTurn(threshold=0.7), 0.5: SmartTurn(threshold=0.5)}
    trailing = drift(whole, spliced, turns[0.7])
    runs = {"idle": measure(whole, spliced, vad, turns)}
    with busy_workers(2) as kinds:
        runs["busy"] = measure(whole, spliced, vad, turns)
    print(f"endpointing on {len(whole)} real clips (delay: true end -> endpoint, Smart Turn's cost included) "
          f"and {len(spliced)} spliced with a 400-700 ms pause mid-sentence (cut = ended at the pause); "
          f"busy = {'+'.join(kinds)} workers")
    print(table(runs))
    print("Smart Turn p>=0.7 by trailing silence: " + "; ".join(
        f"{k}: {v['whole_complete']}/{len(whole)} finished and {v['spliced_complete']}/{len(spliced)} cut mid-sentence "
        f"called complete" for k, v in trailing.items()))
    out = {"trailing_silence": trailing, "machine": platform.platform(), "cpus": __import__("os").cpu_count(), "busy_workers": kinds,
           "whole_n": len(whole), "spliced_n": len(spliced), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0
