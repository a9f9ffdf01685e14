"""`voxlens bench wyoming`: VoxLens's Wyoming STT and TTS beside wyoming-faster-whisper and wyoming-piper,
on the same models (whisper tiny.en and Piper joe from the catalog), measured by the peers' own tool.

Why wyoming-bench: it is what the peers are measured with, so the numbers mean the same
for both sides. Every server runs as its own process on loopback (no shared GIL), one
run, same machine state; nothing is downloaded (the peers get the catalog's files).

STT: the real recordings of ../shared/eval/speech (manifest.tsv), 0.5 s of trailing silence
(wyoming-bench's default). Two ways to send the audio:
- at once (wyoming-bench's non-streaming mode): "final" is request -> transcript;
- paced like a microphone (streaming mode, one 64 ms chunk per 64 ms): "final" is end of
  audio -> transcript. The peer does not stream (wyoming-bench skips it there); it
  transcribes only at audio-stop, so its "at once" time is its end-of-audio time either way.
TTS: wyoming-bench's texts, whole (non-streaming) and split as an LLM writes (streaming):
time to first audio and RTF.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.cli import write_json
from bench.llama_server import free_port

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "eval" / "speech"
CHUNK_SAMPLES = 1024
TRAILING_SILENCE_S = 0.5
READY_TIMEOUT_S = 180.0


@dataclass
class Server:
    name: str            # "voxlens" | "peer"
    kind: str            # "stt" | "tts"
    port: int
    proc: subprocess.Popen
    log: Path


def _start(name: str, kind: str, cmd: list[str], port: int, work: Path, env: dict[str, str]) -> Server:
    log = work / f"{name}-{kind}.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env, cwd=ROOT)
    return Server(name, kind, port, proc, log)


def _servers(work: Path, threads: int) -> list[Server]:
    from models.catalog import resolve

    whisper, joe = Path(resolve("whisper-tiny.en")), Path(resolve("piper-joe-medium"))
    voices = work / "piper-voices"
    voices.mkdir()
    for suffix in (".onnx", ".onnx.json"):   # the peer finds a voice by name in its data dir
        (voices / f"piper-joe-medium{suffix}").symlink_to(Path(str(joe) + suffix.removeprefix(".onnx")))
    env = dict(os.environ, VOXLENS_STT__CPU_THREADS=str(threads), VOXLENS_STT__BEAM_SIZE="1")
    py = sys.executable
    ports = [free_port() for _ in range(4)]
    return [
        _start("voxlens", "stt", [py, "-m", "voxlens.cli", "wyoming", "stt", "--uri", f"tcp://127.0.0.1:{ports[0]}"],
               ports[0], work, env),
        _start("peer", "stt", [py, "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{ports[1]}",
                               "--model", str(whisper), "--data-dir", str(work), "--download-dir", str(work),
                               "--local-files-only", "--language", "en", "--beam-size", "1", "--compute-type", "int8",
                               "--device", "cpu", "--cpu-threads", str(threads)], ports[1], work, env),
        _start("voxlens", "tts", [py, "-m", "voxlens.cli", "wyoming", "tts", "--uri", f"tcp://127.0.0.1:{ports[2]}"],
               ports[2], work, env),
        _start("peer", "tts", [py, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{ports[3]}",
                               "--voice", "piper-joe-medium", "--data-dir", str(voices), "--download-dir", str(voices)],
               ports[3], work, env),
    ]


async def _ready(server: Server):
    """The server's Info, once it answers Describe; an error naming its log if it exits or never answers."""
    from wyoming_bench.info import fetch_info

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} {server.kind} exited ({server.proc.returncode}): "
                               f"{server.log.read_text()[-1500:]}")
        try:
            info = await fetch_info("127.0.0.1", server.port, timeout=2.0)
        except OSError:   # not listening yet
            info = None
        if info is not None:
            return info
        await asyncio.sleep(0.2)   # a server loading its model: poll until it listens
    raise RuntimeError(f"{server.name} {server.kind} did not answer Describe within {READY_TIMEOUT_S:.0f} s; "
                       f"see {server.log}")


