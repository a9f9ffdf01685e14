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

Text variants ("turn 0.7 | text p>=bar", issue 11): Smart Turn p >= 0.7 ends the turn as before, or the
transcript at the pause reads as a whole sentence (`complete_sentence`) and Smart Turn p >= bar (0, 0.05,
0.2). The transcript is the device's: the utterance is transcribed alongside as StreamingTranscription
would (`StreamSim`: its pass schedule on the stream's clock, each pass decoded for real by the device's
SpeechToText, whisper-tiny.en with the default [stt]), so it exists only once the pass over the pause could
start (after any partial in flight) and has run. The decision comes at the later of Smart Turn's verdict
(asked on the frame that completes 120 ms of silence, + its cost) and that transcript, and counts only if
voice has not come back by then. Both models are timed one at a time (on the device they share the CPUs).
Measured (`voxlens bench endpoint`, 2 cores, idle / 2 busy workers), against Smart Turn p>=0.7 alone at
396 / 445 ms p50, 1209 ms p90, 13/48 pauses cut: bar 0.05 gives p50 296 / 407, p90 622 / 732 ms, but
17 / 16 of 48 cut; bar 0.2: 347 / 434, 892 / 951 ms, 17 / 16 cut; bar 0: 294 / 400, 442 / 529 ms, 23 / 21
cut (Smart Turn p>=0.5 alone: 294 / 352, 1098 ms, 18/48). The extra cuts are fragments Whisper closes as
sentences ("will we ever forget?", "Not at this person.") with Smart Turn p 0.38-0.63, the same range as
the finished sentences the rule rescues (0.07-0.63; 5 of 6 above 0.36), so no bar keeps the cut-offs at
Smart Turn's own.

