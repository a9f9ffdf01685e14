"""`voxlens wyoming stt|tts|wake|satellite --uri tcp://HOST:PORT`: VoxLens for Home Assistant over Wyoming.

stt, tts and wake serve one stage each; satellite runs the whole device (microphone or WAV) with
Home Assistant's pipeline answering what is not a device command (device/wyoming/satellite.py).

Models load once (from the config's [models], [stt], [tts], [vad] and [wakeword]) before
the port opens; the line "serving on URI" says the service is ready (with port 0, the
port the system chose). SIGTERM and Ctrl-C stop it, giving open sessions a grace period.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from voxlens import config as config_mod

# Home Assistant's usual Wyoming ports: whisper 10300, piper 10200, openWakeWord 10400.
# The satellite's 10700 is wyoming-satellite's.
DEFAULT_URIS = {"stt": "tcp://0.0.0.0:10300", "tts": "tcp://0.0.0.0:10200", "wake": "tcp://0.0.0.0:10400",
                "satellite": "tcp://0.0.0.0:10700"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("wyoming", help="serve speech to text, text to speech, the wake word or the device as a "
                                              "satellite to Home Assistant (Wyoming protocol; docs/wyoming.md)")
    sub = p.add_subparsers(dest="wyoming_service", metavar="SERVICE", required=True)
    stt = sub.add_parser("stt", help="speech to text (faster-whisper), transcribing while audio arrives")
    stt.add_argument("--model", help="catalog name or CTranslate2 folder (default: [models] stt)")
    tts = sub.add_parser("tts", help="text to speech (Piper), streaming by sentence")
    tts.add_argument("--voice", help="catalog name or path to a Piper .onnx (default: [models] tts)")
    wake = sub.add_parser("wake", help="wake word (openWakeWord-format heads + the verifier, as on the device)")
    wake.add_argument("--head", action="append", metavar="NAME_OR_PATH",
                      help="a head: catalog name or openWakeWord-format .onnx; repeat for several "
                           "(default: [wakeword] heads)")
    sat = sub.add_parser("satellite", help="the device as a Home Assistant satellite: wake word, endpointing and "
                                           "device commands here, everything else through Home Assistant's pipeline")
    sat.add_argument("--input", type=Path, help="read this WAV, paced in real time, instead of the microphone")
    sat.add_argument("--output", type=Path, help="write everything played to this WAV instead of the speaker")
    sat.add_argument("--events", type=Path, help="write every state change, transcript and turn as JSON lines")
    for name, service in (("stt", stt), ("tts", tts), ("wake", wake), ("satellite", sat)):
        service.add_argument("--uri", default=DEFAULT_URIS[name],
                             help=f"where to listen: tcp://HOST:PORT or unix://PATH (default: {DEFAULT_URIS[name]})")
        service.set_defaults(func=_serve)


def _load(cfg: config_mod.Config, args: argparse.Namespace):
    if args.wyoming_service == "stt":
        from device.wyoming.stt import SttService

        return SttService.load(cfg, args.model)
    if args.wyoming_service == "tts":
        from device.wyoming.tts import TtsService

        return TtsService.load(cfg, args.voice)
    from device.wyoming.wake import WakeService

    if args.head:
        cfg = config_mod.replace(cfg, wakeword=config_mod.replace(cfg.wakeword, heads=tuple(args.head)))
    return WakeService.load(cfg)


def _serve(args: argparse.Namespace) -> int:
    from device.wakeword import WakeWordError
    from device.wyoming.server import UriError, parse_uri
    from models.catalog import ModelError

    try:
        parse_uri(args.uri)
    except UriError as exc:
        print(f"voxlens: {exc}", file=sys.stderr)
        return 2
    cfg = config_mod.load(args.config)
    try:
        if args.wyoming_service == "satellite":
            return asyncio.run(_satellite_async(cfg, args))
        return asyncio.run(_serve_async(cfg, args))
    except (ModelError, WakeWordError) as exc:
        print(f"voxlens: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:   # the port is taken, the socket folder is missing...
        print(f"voxlens: cannot listen on {args.uri}: {exc}; choose another --uri", file=sys.stderr)
        return 1


async def _serve_async(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from device.wyoming.server import WyomingServer

    service = await asyncio.to_thread(_load, cfg, args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with WyomingServer(args.uri, service.handler) as server:
        print(f"voxlens wyoming {args.wyoming_service}: serving on {server.uri}", flush=True)
        await stop.wait()
    return 0


async def _satellite_async(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    """The device on the microphone (or --input), serving Home Assistant until the input ends, SIGTERM or Ctrl-C."""
    from device.app import load_models
    from device.cli_device import open_device_io, write_event
    from device.wyoming.satellite import run_satellite

    models = await asyncio.to_thread(load_models, cfg)
    source, sink, events = open_device_io(cfg, args)

    def emit(event: dict) -> None:
        write_event(events, event)
        if event["event"] == "satellite_serving":
            print(f"voxlens wyoming satellite: serving on {event['uri']}", flush=True)
        elif event["event"] in ("satellite_running", "satellite_disconnected", "satellite_paused"):
            print(f"voxlens wyoming satellite: {event['event'].removeprefix('satellite_')} ({event['peer']})", flush=True)
        elif event["event"] == "turn":
            print(event["summary"], flush=True)

    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, main.cancel)   # SIGTERM stops it as Ctrl-C does, cleanly
    try:
        await run_satellite(cfg, models, source, sink, uri=args.uri, emit=emit)
    except asyncio.CancelledError:
        print("voxlens wyoming satellite: stopped", flush=True)
    finally:
        sink.close()
        if events:
            events.close()
    return 0