def _corpus(dst: Path, quick: bool) -> Path:
    """wyoming-bench's corpus layout (X.wav + X.txt) from the eval manifest."""
    with open(SPEECH / "manifest.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if quick:
        rows = rows[:3]
    dst.mkdir()
    for row in rows:
        (dst / row["file"]).symlink_to(SPEECH / row["file"])
        (dst / row["file"]).with_suffix(".txt").write_text(row["reference_transcript"] + "\n", encoding="utf-8")
    return dst


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


def _stt_summary(ms: list, paced: bool) -> dict:
    ok = [m for m in ms if m.ok and m.total_s is not None]
    if paced:   # end of audio -> transcript: what the microphone's pace leaves after the last chunk
        chunk_s = CHUNK_SAMPLES / 16000
        finals = [m.total_s - (-(-int((m.audio_duration_s + TRAILING_SILENCE_S) * 16000) // CHUNK_SAMPLES)) * chunk_s
                  for m in ok]
    else:
        finals = [m.total_s for m in ok]
    words = sum(m.n_ref_words for m in ok)
    errors = sum(m.sub + m.ins + m.del_ for m in ok)
    return {"runs": len(ms), "ok": len(ok), "final_ms": _median_ms([max(0.0, f) for f in finals]),
            "wer": round(errors / words, 4) if words else None,
            "errors": sorted({m.error for m in ms if not m.ok})[:3]}


def _tts_summary(ms: list) -> dict:
    ok = [m for m in ms if m.ok]
    return {"runs": len(ms), "ok": len(ok), "first_audio_ms": _median_ms([m.ttft_s for m in ok if m.ttft_s is not None]),
            "rtf": round(statistics.median([m.rtf for m in ok if m.rtf is not None]), 4) if ok else None,
            "errors": sorted({m.error for m in ms if not m.ok})[:3]}


async def _measure(servers: list[Server], corpus: Path, rounds: int) -> dict:
    from wyoming.asr import Transcribe
    from wyoming_bench.const import MODE_NON_STREAMING, MODE_STREAMING
    from wyoming_bench.stt.bench import bench_stt_server
    from wyoming_bench.stt.corpus import load_corpus
    from wyoming_bench.tts.bench import bench_server
    from wyoming_bench.tts.texts import DEFAULT_TEXTS

    samples = load_corpus(corpus)
    infos = [await _ready(s) for s in servers]
    out: dict = {"stt": {}, "tts": {}}
    for server, info in zip(servers, infos):
        common = dict(connect_timeout=10.0, read_timeout=120.0, info=info)
        if server.kind == "stt":
            stt = dict(transcribe=Transcribe(language="en"), rounds=rounds, warmup=1, verbose=False,
                       chunk_samples=CHUNK_SAMPLES, trailing_silence=TRAILING_SILENCE_S, **common)
            at_once = await bench_stt_server("127.0.0.1", server.port, samples, [MODE_NON_STREAMING], chunk_delay=0.0, **stt)
            paced = await bench_stt_server("127.0.0.1", server.port, samples, [MODE_STREAMING],
                                           chunk_delay=CHUNK_SAMPLES / 16000, **stt)
            out["stt"][server.name] = {"at_once": _stt_summary(at_once, False),
                                       "paced": _stt_summary(paced, True) if paced else None}
        else:
            texts = list(DEFAULT_TEXTS)[: 2 if rounds == 1 else None]
            result = {}
            for mode in (MODE_NON_STREAMING, MODE_STREAMING):
                ms = await bench_server("127.0.0.1", server.port, texts, [mode], voice=None, text_format=None,
                                        rounds=rounds, warmup=1, verbose=False, chunk_delay=0.0, unique=True, **common)
                result[mode] = _tts_summary(ms) if ms else None
            out["tts"][server.name] = result
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _verdicts(r: dict) -> dict:
    """The issue's targets, computed from this run's numbers (None where a side produced none)."""
    ours, peer = r["stt"]["voxlens"], r["stt"]["peer"]
    ours_best = ours["paced"]["final_ms"] if ours.get("paced") else ours["at_once"]["final_ms"]
    peer_final = peer["at_once"]["final_ms"]     # the peer transcribes at audio-stop, paced or not
    t_ours, t_peer = r["tts"]["voxlens"], r["tts"]["peer"]
    return {
        "stt_final_ratio_paced": _ratio(ours_best, peer_final),
        "stt_final_ratio_at_once": _ratio(ours["at_once"]["final_ms"], peer_final),
        "stt_wer_ours_le_peer": (ours["at_once"]["wer"] is not None and peer["at_once"]["wer"] is not None
                                 and ours["at_once"]["wer"] <= peer["at_once"]["wer"]),
        "tts_first_audio_ratio": {mode: _ratio((t_ours.get(mode) or {}).get("first_audio_ms"),
                                               (t_peer.get(mode) or {}).get("first_audio_ms"))
                                  for mode in ("non_streaming", "streaming")},
    }


def _print(r: dict) -> None:
    print(f"voxlens bench wyoming  ({r['clips']} clips x {r['rounds']} rounds, {r['cpus']} CPUs, "
          f"whisper tiny.en int8 beam 1, Piper joe; medians)")
    print("STT                         final ms (at once)  final ms (paced, after audio)  WER")
    for name, s in r["stt"].items():
        paced = s["paced"]["final_ms"] if s.get("paced") else "n/a (no streaming)"
        print(f"  {name:<26}{str(s['at_once']['final_ms']):<20}{str(paced):<31}{s['at_once']['wer']}")
    print("TTS                         first audio ms (whole)  first audio ms (streamed)  RTF (whole)")
    for name, s in r["tts"].items():
        whole, streamed = s.get("non_streaming") or {}, s.get("streaming") or {}
        print(f"  {name:<26}{str(whole.get('first_audio_ms')):<24}{str(streamed.get('first_audio_ms')):<27}"
              f"{whole.get('rtf')}")
    v = r["verdicts"]
    print(f"ratios (voxlens / peer): STT final paced {v['stt_final_ratio_paced']} (target <= 0.5), at once "
          f"{v['stt_final_ratio_at_once']}; WER voxlens <= peer: {v['stt_wer_ours_le_peer']}; "
          f"TTS first audio {v['tts_first_audio_ratio']} (target <= 1)")


def run(args: argparse.Namespace) -> int:
    rounds = 1 if args.quick else 3
    threads = os.cpu_count() or 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="voxlens-bench-wyoming-") as tmp:
        work = Path(tmp)
        corpus = _corpus(work / "corpus", args.quick)
        clips = len(list(corpus.glob("*.txt")))
        servers = _servers(work, threads)
        try:
            result = asyncio.run(_measure(servers, corpus, rounds))
        finally:
            for s in servers:
                s.proc.terminate()
            for s in servers:
                try:
                    s.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
    result.update(clips=clips, rounds=rounds, cpus=threads, elapsed_s=round(time.monotonic() - started, 1))
    result["verdicts"] = _verdicts(result)
    _print(result)
    out = write_json(args.out, result)
    print(f"wrote {out} in {result['elapsed_s']} s")
    return 0
