"""The big tier is a real llama_cpp.server process reached over the OpenAI API; killing it opens the breaker."""
from __future__ import annotations

import asyncio

import pytest

from gateway.breaker import CLOSED, HALF_OPEN, OPEN
from gateway.server import start_gateway
from protos import assistant_pb2 as pb
from tests.gateway_support import cancel_after_deltas, one_turn, query
from voxlens.config import Config, replace
from voxlens.timing import ManualClock

pytestmark = pytest.mark.asyncio(loop_scope="session")
BIG = pb.ROUTE_PREFERENCE_BIG


RESET_S = 15.0


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
async def gateway(small_backend, big_server, clock):
    c = Config()
    big_cfg = replace(c.gateway.big, kind="openai", base_url=big_server.base_url, model=big_server.alias,
                      max_tokens=12, temperature=0.0, timeout_s=30.0, connect_timeout_s=1.0)
    cfg = replace(c.gateway, big=big_cfg)
    router = replace(c.router, breaker_failures=2, breaker_reset_s=RESET_S, latency_budget_ms=60_000)  # CPU stand-in is slow
    from gateway.backends.openai_backend import OpenAIBackend

    big = OpenAIBackend(big_cfg, "big", retries=1, backoff_s=0.05)
    gw = await start_gateway(cfg, c.tools, router, port=0, backends={"small": small_backend, "big": big},
                             clock=clock)
    yield gw
    await gw.stop(0.5)
    await big.close()


async def test_big_tier_answers_then_breaker_opens_on_kill_and_closes_on_restart(gateway, big_server, clock):
    ask = "What is the capital of Italy? One word."
    first = await one_turn(gateway.port, query("b1", ask, route=BIG))
    assert [(r.tier, r.reason, r.failover) for r in first.routes] == [(pb.TIER_BIG, "explicit_preference", False)]
    assert first.routes[0].model == big_server.alias
    assert "rome" in first.text.lower() and first.end.tokens_out > 0

    big_server.stop()
    for i in range(2):  # each fails before its first token: the turn moves to SMALL and says so
        turn = await one_turn(gateway.port, query(f"k{i}", ask, route=BIG))
        assert [(r.tier, r.failover) for r in turn.routes] == [(pb.TIER_BIG, False), (pb.TIER_SMALL, True)]
        assert turn.routes[1].reason == "failover_big_failed"
        assert turn.text and not turn.errors
    assert gateway.breakers["big"].state == OPEN

    open_turn = await one_turn(gateway.port, query("o1", ask, route=BIG))
    assert [(r.tier, r.reason) for r in open_turn.routes] == [(pb.TIER_SMALL, "big_unavailable")]

    await asyncio.to_thread(big_server.start)
    clock.advance(RESET_S - 0.1)
    assert gateway.breakers["big"].state == OPEN
    clock.advance(0.1)  # breaker_reset_s has passed: the next turn is the half-open probe
    assert gateway.breakers["big"].state == HALF_OPEN
    back = await one_turn(gateway.port, query("r1", ask, route=BIG))
    assert [(r.tier, r.reason, r.failover) for r in back.routes] == [(pb.TIER_BIG, "explicit_preference", False)]
    assert back.text and gateway.breakers["big"].state == CLOSED


async def test_complex_question_routes_big_on_auto(gateway):
    turn = await one_turn(gateway.port, query("cx", "Explain why the sea is salty."))
    assert (turn.routes[0].tier, turn.routes[0].reason) == (pb.TIER_BIG, "complex_query")
    assert turn.text


async def test_cancel_on_the_big_tier_closes_the_http_stream_so_the_server_stops(gateway, big_server):
    big = gateway.backends["big"]
    big.max_tokens = 300
    log_start = len(big_server.log_path.read_text(errors="replace"))
    try:
        _, end = await cancel_after_deltas(gateway.port, query("bc", "Count from 1 to 200, separated by commas.", route=BIG))
    finally:
        big.max_tokens = 12
    assert end.finish_reason == pb.TurnEnd.FINISH_REASON_CANCELLED
    await logged(big_server, "Disconnected from client", log_start)  # the server stops the generation


async def logged(server, text: str, start: int, timeout_s: float = 60.0) -> None:
    """Wait until the server's (unbuffered) log shows `text` after `start`; the outer timeout only catches a hang."""
    async with asyncio.timeout(timeout_s):
        while text not in server.log_path.read_text(errors="replace")[start:]:
            await asyncio.sleep(0.05)


async def test_a_half_open_probe_cancelled_after_its_first_token_frees_the_probe(gateway, clock):
    breaker = gateway.breakers["big"]
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == OPEN
    clock.advance(RESET_S)
    assert breaker.state == HALF_OPEN and breaker.available()
    big = gateway.backends["big"]
    big.max_tokens = 300
    try:
        deltas, end = await cancel_after_deltas(gateway.port, query("pc", "Count from 1 to 200, separated by commas.",
                                                                    route=BIG), after=2)
    finally:
        big.max_tokens = 12
    assert deltas >= 2 and end.finish_reason == pb.TurnEnd.FINISH_REASON_CANCELLED
    assert breaker.available(), "a cancelled probe must not keep the big tier off until a restart"
    back = await one_turn(gateway.port, query("pc2", "What is the capital of Italy? One word.", route=BIG))
    assert [(r.tier, r.reason) for r in back.routes] == [(pb.TIER_BIG, "explicit_preference")]
    assert breaker.state == CLOSED
