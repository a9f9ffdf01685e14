"""`voxlens device run` and `voxlens demo`."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

from voxlens import config as config_mod


def register(subparsers: argparse._SubParsersAction) -> None:
    dev = subparsers.add_parser("device", help="the device: microphone and speaker, or headless on WAV files")
    sub = dev.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the device (wake word, commands, questions through the gateway)")
    run.add_argument("--input", type=Path, help="read this WAV, paced in real time, instead of the microphone")
    run.add_argument("--output", type=Path, help="write everything the device plays to this WAV instead of the speaker")
    run.add_argument("--events", type=Path, help="write every state change, transcript, route and timing as JSON lines")
    run.add_argument("--gateway", help="gateway HOST:PORT (default: [device] gateway)")
    run.set_defaults(func=_run)

    demo = subparsers.add_parser("demo", help="in-process gateway + the device on a spoken demo WAV; prints what happens")
    demo.add_argument("--output", type=Path, default=Path("voxlens-demo-reply.wav"), help="the spoken replies (WAV)")
    demo.add_argument("--events", type=Path, help="also write the events as JSON lines")
    demo.add_argument("--input", type=Path, help="another WAV instead of the generated demo")
    demo.set_defaults(func=_demo)


def _run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    if args.gateway:
        cfg = replace(cfg, device=replace(cfg.device, gateway=args.gateway))
    return asyncio.run(_run_async(cfg, args))


def open_device_io(cfg: config_mod.Config, args: argparse.Namespace):
    """(source, sink, events file or None) from --input/--output/--events: the microphone and speaker by default.
    Shared by `voxlens device run` and `voxlens wyoming satellite`."""
    from device.audio import MicrophoneSource, SpeakerSink, WavSink, WavSource

    block = cfg.audio.block_samples
    source = (WavSource(args.input, realtime=True, block_samples=block) if args.input else
              MicrophoneSource(cfg.audio.input_device or None, block_samples=block))
    sink = WavSink(args.output, realtime=True) if args.output else SpeakerSink(cfg.audio.output_device or None)
    events = open(args.events, "w", encoding="utf-8") if args.events else None
    return source, sink, events


def write_event(events, event: dict) -> None:
    """One device event as a JSON line (--events), flushed so a reader can follow it live."""
    if events:
        events.write(json.dumps(event, default=str) + "\n")
        events.flush()


async def _run_async(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from device.app import load_models, run_device

    models = await asyncio.to_thread(load_models, cfg)
    source, sink, events = open_device_io(cfg, args)

    def emit(event: dict) -> None:
        write_event(events, event)
        if event["event"] == "turn":
            print(event["summary"], flush=True)

    try:
        await run_device(cfg, models, source, sink, emit=emit)
    finally:
        sink.close()
        if events:
            events.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from device.demo import run_demo

    cfg = config_mod.load(args.config)
    return asyncio.run(run_demo(cfg, args.output, args.events, args.input, sys.stdout))
