"""`voxlens gateway serve` and `voxlens ask`: run the gateway, or send it one text turn.

Heavy imports (grpc, llama.cpp) happen inside the handlers so `voxlens --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    gw = subparsers.add_parser("gateway", help="the gRPC gateway (router, model tiers, tools)")
    sub = gw.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    serve = sub.add_parser("serve", help="serve voxlens.v1.Assistant until interrupted")
    serve.add_argument("--port", type=int, help="listen port (default: gateway.port)")
    serve.set_defaults(func=run_serve)

    ask = subparsers.add_parser("ask", help="send one text turn to a gateway and stream the answer")
    ask.add_argument("text", nargs="+", help="the question")
    ask.add_argument("--gateway", help="host:port (default: device.gateway)")
    ask.add_argument("--route", choices=("auto", "small", "big"), default="auto", help="tier preference")
    ask.add_argument("--token", help="device token (default: device.token or $VOXLENS_TOKEN)")
    ask.add_argument("--language", help="the question's language, e.g. de (default: device.language)")
    ask.add_argument("--json", action="store_true", help="one JSON object per event the device reads")
    ask.set_defaults(func=run_ask)


def run_serve(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.server import serve
    from voxlens import config as config_mod

    cfg = config_mod.load(args.config)
    try:
        asyncio.run(serve(cfg.gateway, cfg.tools, cfg.router, port=args.port))
    except (OSError, ValueError) as exc:
        print(f"voxlens gateway: {exc}", file=sys.stderr)
        return 1
    return 0


def run_ask(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from voxlens import config as config_mod

    cfg = config_mod.load(args.config)
    target = args.gateway or cfg.device.gateway
    token = args.token or cfg.device.token or os.environ.get("VOXLENS_TOKEN", "")
    return asyncio.run(_ask(" ".join(args.text), target, token, cfg.device, args.route, args.json,
                            args.language or ""))


async def _ask(text: str, target: str, token: str, device, route: str, as_json: bool, language: str = "") -> int:
    """One question through the device's own client (DeviceContext, TLS, token, errors): `ask` sends what a
    device sends and hears what a device hears."""
    import dataclasses

    from device.client import AssistantClient
    from device.client_events import ClientError, RouteEvent, TextEvent, ToolEvent, TurnEndEvent
    from device.commands import Understanding
    from protos.enums import PREFERENCES
    from voxlens.config import replace

    question = Understanding(text=text, route_preference=PREFERENCES[route])
    async with AssistantClient(replace(device, gateway=target, token=token)) as client:
        try:
            async for event in client.ask(question, language=language):
                if as_json:
                    print(json.dumps({"event": type(event).__name__, **dataclasses.asdict(event)}), flush=True)
                elif isinstance(event, RouteEvent):
                    print(f"[route: {event.tier} {event.model} ({event.reason}){' failover' if event.failover else ''}]",
                          file=sys.stderr, flush=True)
                elif isinstance(event, ToolEvent):
                    print(f"[tool {event.tool}: {event.phase} {event.status}]", file=sys.stderr, flush=True)
                elif isinstance(event, TextEvent):
                    print(event.text, end="", flush=True)
                elif isinstance(event, TurnEndEvent):
                    timings = ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in event.timings_ms.items())
                    print(f"\n[{event.finish_reason}; tokens {event.tokens_in} in, {event.tokens_out} out; {timings}]",
                          file=sys.stderr)
        except ClientError as exc:
            if as_json:
                print(json.dumps({"event": "Error", "code": exc.code, "message": str(exc), "spoken": exc.spoken}))
            else:
                print(f"\n{exc.spoken}\n[error {exc.code or type(exc).__name__}: {exc}]", file=sys.stderr)
            return 1
    return 0
