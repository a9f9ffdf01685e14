"""`voxlens demo`: an in-process gateway on the embedded defaults, and the device on a spoken demo WAV.

Why a generated WAV: the demo must run on a fresh machine with no microphone and
no recordings; a synthetic voice speaks the user's side once (cached), the device
hears it through the same paced source a microphone would give.

The user's voice is not the assistant's: Piper's joe voice answers, and the user
is hibari's voice (a Kokoro-distilled voice on PyPI), so what the device hears
and what it says are two different speakers, as in life.
"""
from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, TextIO

import numpy as np

from device.audio import SAMPLE_RATE_HZ, write_wav
from models.catalog import default_cache_dir
from voxlens.config import Config

# What the user says, and the silence after each piece (seconds): room for the answer before the next wake word.
DEMO_SCRIPT: tuple[tuple[str, float], ...] = (
    ("", 0.6),
    ("Hey vox lens.", 0.3),
    ("What time is it?", 6.0),
    ("Hey vox lens.", 0.3),
    ("What's the weather in Paris?", 9.0),
)


def user_voice(seed: int = 7) -> Callable[[str], np.ndarray]:
    """text -> 16 kHz int16 speech in a user's voice (hibari), deterministic for a given seed."""
    from device.audio import float_to_int16
    from device.wakeword.train.voices import HibariVoice

    voice = HibariVoice()

    def speak(text: str) -> np.ndarray:
        rng = np.random.default_rng([seed, len(text)])
        return float_to_int16(voice.synthesize(voice.phonemize(text), rng))

    return speak


def script_audio(speak: Callable[[str], np.ndarray], script: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Each line spoken at 16 kHz, followed by its silence."""
    pieces: list[np.ndarray] = []
    for text, silence_s in script:
        if text:
            pieces.append(speak(text))
        pieces.append(np.zeros(int(silence_s * SAMPLE_RATE_HZ), dtype=np.int16))
    return np.concatenate(pieces).astype(np.int16)


def demo_input(cache_dir: Path | None = None) -> Path:
    """The demo WAV, made once and cached next to the models (scripts/setup makes it)."""
    path = (cache_dir or default_cache_dir()) / "demo" / "demo-input.wav"
    stamp = path.with_suffix(".script.json")
    script = json.dumps({"voice": "hibari/7", "script": DEMO_SCRIPT})
    if not path.is_file() or not stamp.is_file() or stamp.read_text() != script:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, script_audio(user_voice(), DEMO_SCRIPT), SAMPLE_RATE_HZ)
        stamp.write_text(script)
    return path


def printer(out: TextIO) -> Callable[[dict], None]:
    """Human-readable lines for what a demo watcher cares about."""
    def emit(event: dict) -> None:
        kind = event["event"]
        if kind == "wake":
            v = event.get("verifier")
            confirmed = f"; {v['verifier']} verifier heard {v['text']!r}, {v['ms']:.0f} ms" if v else ""
            print(f"[{event['at_s']:6.2f}s] wake word ({event['name']}, score {event['score']}{confirmed})", file=out)
        elif kind == "wake_rejected":
            v = event["verifier"]
            print(f"[{event['at_s']:6.2f}s] not woken: {v['verifier']} verifier heard {v['text']!r}", file=out)
        elif kind == "transcript_final":
            print(f"          heard: {event['text']!r}", file=out)
        elif kind == "route":
            print(f"          route: {event['tier']} ({event['model']}), because {event['reason']}", file=out)
        elif kind == "tool":
            print(f"          tool: {event['tool']} {event['phase']}", file=out)
        elif kind == "turn":
            print(f"          answer: {event['answer']!r}", file=out)
            print(f"          {event['summary']}", file=out)
        out.flush()
    return emit


async def run_demo(cfg: Config, output: Path, events_path: Path | None, input_path: Path | None,
                   out: TextIO = sys.stdout) -> int:
    from device.app import load_models, run_device
    from device.audio import WavSink, WavSource
    from gateway.server import start_gateway

    print("loading models (whisper, piper, wake word, VAD) and the small LLM…", file=out, flush=True)
    models = await asyncio.to_thread(load_models, cfg)
    wav = input_path or demo_input(Path(cfg.models.cache_dir).expanduser() if cfg.models.cache_dir else None)
    gateway = await start_gateway(replace(cfg.gateway, host="127.0.0.1"), cfg.tools, cfg.router, port=0)
    device_cfg = replace(cfg, device=replace(cfg.device, gateway=f"127.0.0.1:{gateway.port}", token=""))
    print(f"gateway on 127.0.0.1:{gateway.port}; playing {wav} in real time", file=out, flush=True)
    show = printer(out)
    sink_events = open(events_path, "w", encoding="utf-8") if events_path else None

    def emit(event: dict) -> None:
        show(event)
        if sink_events:
            sink_events.write(json.dumps(event, default=str) + "\n")

    sink = WavSink(output, realtime=True)
    try:
        run = await run_device(device_cfg, models, WavSource(wav, realtime=True, block_samples=device_cfg.audio.block_samples), sink,
                                 emit=emit)
    finally:
        sink.close()
        await gateway.stop(1.0)
        if sink_events:
            sink_events.close()
    print(f"spoken replies written to {output}" + (f"; events in {events_path}" if events_path else ""), file=out)
    return 0 if run.turns else 1