Veto ("turn 0.7 + veto", the device's [vad] text_veto): Smart Turn p >= 0.7 ends the turn at a pause only
once the settled transcript of that pause exists and does not end open (`device.turn_text.ends_open`: last
word an article, conjunction, preposition or possessive, or Whisper's "...", comma, dash), at the later of
its verdict (+ cost) and that transcript; open words veto it and the silence rule (1 s) goes on; no
transcript by 400 ms of silence: the verdict stands there. "| text p>=0.05" adds the rescue above. One run
per clip vetoes every "complete" (`run_text_case(through=True)`, through Endpointer.text_verdict) and
`veto_outcome` decides each variant from it. A pause is moot when voice comes back before it is decided, in
the device's order: a verdict that finds its transcript already there ends on its own frame, even if voice
came while Smart Turn ran (`text_outcome` moots those too, so the "text p>=bar" rows spare 2 pauses and 1
whole clip idle below that the combined row cuts: "Sunday is the best.", "He was not an old-spoge.").
Measured (the run of the figures below the rescue's, idle / busy), against Smart Turn p>=0.7 alone at
396 / 453 ms p50, 1209 ms p90, 13 / 13 of 48 pauses cut: the veto gives p50 423 / 587, p90 1209 / 1209 ms,
9 / 8 of 48 cut, whole clips 1/26 as alone. It saved "10 of", "Eight of spades, four of-", "and Mr.", "We
are sh-" (Smart Turn p 0.79-0.97; busy also one pause where voice came back while the words were awaited)
and vetoed no whole sentence; a whole sentence's "complete" waits for its transcript p50/p90 22/79 ms idle,
51/221 ms busy, where 10 ends met the 400 ms bound with no words. Still cut: fragments Whisper ends on a
word a sentence can end on ("God bless.", "7 of course", "4", "Unless to be rather up."). Veto + rescue
p>=0.05: p50 337 / 472, p90 637 / 745 ms, 15 / 11 of 48 cut.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import re
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from bench.speech import EVAL_DIR, summary
from device.audio import SAMPLE_RATE_HZ, read_wav, split_frames
from voxlens.config import SttConfig, VadConfig

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


# The text rule: Whisper ends a sentence it heard whole with "." "?" "!", but it closes fragments the same way
# ("what's the weather in."), so the last word must be one that can end a sentence, and a couple of words
# ("Five five.", "Thank you.") are as often a fragment or a mishearing. English only: the eval set is English.
# Particles that end commands ("turn it on") stay out: calling a sentence unfinished only waits, as before.
OPEN_WORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "nor", "because", "if", "unless", "whether", "although", "than", "of",
    "to", "in", "for", "with", "from", "at", "by", "about", "into", "onto", "upon", "between", "toward", "towards",
    "without", "via", "per", "my", "your", "our", "their", "its", "mr", "mrs", "ms", "dr", "st"))
MIN_WORDS = 3
_EDGE = re.compile(r"^[^\w]+|[^\w]+$")


def complete_sentence(text: str, min_words: int = MIN_WORDS) -> bool:
    """Does a Whisper transcript read as a finished English sentence? At least `min_words` words, ends in
    "." "?" or "!" (not "..." / "…"), and its last word is no article, conjunction or preposition."""
    body = text.strip().rstrip("\"')]’”").rstrip()
    if not body.endswith((".", "?", "!")) or body.endswith(("...", "…")):
        return False
    words = [w for w in (_EDGE.sub("", t) for t in body.split()) if w]
    return len(words) >= min_words and words[-1].lower() not in OPEN_WORDS


TEXT_BARS = (0.0, 0.05, 0.2)   # the Smart Turn p a transcript that reads as a whole sentence still needs


@dataclass(frozen=True)
class Pass:
    """One pass of the streaming transcription, on the stream's clock (samples)."""
    start: float     # when it started: the thread was free and audio waited (free_at is fractional)
    covers: int      # stream offset its audio ends at
    ready: float     # start + its measured cost: when its transcript exists
    final: bool      # decoded as a final (what `settled()` may return)
    text: str
    cost_ms: float


class StreamSim:
    """`StreamingTranscription._run`'s schedule (device/stt.py) on the stream's clock, with real decodes.

    Frames arrive in real time; one thread decodes. A pass starts when the thread is free and either
    `partial_interval_ms` of new audio with voice or a pause (a silent frame after speech) waits; it
    covers every sample pushed by then. Each pass is decoded for real by the device's SpeechToText and
    its measured cost moves the clock, so a transcript exists at (when its pass could start) + (its cost):
    a pause that finds a partial in flight waits for it, as on the device."""

    def __init__(self, stt, pcm: np.ndarray, offset: int, first: int) -> None:
        self.stt, self.pcm, self.offset = stt, pcm, offset
        self.interval = int(stt.cfg.partial_interval_ms * MS)
        self.final_always = stt.cfg.final_beam_size == stt.cfg.beam_size
        self.samples = self.voiced_end = first
        self.pause, self.started_at, self.free_at = False, 0, float("-inf")
        self.passes: list[Pass] = []
        self._maybe_start(offset + first)

    def push(self, n: int, voiced: bool) -> None:
        before = self.offset + self.samples
        if before < self.free_at < before + n:   # the thread came free between frames: it looks once
            self._maybe_start(self.free_at)
        was_speech = self.voiced_end == self.samples
        self.samples += n
        if voiced:
            self.voiced_end = self.samples
        elif was_speech:
            self.pause = True
        if self.free_at <= self.offset + self.samples:
            self._maybe_start(self.offset + self.samples)

    def _maybe_start(self, now: float) -> None:
        waiting = (self.samples - self.started_at >= self.interval and self.voiced_end > self.started_at) \
            or (self.pause and self.samples > self.started_at)
        if not waiting:
            return
        final = self.pause or self.final_always
        self.pause, self.started_at = False, self.samples
        t = self.stt.transcribe(self.pcm[self.offset : self.offset + self.samples])
        cost_ms = sum(r.duration_ms for r in t.timings.records)
        self.passes.append(Pass(now, self.offset + self.samples, now + cost_ms * MS, final, t.text, cost_ms))
        self.free_at = now + cost_ms * MS

    def settled(self, voiced_end: int) -> Pass | None:
        """The first final pass that covers every voiced frame up to `voiced_end` (stream offset)."""
        return next((p for p in self.passes if p.final and p.covers >= voiced_end), None)


@dataclass
class Pause:
    asked_at: int          # stream offset of the frame on which Smart Turn was asked
    cost_ms: float         # Smart Turn's cost on that call
    p: float
    voiced_end: int        # stream offset of the last voiced frame before the pause
    returned_at: int | None = None   # start of the frame whose voice ended the pause


def run_text_case(case: Case, vad, turn, stt, through: bool = False) -> tuple[dict, list[Pause], StreamSim | None]:
    """Smart Turn p>=0.7 as on the device, with the utterance transcribed as on the device alongside.

    Returns the plain run's result, every pause Smart Turn was asked about, and the transcription's passes;
    `text_outcome` decides from them where each text variant ends. `through`: the device's veto path with
    every "complete" vetoed (`Endpointer.text_verdict`), so the run goes on to the silence rule and records
    every pause; `veto_outcome` then decides where the veto variants end."""
    from device.vad import Endpointer

    vad.reset()
    ep = Endpointer(replace(VadConfig(), smart_turn_threshold=turn.threshold, text_veto=True), vad, turn)
    ep.await_text = through
    frames = split_frames(case.pcm)
    pcm = np.concatenate(frames)
    sim: StreamSim | None = None
    pauses: list[Pause] = []
    received = 0
    for frame in frames:
        asked = len(ep.verdicts)
        events = ep.process(frame)
        received += len(frame)
        start = next((e for e in events if e.kind == "speech_start"), None)
        if start is not None and sim is None:
            sim = StreamSim(stt, pcm, received - len(start.audio), len(start.audio))
        elif sim is not None:
            sim.push(len(frame), ep.voiced)
            if pauses and pauses[-1].returned_at is None and sim.voiced_end + sim.offset > pauses[-1].voiced_end:
                pauses[-1].returned_at = received - len(frame)
        if len(ep.verdicts) > asked and sim is not None:
            v = ep.verdicts[-1]
            pauses.append(Pause(received, sum(t.duration_ms for t in v.timings.records), v.probability,
                                sim.offset + sim.voiced_end))
            if ep.awaiting_text:
                ep.text_verdict(True)
        ends = [e for e in events if e.kind == "speech_end"]
        if ends:
            end = ends[0]
            cost_ms = pauses[-1].cost_ms if end.reason == "smart_turn" and len(ep.verdicts) > asked else 0.0
            return ({"reason": end.reason, "at": end.detected_sample + cost_ms * MS,
                     "cut": _cut(case, end.detected_sample, end.sample)}, pauses, sim)
    return {"reason": "none", "at": None, "cut": False}, pauses, sim


def _cut(case: Case, decided: float, voiced_end: int) -> bool:
    """Ended before the true end (whole clip), or on the spliced pause (the speech after it is left out)."""
    return decided < case.true_end - 100 * MS if case.pause is None else voiced_end < case.pause[1]


def text_outcome(case: Case, plain: dict, pauses: list[Pause], sim: StreamSim | None, bar: float,
                 threshold: float = 0.7) -> dict:
    """End at the first pause Smart Turn did not end (p < threshold) whose settled transcript is a complete
    sentence and whose p >= bar, once both exist (the later of Smart Turn's verdict and the transcript),
    unless voice came back first; else where the plain run ended (Smart Turn p >= threshold, silence)."""
    at, reason, cut, p, text = plain["at"], plain["reason"], plain["cut"], None, None
    for pz in pauses:
        done = sim.settled(pz.voiced_end) if sim is not None else None
        if not bar <= pz.p < threshold or done is None or not complete_sentence(done.text):
            continue
        decided = max(pz.asked_at + pz.cost_ms * MS, done.ready)
        if pz.returned_at is not None and decided >= pz.returned_at:
            continue   # the user went on before both answers were in
        if at is None or decided < at:
            at, reason, cut, p, text = decided, "text", _cut(case, decided, pz.voiced_end), pz.p, done.text
        break
    return {"case": case.name, "reason": reason, "cut": bool(cut),
            "delay_ms": None if at is None else round((at - case.true_end) / MS, 1),
            "turn_p": None if p is None else round(p, 3), "text": text}


TEXT_WAIT_MS = 400   # the device's bound: a held "complete" with no transcript by this much silence ends anyway


def veto_outcome(case: Case, silence: dict, pauses: list[Pause], sim: StreamSim | None, bar: float | None = None,
                 threshold: float = 0.7, wait_ms: int = TEXT_WAIT_MS) -> dict:
    """The veto: Smart Turn p >= threshold ends the turn at a pause only once the settled transcript of that
    pause exists and does not end open (`device.turn_text.ends_open`), at the later of its verdict (+ cost)
    and that transcript; one that ends open vetoes it. No transcript by `wait_ms` of silence: the verdict
    stands, at that bound. With `bar`, also the rescue: a pause Smart Turn doubts (bar <= p < threshold) ends
    once its transcript reads as a whole sentence (`text_outcome`'s rule). A pause is moot when voice comes
    back before it is decided, as on the device: the frame that brings voice clears the hold, while a verdict
    that finds the transcript already there ends on its own frame (frames wait while Smart Turn runs).
    Else the silence rule: `silence`, the `through` run's end."""
    from device.turn_text import ends_open

    at, reason, cut, p, text = silence["at"], silence["reason"], silence["cut"], None, None
    vetoed = []
    for pz in pauses:
        verdict = pz.asked_at + pz.cost_ms * MS
        done = sim.settled(pz.voiced_end) if sim is not None else None
        if pz.p >= threshold:
            bound = pz.voiced_end + wait_ms * MS
            heard = done is not None and done.ready <= max(bound, verdict)
            decided = max(verdict, done.ready) if heard else max(verdict, bound)
            why = "smart_turn"
        elif bar is not None and pz.p >= bar and done is not None and complete_sentence(done.text):
            heard, decided, why = True, max(verdict, done.ready), "text"
        else:
            continue
        if pz.returned_at is not None and verdict < decided and pz.returned_at < decided:
            continue   # the user went on before the words came
        if why == "smart_turn" and heard and ends_open(done.text, "en"):
            vetoed.append({"p": round(pz.p, 3), "text": done.text, "cut_here": _cut(case, decided, pz.voiced_end)})
            continue
        if at is None or decided < at:
            at, reason, cut, p = decided, why, _cut(case, decided, pz.voiced_end), pz.p
            text = done.text if heard else None
        break
    return {"case": case.name, "reason": reason, "cut": bool(cut),
            "delay_ms": None if at is None else round((at - case.true_end) / MS, 1),
            "turn_p": None if p is None else round(p, 3), "text": text, "vetoed": vetoed}


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


def aggregate(a: list[dict], b: list[dict]) -> dict:
    """One endpointer's figures: delay on the whole clips it did not cut, cut-offs on both sets."""
    ok = [r["delay_ms"] for r in a if r["delay_ms"] is not None and not r["cut"]]
    costs = [c for r in a + b for c in r.get("costs_ms", [])]
    return {"delay_ms": summary(ok), "whole_cut": sum(r["cut"] for r in a), "whole_n": len(a),
            "spliced_cut": sum(r["cut"] for r in b), "spliced_n": len(b),
            "ended_by": {k: sum(r["reason"] == k for r in a) for k in ("silence", "smart_turn", "text")},
            "turn_cost_ms": summary(costs) if costs else None, "whole": a, "spliced": b}


def measure(whole: list[Case], spliced: list[Case], vad, turns, stt=None) -> dict:
    out = {}
    for label, (cfg, turn) in endpointers(turns).items():
        out[label] = aggregate([run_case(c, cfg, vad, turn) for c in whole], [run_case(c, cfg, vad, turn) for c in spliced])
    if stt is not None:
        out.update(measure_text(whole, spliced, vad, turns[0.7], stt))
    return out


def measure_text(whole: list[Case], spliced: list[Case], vad, turn, stt) -> dict:
    """The text variants: one device-like run per clip (Smart Turn + the streaming transcription), every bar."""
    runs = {c.name: run_text_case(c, vad, turn, stt) for c in whole + spliced}
    stt_costs = [q.cost_ms for _, _, sim in runs.values() if sim for q in sim.passes]
    turn_costs = [pz.cost_ms for _, pauses, _ in runs.values() for pz in pauses]
    lags, seen = [], {}
    for name, (_, pauses, sim) in runs.items():
        seen[name] = []
        for pz in pauses:
            done = sim.settled(pz.voiced_end) if sim else None
            if done is not None:
                lags.append((done.ready - pz.voiced_end) / MS)
            seen[name].append({"p": round(pz.p, 3), "text": done.text if done else None,
                               "complete": bool(done and complete_sentence(done.text)),
                               "lag_ms": round((done.ready - pz.voiced_end) / MS, 1) if done else None})
    out = {}
    for bar in TEXT_BARS:
        a = [text_outcome(c, *runs[c.name], bar) | {"pauses": seen[c.name]} for c in whole]
        b = [text_outcome(c, *runs[c.name], bar) | {"pauses": seen[c.name]} for c in spliced]
        out[f"turn 0.7 | text p>={bar}"] = aggregate(a, b) | {
            "turn_cost_ms": summary(turn_costs) if turn_costs else None, "stt_cost_ms": summary(stt_costs),
            "voice_to_transcript_ms": summary(lags) if lags else None}
    out.update(measure_veto(whole, spliced, vad, turn, stt, {n: r[0] for n, r in runs.items()}))
    return out


VETO_BARS = (None, 0.05)   # the veto alone, and with the rescue at the bar measured best above


def measure_veto(whole: list[Case], spliced: list[Case], vad, turn, stt, plain: dict[str, dict]) -> dict:
    """The veto variants: one device-like run per clip that vetoes every "complete" and goes on to the silence
    rule (`run_text_case(through=True)`), decided per variant by `veto_outcome`; against Smart Turn p>=0.7
    alone (`plain`, run_text_case's own), the pauses the veto saved or cost and the whole sentences it delayed."""
    runs = {c.name: run_text_case(c, vad, turn, stt, through=True) for c in whole + spliced}
    stt_costs = [q.cost_ms for _, _, sim in runs.values() if sim for q in sim.passes]
    turn_costs = [pz.cost_ms for _, pauses, _ in runs.values() for pz in pauses]
    out = {}
    for bar in VETO_BARS:
        a = [veto_outcome(c, *runs[c.name], bar) for c in whole]
        b = [veto_outcome(c, *runs[c.name], bar) for c in spliced]
        res = aggregate(a, b) | {"turn_cost_ms": summary(turn_costs) if turn_costs else None,
                                 "stt_cost_ms": summary(stt_costs)}
        alone = {c.name: _delay(c, plain[c.name]) for c in whole}
        later = [r | {"delay_alone_ms": alone[r["case"]]} for r in a if not r["cut"] and r["delay_ms"] is not None
                 and alone[r["case"]] is not None and r["delay_ms"] > alone[r["case"]] + 1]
        res["saved"] = [r for r in b + a if r["cut"] < plain[r["case"]]["cut"]]
        res["lost"] = [r for r in b + a if r["cut"] > plain[r["case"]]["cut"]]
        res["delayed"] = [r for r in later if r["vetoed"] or r["delay_ms"] > r["delay_alone_ms"] + 50]
        # a "complete" on a whole sentence waiting for its transcript (0 when the transcript came first)
        waits = [r["delay_ms"] - alone[r["case"]] for r in a if r["reason"] == "smart_turn" and not r["vetoed"]
                 and plain[r["case"]]["reason"] == "smart_turn" and not r["cut"]]
        res["waited_ms"] = summary(waits) if waits else None
        res["unheard"] = sum(r["reason"] == "smart_turn" and r["text"] is None for r in a + b)   # by the bound
        out["turn 0.7 + veto" + ("" if bar is None else f" | text p>={bar}")] = res
    return out


def _delay(case: Case, result: dict) -> float | None:
    return None if result["at"] is None else round((result["at"] - case.true_end) / MS, 1)


def table(runs: dict[str, dict]) -> str:
    lines = [(f"{'endpointer':<31} {'run':<6} {'delay p50':>9} {'p90':>6} {'max':>6}  {'cut (pause)':>11}  "
              f"{'cut (whole)':>11}  {'by turn+text':>12}  {'turn cost p50/p90':>17}")]
    for run, res in runs.items():
        for label, r in res.items():
            d, c, by = r["delay_ms"], r["turn_cost_ms"], r["ended_by"]
            cost = f"{c['p50']:.0f}/{c['p90']:.0f} ms" if c else "-"
            lines.append(f"{label:<31} {run:<6} {d['p50']:>7.0f}ms {d['p90']:>6.0f} {d['max']:>6.0f}  "
                         f"{r['spliced_cut']:>4}/{r['spliced_n']:<6} {r['whole_cut']:>4}/{r['whole_n']:<6} "
                         f"{by['smart_turn']:>4}+{by['text']:<2}/{r['whole_n']:<3}  {cost:>17}")
    return "\n".join(lines)


def veto_lines(runs: dict[str, dict]) -> str:
    """Per veto variant and run: the pauses it saved and lost against Smart Turn p>=0.7 alone, with the words
    that vetoed or ended them, and the whole sentences it ended later."""
    out = []
    for run, res in runs.items():
        for label, r in res.items():
            if "saved" not in r:
                continue
            w = r["waited_ms"]
            waited = f"p50/p90/max {w['p50']:.0f}/{w['p90']:.0f}/{w['max']:.0f} ms ({w['n']})" if w else "none"
            out.append(f"{label} ({run}): saved {len(r['saved'])}, lost {len(r['lost'])}, "
                       f"delayed {len(r['delayed'])} whole sentences by > 50 ms or a veto; a whole sentence's "
                       f"'complete' waiting for its transcript: {waited}; no transcript by {TEXT_WAIT_MS} ms: "
                       f"{r['unheard']}")
            for x in r["saved"]:
                out.append(f"  saved {x['case']}: vetoed {[v['text'] for v in x['vetoed']]}")
            for x in r["lost"]:
                out.append(f"  lost  {x['case']}: {x['reason']} p {x['turn_p']} on {x['text']!r}")
            for x in r["delayed"]:
                out.append(f"  later {x['case']}: {x['delay_alone_ms']:.0f} -> {x['delay_ms']:.0f} ms ({x['reason']}; "
                           f"vetoed {[v['text'] for v in x['vetoed']]}, ended on {x['text']!r})")
    return "\n".join(out)


def text_lines(runs: dict[str, dict]) -> str:
    """Whisper's cost per pass and last voice -> the transcript that covers it, per run."""
    out = []
    for run, res in runs.items():
        r = next((v for k, v in res.items() if k.startswith("turn 0.7 | text")), None)
        if r is not None:
            c, g = r["stt_cost_ms"], r["voice_to_transcript_ms"]
            out.append(f"{run}: Whisper pass p50/p90 {c['p50']:.0f}/{c['p90']:.0f} ms ({c['n']} passes); last voice -> "
                       f"settled transcript p50/p90 {g['p50']:.0f}/{g['p90']:.0f} ms ({g['n']} pauses)")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from bench.busy import busy_workers
    from device.smart_turn import SmartTurn
    from device.stt import SpeechToText
    from device.vad import SileroVad

    whole, spliced = build_cases(args.quick)
    vad = SileroVad()
    turns = {0.7: SmartTurn(threshold=0.7), 0.5: SmartTurn(threshold=0.5)}
    stt = SpeechToText("whisper-tiny.en", SttConfig())   # the device's model and final-pass settings
    trailing = drift(whole, spliced, turns[0.7])
    runs = {"idle": measure(whole, spliced, vad, turns, stt)}
    with busy_workers(2) as kinds:
        runs["busy"] = measure(whole, spliced, vad, turns, stt)
    print(f"endpointing on {len(whole)} real clips (delay: true end -> endpoint, Smart Turn's cost included) "
          f"and {len(spliced)} spliced with a 400-700 ms pause mid-sentence (cut = ended at the pause); "
          f"busy = {'+'.join(kinds)} workers")
    print(table(runs))
    print(text_lines(runs))
    print(veto_lines(runs))
    print("Smart Turn p>=0.7 by trailing silence: " + "; ".join(
        f"{k}: {v['whole_complete']}/{len(whole)} finished and {v['spliced_complete']}/{len(spliced)} cut mid-sentence "
        f"called complete" for k, v in trailing.items()))
    out = {"trailing_silence": trailing, "machine": platform.platform(), "cpus": __import__("os").cpu_count(), "busy_workers": kinds,
           "whole_n": len(whole), "spliced_n": len(spliced), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0
