"""`voxlens bench first-token`: the small tier's time to first token and the prompt tokens it decodes per turn.

Why a scripted mix: llama.cpp reuses the KV cache of the previous prompt's common prefix, so what a turn
costs depends on the turn before it. One device's conversation is replayed through a real in-process
gateway (gRPC on loopback) with the turns that break a naive prompt layout: a typed intent whose result
the model phrases, a question that needs the tool instructions, and another device (no location) in
between. "decoded" is read from llama.cpp's first decode of each turn (CountingLlama), not from timing.
The whole script runs twice per CPU condition: cold (right after the gateway starts) and again.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.cli import write_json


@dataclass(frozen=True)
class ScriptedTurn:
    label: str
    text: str
    device: str = "a"     # "a": Paris, with its conversation; "b": no location, its own conversation
    intent: str = ""
    city: str = ""


SCRIPT = (
    ScriptedTurn("first question", "What is the capital of France?"),
    ScriptedTurn("follow-up", "Who wrote Romeo and Juliet?"),
    ScriptedTurn("intent, model phrases", "What time is it in Tokyo?", intent="time_in_city", city="Tokyo"),
    ScriptedTurn("after the intent", "How far away is the moon?"),
    ScriptedTurn("needs tool words", "What is the temperature on the moon?"),
    ScriptedTurn("after tool words", "What is the largest ocean?"),
    ScriptedTurn("other device", "Who painted the Mona Lisa?", device="b"),
    ScriptedTurn("back to device a", "What is the speed of light?"),
)


def _message(turn: ScriptedTurn, turn_id: str, round_no: int):
    from protos import assistant_pb2 as pb

    from device.client import device_context  # the device's own builder: the bench sends what a device sends
    from voxlens.config import DeviceConfig

    where = DeviceConfig(time_zone="Europe/Paris", latitude=48.85341, longitude=2.3488, place_name="Paris")
    ctx = device_context(where if turn.device == "a" else DeviceConfig(), route_preference=pb.ROUTE_PREFERENCE_SMALL)
    q = pb.Query(turn_id=turn_id, conversation_id=f"bench-{turn.device}-{round_no}", text=turn.text,
                 language="en", context=ctx)
    if turn.intent:
        q.intent.name = turn.intent
        q.intent.slots["city"].text = turn.city
    return pb.DeviceMessage(query=q)


async def _ask(stub, message) -> tuple[float | None, str]:
    first_token_ms = None
    text = ""

    async def requests():
        yield message

    async for m in stub.Converse(requests(), timeout=120):
        kind = m.WhichOneof("payload")
        if kind == "delta":
            text += m.delta.text
        if kind == "end":
            first_token_ms = next((t.duration_ms for t in m.end.timings if t.stage == "first_token"), None)
    return first_token_ms, text


async def _run_script(rounds: int) -> list[dict[str, Any]]:
    import grpc

    from gateway.server import start_gateway
    from protos import assistant_pb2_grpc as pb_grpc
    from voxlens.config import Config, replace

    c = Config()
    small = replace(c.gateway.small, max_tokens=16, temperature=0.0)
    cfg = replace(c.gateway, small=small, big=replace(c.gateway.big, base_url=""), rate_per_minute=0)
    tools = replace(c.tools, geocoding_url="http://127.0.0.1:9/search", forecast_url="http://127.0.0.1:9/forecast")
    gw = await start_gateway(cfg, tools, c.router, port=0)  # loads the model (and whatever it warms) here
    backend = gw.runner.backends["small"]
    rows = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
            stub = pb_grpc.AssistantStub(ch)
            for round_no in range(rounds):
                for i, turn in enumerate(SCRIPT):
                    backend.stats.last_prompt = None
                    t0 = time.perf_counter()
                    first_ms, text = await _ask(stub, _message(turn, f"r{round_no}-{i}", round_no))
                    use = backend.stats.last_prompt
                    rows.append({"round": round_no, "turn": turn.label, "first_token_ms": first_ms,
                                 "turn_ms": round((time.perf_counter() - t0) * 1000, 1),
                                 "prompt_tokens": use.prompt_tokens if use else None,
                                 "decoded": use.evaluated if use else None, "answer": text})
                    print(f"  round {round_no} {turn.label:22} first token "
                          f"{f'{first_ms:7.1f}' if first_ms is not None else '    n/a'} ms  prompt "
                          f"{rows[-1]['prompt_tokens']!s:>4}  decoded {rows[-1]['decoded']!s:>4}  {text[:40]!r}",
                          flush=True)
    finally:
        await gw.stop(0.5)
    return rows


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    model = [r for r in rows if r["decoded"] is not None]
    first = [r["first_token_ms"] for r in rows if r["first_token_ms"] is not None]
    return {
        "turns": len(rows), "model_turns": len(model),
        "first_token_p50_ms": round(statistics.median(first), 1) if first else None,
        "first_token_max_ms": round(max(first), 1) if first else None,
        "prompt_tokens": sum(r["prompt_tokens"] for r in model),
        "decoded": sum(r["decoded"] for r in model),
        "decoded_p50": statistics.median(r["decoded"] for r in model) if model else None,
    }


def run(args: argparse.Namespace) -> int:
    from bench.busy import busy_cpu

    rounds = 1 if args.quick else 2
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg_start": list(os.getloadavg())},
                              "script": [t.label for t in SCRIPT], "runs": {}}
    print("small tier, one scripted conversation through a real gateway (max 16 tokens, temperature 0)")
    print("idle:")
    result["runs"]["idle"] = _run_script_sync(rounds)
    with busy_cpu() as spinners:
        print(f"busy ({spinners} spinners):")
        result["runs"][f"busy ({spinners} spinners)"] = _run_script_sync(rounds)
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    print(f"\nvoxlens bench first-token ({result['machine']['cpus']} CPUs, load avg "
          f"{result['machine']['load_avg_start'][0]:.1f} at start, {result['machine']['load_avg_end'][0]:.1f} at end)")
    print(f"{'cpu':<20} {'turns':>5} {'first token p50':>16} {'max':>8} {'prompt tokens':>14} {'decoded':>8} "
          f"{'decoded p50':>12}")
    for name, run_rows in result["runs"].items():
        s = _summary(run_rows["rows"])
        run_rows["summary"] = s
        print(f"{name:<20} {s['model_turns']:>5} {s['first_token_p50_ms']!s:>13} ms {s['first_token_max_ms']!s:>8} "
              f"{s['prompt_tokens']:>14} {s['decoded']:>8} {s['decoded_p50']!s:>12}")
    out = write_json(args.out, result)
    print(f"wrote {out}")
    return 0


def _run_script_sync(rounds: int) -> dict[str, Any]:
    return {"rows": asyncio.run(_run_script(rounds))}
