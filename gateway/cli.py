"""`voxlens gateway serve` and `voxlens ask`: run the gateway, or send it one text turn.

Heavy imports (grpc, llama.cpp) happen inside the handlers so `voxlens --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid


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
    ask.add_argument("--json", action="store_true", help="one JSON object per gateway message")
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
    return asyncio.run(_ask(" ".join(args.text), target, token, cfg.device, args.route, args.json))


async def _ask(text: str, target: str, token: str, device, route: str, as_json: bool) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from protos import assistant_pb2 as pb
    from protos import assistant_pb2_grpc as pb_grpc

    from protos.enums import PREFERENCES
    from device.client import device_context  # the one DeviceContext builder: `ask` says what the device says

    context = device_context(device, route_preference=PREFERENCES[route])
    query = pb.Query(turn_id=uuid.uuid4().hex[:12], conversation_id="cli", text=text, language=device.language,
                     context=context)
    if device.tls_ca:
        with open(device.tls_ca, "rb") as f:
            channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.aio.insecure_channel(target)
    metadata = (("authorization", f"Bearer {token}"),) if token else None

    async def requests():
        yield pb.DeviceMessage(query=query)

    failed = False
    try:
        async with channel:
            call = pb_grpc.AssistantStub(channel).Converse(requests(), metadata=metadata, timeout=device.turn_timeout_s)
            async for m in call:
                kind = m.WhichOneof("payload")
                if as_json:
                    print(json.dumps(MessageToDict(m, preserving_proto_field_name=True)), flush=True)
                    failed |= kind == "error"
                    continue
                if kind == "route":
                    print(f"[route: {pb.Tier.Name(m.route.tier)} {m.route.model} ({m.route.reason})"
                          f"{' failover' if m.route.failover else ''}]", file=sys.stderr, flush=True)
                elif kind == "tool":
                    print(f"[tool {m.tool.tool}: {pb.ToolEvent.Phase.Name(m.tool.phase)} {m.tool.status}]",
                          file=sys.stderr, flush=True)
                elif kind == "delta":
                    print(m.delta.text, end="", flush=True)
                elif kind == "error":
                    failed = True
                    print(f"\n{m.error.spoken}\n[error {m.error.code}: {m.error.message}]", file=sys.stderr)
                elif kind == "end":
                    timings = ", ".join(f"{t.stage} {t.duration_ms:.0f} ms" for t in m.end.timings)
                    print(f"\n[{pb.TurnEnd.FinishReason.Name(m.end.finish_reason)}; tokens {m.end.tokens_in} in, "
                          f"{m.end.tokens_out} out; {timings}]", file=sys.stderr)
    except grpc.aio.AioRpcError as exc:
        print(f"voxlens ask: gateway {target} answered {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 1 if failed else 0
