"""`voxlens wyoming stt|tts|wake --uri tcp://HOST:PORT`: VoxLens's stages as Wyoming services for Home Assistant.

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

from voxlens import config as config_mod

# Home Assistant's usual Wyoming ports: whisper 10300, piper 10200, openWakeWord 10400.
DEFAULT_URIS = {"stt": "tcp://0.0.0.0:10300", "tts": "tcp://0.0.0.0:10200", "wake": "tcp://0.0.0.0:10400"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("wyoming", help="serve speech to text, text to speech or the wake word to Home Assistant "
                                              "(Wyoming protocol; docs/wyoming.md)")
    sub = p.add_subparsers(dest="wyoming_service", metavar="SERVICE", required=True)
    stt = sub.add_parser("stt", help="speech to text (faster-whisper), transcribing while audio arrives")
    stt.add_argument("--model", help="catalog name or CTranslate2 folder (default: [models] stt)")
    tts = sub.add_parser("tts", help="text to speech (Piper), streaming by sentence")
    tts.add_argument("--voice", help="catalog name or path to a Piper .onnx (default: [models] tts)")
    wake = sub.add_parser("wake", help="wake word (openWakeWord-format heads + the verifier, as on the device)")
    wake.add_argument("--head", action="append", metavar="NAME_OR_PATH",
                      help="a head: catalog name or openWakeWord-format .onnx; repeat for several "
                           "(default: [wakeword] heads)")
    for name, service in (("stt", stt), ("tts", tts), ("wake", wake)):
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
