"""`voxlens bench speech`: where the device speech stages stand against their targets.

Measures, on this machine (noisy when others share the CPU; the numbers say so):
- STT accuracy and speed: WER (Whisper's English normaliser: case, punctuation, numbers)
  and real-time factor on ../shared/eval/speech, short encoder window vs the stock 30 s.
- The device's final transcript vs stock faster-whisper: each eval clip played in real time through
  the device's own utterance stage (Silero + Smart Turn endpointing, transcribing while speaking),
  the finals' WER beside `WhisperModel.transcribe(audio, beam_size=5)` on the same model, for the
  final pass greedy and beam 5, idle and with 2 busy workers, with end -> final latency.
- STT end of speech -> final transcript: the endpointer's speech_end decision to the final
  text, transcribing while the user speaks (real-time paced) vs transcribing afterwards.
- Command biasing: WER on Piper-spoken commands (clean and with noise) with and without an
  initial prompt listing the command vocabulary, and its effect on the general eval set.
- TTS time to first audio: a short answer, a long first sentence (cut at its first clause
  vs not cut).
- VAD: end-of-speech detection delay (decision minus the true end of the voice) and start error.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import platform
import statistics
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.cli import write_json
from device.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ, read_wav, resample, split_frames
from voxlens.config import SttConfig, TtsConfig, VadConfig

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "speech"
COMMANDS = (
    "Set a timer for five minutes.", "Volume up.", "Take a photo.", "Turn the brightness down.",
    "Cancel the timer.", "How long is left on my timer?", "Start recording a video.", "Mute.",
    "What time is it?", "What's the battery level?", "Stop.", "Repeat that.",
    "What's the weather in Paris tomorrow?", "What time is it in Tokyo?",
)
COMMAND_PROMPT = ("Volume up, volume down, mute, brightness, take a photo, record a video, set a timer, "
                  "cancel the timer, battery, stop, repeat, weather, time.")
SHORT_ANSWER = "It is twenty one degrees and sunny in Paris right now."
LONG_ANSWER = ("The forecast for Paris tomorrow is mostly sunny in the morning, with clouds building in the "
               "afternoon and a small chance of a shower around six, so you might take an umbrella. "
               "Highs reach twenty degrees.")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(pct(values, 50), 1), "p90": round(pct(values, 90), 1),
            "max": round(max(values), 1) if values else None, "mean": round(statistics.fmean(values), 1) if values else None}


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    pairs = [(norm(r), norm(h)) for r, h in zip(refs, hyps) if norm(r)]
    return jiwer.wer([p[0] for p in pairs], [p[1] or "<empty>" for p in pairs])


def eval_clips(quick: bool) -> list[tuple[str, np.ndarray, str]]:
    manifest = EVAL_DIR / "manifest.tsv"
    if not manifest.is_file():
        raise SystemExit(f"bench speech: {manifest} is missing; the eval recordings live in ../shared/eval")
    rows = list(csv.DictReader(open(manifest), delimiter="\t"))
    if quick:
        rows = rows[::5]
    return [(r["file"], read_wav(EVAL_DIR / r["file"]), r["reference_transcript"]) for r in rows]


def voiced_bounds(pcm: np.ndarray) -> tuple[int, int]:
    """Start and end of the voice in a clean (Piper) clip, from its 10 ms energy envelope."""
    env = np.convolve(np.abs(pcm.astype(np.float32)), np.ones(160) / 160, mode="same")
    loud = np.flatnonzero(env > 0.02 * env.max())
    return int(loud[0]), int(loud[-1])


def bench_stt_accuracy(stt, clips, out: dict) -> list[list]:
    rows = []
    refs = [c[2] for c in clips]
    audio_s = sum(len(c[1]) for c in clips) / SAMPLE_RATE_HZ
    for label, cfg in (("short window (default)", stt.cfg), ("stock 30 s padding", SttConfig(encoder_window_s=0)),
                       ("short window + command prompt", SttConfig(initial_prompt=COMMAND_PROMPT))):
        model = stt.with_config(cfg)
        model.transcribe(clips[0][1])  # warm-up
        fallbacks_before = stt.fallbacks
        hyps, times = [], []
        for _, audio, _ in clips:
            t0 = time.perf_counter()
            hyps.append(model.transcribe(audio).text)
            times.append((time.perf_counter() - t0) * 1000)
        row = {"wer": round(wer(refs, hyps), 4), "rtf": round(sum(times) / 1000 / audio_s, 4),
               "latency_ms": summary(times), "fallbacks_to_30s": stt.fallbacks - fallbacks_before, "hypotheses": hyps}
        out[label] = row
        rows.append([f"STT {label}", f"WER {row['wer']:.1%}", f"RTF {row['rtf']:.3f}",
                     f"p50 {row['latency_ms']['p50']:.0f} ms / p90 {row['latency_ms']['p90']:.0f} ms per clip"])
    return rows


def bench_command_bias(stt, tts, out: dict) -> list[list]:
    """Each command spoken at three speaking rates (Piper varies each rendering too)."""
    rng = np.random.default_rng(1)
    refs = [c for _ in range(3) for c in COMMANDS]
    clean = [resample(tts.with_config(TtsConfig(length_scale=scale)).synthesize(c), tts.sample_rate_hz, SAMPLE_RATE_HZ)
             for scale in (0.85, 1.0, 1.15) for c in COMMANDS]
    noisy = []
    for a in clean:
        power = np.mean(a.astype(np.float64) ** 2)
        noise = rng.normal(0, np.sqrt(power / 10 ** (0 / 10)), len(a))     # 0 dB SNR white noise
        noisy.append(np.clip(a + noise, -32768, 32767).astype(np.int16))
    rows = []
    for cond, audios in (("clean", clean), ("noisy 0 dB", noisy)):
        for label, prompt in (("no prompt", ""), ("command prompt", COMMAND_PROMPT)):
            model = stt.with_config(SttConfig(initial_prompt=prompt))
            hyps = [model.transcribe(a).text for a in audios]
            w = wer(refs, hyps)
            out[f"{cond}, {label}"] = {"wer": round(w, 4), "hypotheses": hyps}
            rows.append([f"commands {cond}", label, f"WER {w:.1%}", f"{len(refs)} clips"])
    return rows


async def _device_finals(stt, endpointer, pcm: np.ndarray) -> tuple[str, list[float]]:
    """One clip in real time through the device's utterance stage: its finals joined, end -> final ms each."""
    from device.utterance import UtteranceStage, utterances

    texts, waits = [], []
    async for u in utterances(_paced(pcm), UtteranceStage(endpointer, stt)):
        texts.append(u.text)
        waits.append(u.timings.as_ms().get("listen.end_to_text", 0.0))
    return " ".join(t for t in texts if t), waits


