"""Faults in the middle of a turn, over real sockets: every turn ends with something the user hears.

The big tier is a real HTTP server speaking vLLM's OpenAI streaming format that breaks on purpose
(tests/openai_standin.py); the small tier is the real in-process llama.cpp model; the device side
is the real AssistantClient, through a breakable TCP link (tests/tcp_proxy.py) where the network
is the fault. Each case checks what the user hears, what the operator reads, and what the broken
server saw (its connection closed, no request it should not have had).
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest

from device.client import AssistantClient
from device.commands import Understanding
from device.client_events import OFFLINE_SPOKEN, GatewayError, GatewayUnavailable, TextEvent, TurnEndEvent
from gateway.backends.openai_backend import OpenAIBackend, retry_after_s
from gateway.breaker import CLOSED, HALF_OPEN, OPEN
from gateway.server import start_gateway
from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc
from tests.gateway_support import free_port, one_turn, query
from tests.openai_standin import RETRY_AFTER_S, start_openai_standin
from tests.tcp_proxy import FlakyLink
from tests.test_client import collect_rest
from voxlens.config import Config, DeviceConfig, replace
from voxlens.retry import Backoff
from voxlens.timing import ManualClock

pytestmark = pytest.mark.asyncio(loop_scope="session")
BIG = pb.ROUTE_PREFERENCE_BIG
ASK = "What is the capital of Italy?"
BIG_ASK = Understanding(text=ASK, route_preference=BIG)
STALL_S = 1.0  # the big tier's read timeout here: a tier silent this long is stalled


@dataclass
class Rig:
    gateway: object
    big: OpenAIBackend
    clock: ManualClock

    def scenario(self, name: str) -> None:
        """Which fault the stand-in plays for the next big-tier request; the breaker starts closed."""
        self.big.model = name
        self.gateway.breakers["big"].record_success()

    async def close(self) -> None:
        await self.gateway.stop(0.5)
        await self.big.close()


@pytest.fixture(scope="module")
def standin():
    server = start_openai_standin()
    yield server
    server.close()


async def _rig(small_backend, standin, *, stall_s: float = STALL_S, port: int = 0, **gateway_kw) -> Rig:
    c = Config()
    big_cfg = replace(c.gateway.big, kind="openai", base_url=standin.base_url, model="ok", timeout_s=stall_s,
                      connect_timeout_s=1.0)
    cfg = replace(c.gateway, big=big_cfg, **gateway_kw)
    router = replace(c.router, breaker_failures=3, breaker_reset_s=15.0, latency_budget_ms=60_000)
    big = OpenAIBackend(big_cfg, "big", retries=0)
    clock = ManualClock()
    gw = await start_gateway(cfg, c.tools, router, port=port, backends={"small": small_backend, "big": big},
                             clock=clock)
    return Rig(gw, big, clock)


@pytest.fixture(scope="module")
async def rig(small_backend, standin):
    r = await _rig(small_backend, standin)
    yield r
    await r.close()


def tiers(turn) -> list[tuple[int, bool]]:
    return [(r.tier, r.failover) for r in turn.routes]


# ---------------------------------------------------------------- the big tier breaks mid-answer

@pytest.mark.parametrize("scenario", ["die-after-3", "stall-after-3", "malformed-after-3", "cut-after-3"])
async def test_big_tier_breaking_after_tokens_keeps_what_came_and_adds_a_short_spoken_notice(rig, standin, scenario):
    rig.scenario(scenario)
    turn = await one_turn(rig.gateway.port, query(f"f-{scenario}", ASK, route=BIG), timeout_s=20)
    assert tiers(turn) == [(pb.TIER_BIG, False)]
    assert turn.text == "Rome is the "  # the three tokens the device already heard stay said
    (err,) = turn.errors
    assert err.code == "UNAVAILABLE" and err.retryable
    assert err.spoken and len(err.spoken) < 60  # short, spoken after what came
    assert "big tier" in err.message  # the operator reads which tier and why
    assert turn.end.finish_reason == pb.TurnEnd.FINISH_REASON_ERROR
    req = standin.last(scenario)
    assert req.tokens_sent == 3
    assert await asyncio.to_thread(req.finished.wait, 10)  # the stand-in's handler ended: no stream left open


@pytest.mark.parametrize("scenario,cause", [
    ("die-after-0", "stream broke"),
    ("stall-before", "stalled"),
    ("malformed-after-0", "malformed"),
    ("cut-after-0", "without a finish_reason"),
])
async def test_big_tier_breaking_before_its_first_token_hands_the_turn_to_small(rig, standin, scenario, cause, caplog):
    rig.scenario(scenario)
    with caplog.at_level("WARNING", logger="gateway.turn"):
        turn = await one_turn(rig.gateway.port, query(f"b-{scenario}", ASK, route=BIG), timeout_s=30)
    assert tiers(turn) == [(pb.TIER_BIG, False), (pb.TIER_SMALL, True)]
    assert turn.routes[1].reason == "failover_big_failed"
    assert turn.text.strip() and not turn.errors
    assert turn.end.finish_reason in (pb.TurnEnd.FINISH_REASON_STOP, pb.TurnEnd.FINISH_REASON_LENGTH)
    assert any(cause in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert standin.last(scenario).tokens_sent == 0


@pytest.mark.parametrize("status", [429, 503])
async def test_overload_with_retry_after_keeps_the_big_tier_off_for_exactly_that_long(rig, standin, status):
    rig.scenario(f"status-{status}")
    turn = await one_turn(rig.gateway.port, query(f"o-{status}", ASK, route=BIG), timeout_s=30)
    assert tiers(turn) == [(pb.TIER_BIG, False), (pb.TIER_SMALL, True)] and turn.text.strip()
    assert rig.gateway.breakers["big"].state == OPEN  # one overload answer is enough: the server asked for a pause
    asked = len(standin.requests)

    rig.clock.advance(RETRY_AFTER_S - 0.5)
    during = await one_turn(rig.gateway.port, query(f"od-{status}", ASK, route=BIG), timeout_s=30)
    assert [(r.tier, r.reason) for r in during.routes] == [(pb.TIER_SMALL, "big_unavailable")]
    assert len(standin.requests) == asked  # the overloaded server was left alone

    rig.clock.advance(0.5)
    assert rig.gateway.breakers["big"].state == HALF_OPEN
    rig.big.model = "ok"
    after = await one_turn(rig.gateway.port, query(f"oa-{status}", ASK, route=BIG), timeout_s=30)
    assert tiers(after) == [(pb.TIER_BIG, False)] and after.text.startswith("Rome")
    assert rig.gateway.breakers["big"].state == CLOSED


async def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) == 0.0 and retry_after_s("soon") == 0.0 and retry_after_s("-3") == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert retry_after_s("Fri, 01 Jan 2100 00:00:00 GMT") > 2e9  # seconds until then


async def test_a_tier_that_stalls_past_the_turn_deadline_ends_with_a_spoken_timeout(small_backend, standin):
    r = await _rig(small_backend, standin, stall_s=30.0, turn_deadline_s=1.5)  # the deadline comes first
    try:
        r.big.model = "stall-before"
        turn = await one_turn(r.gateway.port, query("deadline", ASK, route=BIG), timeout_s=20)
        (err,) = turn.errors
        assert err.code == "DEADLINE_EXCEEDED" and "too long" in err.spoken
        assert "gateway.turn_deadline_s" in err.message
        assert turn.end.finish_reason == pb.TurnEnd.FINISH_REASON_ERROR
        req = standin.last("stall-before")
        assert await asyncio.to_thread(req.client_closed.wait, 10)  # the deadline closed the HTTP stream
    finally:
        await r.close()


# ---------------------------------------------------------------- the gateway or the network goes away

def _device(port: int) -> AssistantClient:
    cfg = DeviceConfig(gateway=f"127.0.0.1:{port}", turn_timeout_s=20.0)
    return AssistantClient(cfg, backoff=Backoff(initial_s=0.05, max_s=0.3), connect_timeout_s=1.0)


async def _first_text(turn) -> None:
    async for event in turn:
        if isinstance(event, TextEvent):
            return
    raise AssertionError("the turn ended before any text")


async def _answer(client: AssistantClient, text: str, **kw) -> str:
    events = [e async for e in client.ask(text, **kw)]
    assert isinstance(events[-1], TurnEndEvent) and events[-1].finish_reason in ("stop", "length")
    return "".join(e.text for e in events if isinstance(e, TextEvent))


async def test_gateway_restarting_mid_turn_ends_that_turn_spoken_and_the_next_turn_works(small_backend, standin):
    port = free_port()
    first = await _rig(small_backend, standin, stall_s=30.0, port=port)
    async with _device(port) as client:
        first.big.model = "stall-after-3"
        turn = client.ask(BIG_ASK)
        await asyncio.wait_for(_first_text(turn), 20)
        await first.gateway.stop(0)  # the gateway process dies while the big tier is mid-answer
        with pytest.raises(GatewayUnavailable) as caught:
            await asyncio.wait_for(collect_rest(turn), 5)
        assert caught.value.spoken == OFFLINE_SPOKEN
        assert await asyncio.to_thread(standin.last("stall-after-3").client_closed.wait, 10)
        await first.big.close()

        second = await _rig(small_backend, standin, port=port)
        try:
            assert await client.wait_connected(10)
            assert (await _answer(client, BIG_ASK)).startswith("Rome")
            assert client.connections == 2
        finally:
            await second.close()


@asynccontextmanager
async def _linked_device(small_backend, standin):
    """A gateway, a breakable link in front of it, and a device through the link that has been answered once."""
    rig = await _rig(small_backend, standin, stall_s=30.0)
    link = await FlakyLink(rig.gateway.port).start()
    try:
        async with _device(link.port) as client:
            assert (await _answer(client, BIG_ASK)).startswith("Rome")
            yield rig, link, client
    finally:
        await link.close()
        await rig.close()


async def test_network_cut_mid_turn_is_spoken_at_once_and_the_device_recovers_when_it_returns(small_backend, standin):
    async with _linked_device(small_backend, standin) as (rig, link, client):
        rig.big.model = "stall-after-3"
        turn = client.ask(BIG_ASK)
        await asyncio.wait_for(_first_text(turn), 20)
        await link.cut()  # Wi-Fi off: connections reset
        with pytest.raises(GatewayUnavailable) as caught:
            await asyncio.wait_for(collect_rest(turn), 5)
        assert caught.value.spoken == OFFLINE_SPOKEN
        # the gateway noticed the device went away and closed the big tier's stream for it
        assert await asyncio.to_thread(standin.last("stall-after-3").client_closed.wait, 10)
        with pytest.raises(GatewayUnavailable):  # while down: fails fast, never hangs
            await asyncio.wait_for(_answer(client, BIG_ASK), 5)

        rig.big.model = "ok"
        await link.restore()
        assert await client.wait_connected(10)
        assert (await _answer(client, BIG_ASK)).startswith("Rome")


async def test_a_silent_link_is_dropped_after_one_turn_and_the_next_turn_reconnects(small_backend, standin):
    async with _linked_device(small_backend, standin) as (rig, link, client):
        link.blackhole()  # out of range: sockets stay open, nothing passes, no reset to notice
        with pytest.raises(GatewayUnavailable) as caught:
            await asyncio.wait_for(_answer(client, BIG_ASK, timeout_s=1.0), 10)
        assert caught.value.spoken == OFFLINE_SPOKEN and "sent nothing" in str(caught.value)
        before = link.connections
        await link.restore()
        assert await client.wait_connected(10)
        assert (await _answer(client, BIG_ASK)).startswith("Rome")
        assert link.connections > before  # a new connection, not the dead one revived by keepalive


async def test_device_hears_the_notice_after_the_words_that_came(rig):
    """Through the real client: text events first, then a GatewayError whose spoken line the engine says."""
    port = rig.gateway.port
    async with _device(port) as client:
        rig.scenario("die-after-3")
        heard: list[str] = []
        with pytest.raises(GatewayError) as caught:
            async for event in client.ask(BIG_ASK):
                if isinstance(event, TextEvent):
                    heard.append(event.text)
        assert "".join(heard) == "Rome is the "
        assert caught.value.spoken and caught.value.code == "UNAVAILABLE"


# ---------------------------------------------------------------- a device that stops reading

async def test_a_device_that_never_reads_is_dropped_with_bounded_memory_while_others_are_served(
        small_backend, standin, caplog):
    rig = await _rig(small_backend, standin, stall_s=30.0, max_outbound_messages=32, send_stall_s=0.5)
    rig.big.max_tokens = 1_000_000
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{rig.gateway.port}")
    try:
        async def requests():
            yield query("flood", "#flood tell me everything", route=BIG)
            await asyncio.Event().wait()  # keep the stream open, never read a reply

        with caplog.at_level("WARNING", logger="gateway.server"):
            call = pb_grpc.AssistantStub(channel).Converse(requests(), timeout=60)  # held open, never read
            flood = await asyncio.to_thread(standin.last, "flood")
            # the gateway stops pulling from the model once its queue for this device is full and stalled
            assert await asyncio.to_thread(flood.finished.wait, 30)
            polite = await one_turn(rig.gateway.port, query("polite", "What is the capital of Italy?", route=BIG))
        assert polite.text.startswith("Rome") and not polite.errors  # another device was served meanwhile
        sent_mb = flood.bytes_sent / 1e6
        assert sent_mb < 64, f"the gateway kept reading {sent_mb:.0f} MB for a device that reads nothing"
        assert rig.gateway.metrics.registry.get_sample_value("voxlens_streams_not_reading_total") == 1
        assert any("stopped reading" in r.getMessage() for r in caplog.records)
        print(f"never-reading device: the model stream was closed after {sent_mb:.1f} MB "
              f"({flood.tokens_sent} chunks of 1 KB)")
        call.cancel()
    finally:
        await channel.close()
        await rig.close()
