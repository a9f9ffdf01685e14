"""Admission control over real gRPC: a tier's line is bounded, a turn waits at most max_wait_s, a refused
turn hears "I'm busy" (RESOURCE_EXHAUSTED, retryable) or is answered by the other tier.

The tier held busy is a real HTTP server in vLLM's wire format whose answer stalls until the turn is
cancelled (tests/openai_standin.py), so "busy" is a state the test controls, not a race with time.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import grpc
import pytest

from gateway.admission import SPOKEN_BUSY
from gateway.backends.openai_backend import OpenAIBackend
from gateway.server import start_gateway
from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc
from tests.gateway_support import Turn, query
from tests.openai_standin import start_openai_standin
from voxlens.config import Config, replace

pytestmark = pytest.mark.asyncio(loop_scope="session")
BIG = pb.ROUTE_PREFERENCE_BIG


@pytest.fixture(scope="module")
def standin():
    server = start_openai_standin()
    yield server
    server.close()


async def _gateway(standin, small, *, max_waiting: int, max_wait_s: float):
    c = Config()
    big_cfg = replace(c.gateway.big, kind="openai", base_url=standin.base_url, model="ok", timeout_s=60.0,
                      slots=1, max_waiting=max_waiting, max_wait_s=max_wait_s)
    cfg = replace(c.gateway, big=big_cfg, max_turns_per_device=8)
    big = OpenAIBackend(big_cfg, "big", retries=0)
    gw = await start_gateway(cfg, c.tools, replace(c.router, latency_budget_ms=60_000), port=0,
                             backends={"small": small, "big": big})
    return gw, big


class Stream:
    """One device stream carrying several turns at once, each collected by turn id."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.turns: dict[str, Turn] = {}
        self.ended: dict[str, asyncio.Event] = {}
        self.deltas: dict[str, asyncio.Event] = {}

        async def requests():
            while (item := await self.outbox.get()) is not None:
                yield item

        self.call = pb_grpc.AssistantStub(self.channel).Converse(requests(), timeout=60)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for m in self.call:
            self.turns.setdefault(m.turn_id, Turn()).messages.append(m)
            if m.WhichOneof("payload") == "delta":
                self.deltas.setdefault(m.turn_id, asyncio.Event()).set()
            if m.WhichOneof("payload") == "end":
                self.ended.setdefault(m.turn_id, asyncio.Event()).set()

    async def ask(self, turn_id: str, text: str, route: int = BIG) -> None:
        self.ended.setdefault(turn_id, asyncio.Event())
        self.deltas.setdefault(turn_id, asyncio.Event())
        await self.outbox.put(query(turn_id, text, route=route))

    async def cancel(self, turn_id: str) -> None:
        await self.outbox.put(pb.DeviceMessage(cancel=pb.Cancel(turn_id=turn_id)))

    async def end_of(self, turn_id: str) -> Turn:
        await asyncio.wait_for(self.ended[turn_id].wait(), 30)
        return self.turns[turn_id]

    async def close(self) -> None:
        await self.outbox.put(None)
        self.call.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.channel.close()


@asynccontextmanager
async def _held(standin, small, *, max_waiting: int, max_wait_s: float):
    """A gateway whose big tier has one slot, held by a turn whose answer stalls after its first words."""
    gw, big = await _gateway(standin, small, max_waiting=max_waiting, max_wait_s=max_wait_s)
    s = Stream(gw.port)
    try:
        await s.ask("holder", "#stall-after-3 What is the capital of Italy?")
        await asyncio.wait_for(s.deltas["holder"].wait(), 20)  # it holds the only slot
        yield gw, s
    finally:
        await s.close()
        await gw.stop(0.5)
        await big.close()


async def _until(predicate, timeout_s: float = 20.0) -> None:
    """Wait for a condition of the gateway's own state (an outer timeout, never a fixed pause)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def _value(gw, name: str, **labels) -> float:
    return gw.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_full_line_refuses_at_once_with_the_busy_line_and_serves_the_waiting_turn(standin):
    async with _held(standin, None, max_waiting=1, max_wait_s=60.0) as (gw, s):
        line = gw.runner.tiers["big"].queue
        await s.ask("waiter", "What is the capital of Italy?")
        await _until(lambda: line.waiting == 1)
        assert _value(gw, "voxlens_queue_depth", tier="big") == 1

        await s.ask("refused", "What is the capital of Italy?")
        refused = await s.end_of("refused")
        (err,) = refused.errors
        assert err.code == "RESOURCE_EXHAUSTED" and err.retryable and err.spoken == SPOKEN_BUSY
        assert "max_waiting" in err.message
        assert refused.end.finish_reason == pb.TurnEnd.FINISH_REASON_ERROR
        assert _value(gw, "voxlens_busy_total", tier="big", reason="queue_full") == 1

        await s.cancel("holder")  # the slot frees: the turn that waited is answered
        waiter = await s.end_of("waiter")
        assert waiter.text.startswith("Rome") and not waiter.errors
        assert any(t.stage == "queue.big" for t in waiter.end.timings)
        assert _value(gw, "voxlens_queue_wait_ms_count", tier="big") >= 2
        assert line.waiting == 0 and line.running == 0


async def test_a_turn_waits_at_most_max_wait_s_then_hears_the_busy_line(standin):
    async with _held(standin, None, max_waiting=4, max_wait_s=0.3) as (gw, s):
        await s.ask("late", "What is the capital of Italy?")
        late = await s.end_of("late")
        (err,) = late.errors
        assert err.code == "RESOURCE_EXHAUSTED" and err.spoken == SPOKEN_BUSY and "max_wait_s" in err.message
        assert _value(gw, "voxlens_busy_total", tier="big", reason="max_wait") == 1
        assert not s.ended["holder"].is_set()  # the refusal cost the other turn nothing


async def test_a_busy_big_tier_hands_the_turn_to_the_small_model(standin, small_backend):
    async with _held(standin, small_backend, max_waiting=0, max_wait_s=60.0) as (gw, s):
        await s.ask("moved", "What is the capital of France? One word.")
        moved = await s.end_of("moved")
        assert [(r.tier, r.failover) for r in moved.routes] == [(pb.TIER_BIG, False), (pb.TIER_SMALL, True)]
        assert moved.text.strip() and not moved.errors
        assert gw.breakers["big"].state == "closed"  # a full line is not the tier failing