async def _paced(pcm: np.ndarray):
    """Frames of `pcm` at the pace a microphone delivers them."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, frame in enumerate(split_frames(pcm)):
        delay = start + (i + 1) * FRAME_SAMPLES / SAMPLE_RATE_HZ - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield frame


def bench_final_vs_stock(stt, vad, turn, clips, out: dict, load: int) -> list[list]:
    """Device final transcripts (final pass greedy vs beam 5) against stock faster-whisper beam 5, full window."""
    from bench.busy import busy_workers
    from device.vad import Endpointer

    refs = [c[2] for c in clips]
    stock_hyps = []
    for _, audio, _ in clips:
        segments, _info = stt.model.transcribe(audio.astype(np.float32) / 32768.0, beam_size=5)
        stock_hyps.append("".join(s.text for s in segments))
    stock_wer = wer(refs, stock_hyps)
    out["stock_faster_whisper_beam5"] = {"wer": round(stock_wer, 4), "hypotheses": stock_hyps}
    rows = [["STT stock faster-whisper beam 5, 30 s", f"WER {stock_wer:.1%}", "", "WhisperModel.transcribe(audio, beam_size=5)"]]
    gap, tail = np.zeros(int(0.6 * SAMPLE_RATE_HZ), np.int16), np.zeros(int(1.0 * SAMPLE_RATE_HZ), np.int16)
    for cpu in ("idle", f"load {load}") if load else ("idle",):
        for beam in (1, 5):
            model = stt.with_config(replace(stt.cfg, final_beam_size=beam))
            hyps, waits = [], []
            with busy_workers(load) if cpu != "idle" else nullcontext():
                for _, audio, _ in clips:
                    vad.reset()
                    text, w = asyncio.run(_device_finals(model, Endpointer(VadConfig(), vad, turn),
                                                         np.concatenate([gap, audio, tail])))
                    hyps.append(text)
                    waits += w
            device_wer = wer(refs, hyps)
            s = summary(waits)
            label = f"device final, final beam {beam}, {cpu}"
            out[label] = {"wer": round(device_wer, 4), "end_to_final_ms": s, "hypotheses": hyps}
            rows.append([f"STT {label}", f"WER {device_wer:.1%} (stock {stock_wer:.1%})",
                         f"end->final p50 {s['p50']:.0f} / p90 {s['p90']:.0f} ms",
                         "<= stock" if device_wer <= stock_wer else "ABOVE stock"])
    return rows


async def _paced_stream(stt, endpointer, pcm: np.ndarray) -> tuple[float, str, bool] | None:
    """Feed one utterance (with silence around it) in real time; ms from speech_end to the final text."""
    from device.utterance import UtteranceStage, utterances

    found = utterances(_paced(pcm), UtteranceStage(endpointer, stt))   # the device's own stage
    try:
        async for u in found:
            return u.timings.as_ms().get("stt.final", 0.0), u.text, u.reused_partial
    finally:
        await found.aclose()
    return None


def bench_end_of_speech(stt, vad, utterances: list[tuple[str, np.ndarray]], out: dict) -> list[list]:
    """End of speech -> final transcript, for utterances up to 5 s."""
    from device.vad import Endpointer

    gap = np.zeros(int(0.6 * SAMPLE_RATE_HZ), dtype=np.int16)
    tail = np.zeros(int(1.0 * SAMPLE_RATE_HZ), dtype=np.int16)
    streamed, reused, after_window, after_stock = [], 0, [], []
    stock = stt.with_config(SttConfig(encoder_window_s=0))
    for name, audio in utterances:
        pcm = np.concatenate([gap, audio, tail])
        vad.reset()
        result = asyncio.run(_paced_stream(stt, Endpointer(VadConfig(), vad), pcm))
        if result is not None:
            streamed.append(result[0])
            reused += result[2]
        vad.reset()
        ep = Endpointer(VadConfig(), vad)
        end = next((e for f in split_frames(pcm) for e in ep.process(f) if e.kind == "speech_end"), None)
        if end is None:
            continue
        for model, sink in ((stt, after_window), (stock, after_stock)):
            t0 = time.perf_counter()
            model.transcribe(end.audio)
            sink.append((time.perf_counter() - t0) * 1000)
    out["transcribe_while_speaking_ms"] = summary(streamed)
    out["final_reused_partial"] = f"{reused}/{len(streamed)}"
    out["after_end_short_window_ms"] = summary(after_window)
    out["after_end_stock_30s_ms"] = summary(after_stock)
    rows = [["end->final, while speaking", f"p50 {summary(streamed)['p50']:.0f} ms",
             f"p90 {summary(streamed)['p90']:.0f} ms", f"partial reused {reused}/{len(streamed)} (target <=150 ms)"]]
    for label, vals in (("end->final, after, short window", after_window), ("end->final, after, stock 30 s", after_stock)):
        s = summary(vals)
        rows.append([label, f"p50 {s['p50']:.0f} ms", f"p90 {s['p90']:.0f} ms", ""])
    return rows


def bench_tts(tts, out: dict) -> list[list]:
    async def first_audio_ms(text: str, cut: bool) -> float:
        voice = tts if cut else tts.with_config(TtsConfig(first_clause_min_words=10_000, first_clause_max_words=10_000))

        async def one():
            yield text
        async for _ in voice.stream_chunks(one()):
            break
        return voice.last_timings.get("tts.first_audio").duration_ms

    tts.synthesize("Warm up.")
    rows = []
    for label, text, cut in (("short answer (11 words)", SHORT_ANSWER, True),
                             ("long first sentence, first clause cut", LONG_ANSWER, True),
                             ("long first sentence, whole sentence", LONG_ANSWER, False)):
        vals = [asyncio.run(first_audio_ms(text, cut)) for _ in range(5)]
        out[label] = summary(vals)
        rows.append([f"TTS first audio: {label}", f"p50 {summary(vals)['p50']:.0f} ms",
                     f"max {summary(vals)['max']:.0f} ms", "(target <=60 ms typical)" if "short" in label else ""])
    return rows


def bench_vad(vad, speak_16k, clips, out: dict) -> list[list]:
    from device.vad import Endpointer

    delays, start_err, end_err, missed = [], [], [], 0
    rng = np.random.default_rng(2)
    sources = [speak_16k(c) for c in COMMANDS] + [speak_16k(a) for a in (SHORT_ANSWER,)]
    for audio in sources:
        a, b = voiced_bounds(audio)
        lead = rng.normal(0, 30, int(0.6 * SAMPLE_RATE_HZ)).astype(np.int16)
        trail = rng.normal(0, 30, int(1.2 * SAMPLE_RATE_HZ)).astype(np.int16)
        pcm = np.concatenate([lead, audio, trail])
        vad.reset()
        ep = Endpointer(VadConfig(), vad)
        events = [e for f in split_frames(pcm) for e in ep.process(f)]
        starts = [e for e in events if e.kind == "speech_start"]
        ends = [e for e in events if e.kind == "speech_end"]
        if not starts or not ends:
            missed += 1
            continue
        true_start, true_end = len(lead) + a, len(lead) + b
        start_err.append((starts[0].sample - true_start) / 16)
        end_err.append((ends[-1].sample - true_end) / 16)
        delays.append((ends[-1].detected_sample - true_end) / 16)
    # cost per 80 ms frame
    frames = split_frames(np.concatenate([c[1] for c in clips[:5]]))
    vad.reset()
    t0 = time.perf_counter()
    for f in frames:
        vad.probs(f)
    per_frame_ms = (time.perf_counter() - t0) * 1000 / len(frames)
    out["end_detection_delay_ms"] = summary(delays)
    out["start_error_ms"] = summary(start_err)
    out["end_error_ms"] = summary(end_err)
    out["missed"] = missed
    out["cost_per_80ms_frame_ms"] = round(per_frame_ms, 3)
    return [["VAD end-of-speech delay", f"p50 {summary(delays)['p50']:.0f} ms", f"p90 {summary(delays)['p90']:.0f} ms",
             f"silence window {VadConfig().silence_ms} ms; missed {missed}/{len(sources)}"],
            ["VAD boundary error (start / end)", f"p50 {summary(start_err)['p50']:.0f} / {summary(end_err)['p50']:.0f} ms",
             f"max |err| {max(map(abs, start_err + end_err)):.0f} ms", f"cost {per_frame_ms:.2f} ms per 80 ms frame"]]


def print_table(rows: list[list]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def run(args: argparse.Namespace) -> int:
    if getattr(args, "language", ""):   # per-language WER and language identification (bench/speech_languages.py)
        from bench.speech_languages import run as run_languages

        return run_languages(args)
    from device.smart_turn import from_config as smart_turn_from_config
    from device.stt import SpeechToText
    from device.tts import TextToSpeech
    from device.vad import SileroVad

    t_start = time.perf_counter()
    stt, tts, vad = SpeechToText(), TextToSpeech(), SileroVad()
    cache: dict[str, np.ndarray] = {}

    def speak_16k(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = resample(tts.synthesize(text), tts.sample_rate_hz, SAMPLE_RATE_HZ)
        return cache[text]

    clips = eval_clips(args.quick)
    result: dict = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                                "load_avg_start": list(__import__("os").getloadavg())},
                    "stt": {}, "commands": {}, "end_of_speech": {}, "tts": {}, "vad": {}}
    rows: list[list] = []
    rows += bench_stt_accuracy(stt, clips, result["stt"])
    rows += bench_final_vs_stock(stt, vad, smart_turn_from_config(VadConfig()), clips, result["stt"], getattr(args, "load", 0))
    rows += bench_command_bias(stt, tts, result["commands"] if not args.quick else {})
    short = [(n, a) for n, a, _ in clips if len(a) <= 5 * SAMPLE_RATE_HZ]
    short = short[:4] if args.quick else short[:8] + [(c, speak_16k(c)) for c in COMMANDS[::3]]
    rows += bench_end_of_speech(stt, vad, short, result["end_of_speech"])
    rows += bench_tts(tts, result["tts"])
    rows += bench_vad(vad, speak_16k, clips, result["vad"])
    result["machine"]["load_avg_end"] = list(__import__("os").getloadavg())
    result["elapsed_s"] = round(time.perf_counter() - t_start, 1)

    print(f"voxlens bench speech  ({len(clips)} eval clips, {result['machine']['cpus']} CPUs, "
          f"load avg {result['machine']['load_avg_start'][0]:.1f}; shared machines make these noisy)")
    print_table(rows)
    out = write_json(args.out, result)
    print(f"wrote {out} in {result['elapsed_s']} s")
    return 0
