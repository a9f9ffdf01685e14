"""A private turn never reaches a tier that is not local, whatever else fails.

The big tier is a real llama_cpp.server process over the OpenAI API; what it
was asked is read from its own access log and from the prompt tokens it
reports, so "never reached" is what the remote side saw, not what the gateway
meant to do.
"""
from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager

import pytest

from gateway.backends.openai_backend import OpenAIBackend
from gateway.server import start_gateway
from gateway.turn import SPOKEN_NOT_PRIVATE
from protos import assistant_pb2 as pb
from tests.gateway_support import free_port, one_turn, query
from voxlens.config import Config, replace

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRIVATE = "What should I do about my bank account?"
POST = '"POST /v1/chat/completions'


def _big(big_server, **changes) -> OpenAIBackend:
    c = Config()
    cfg = replace(c.gateway.big, kind="openai", base_url=big_server.base_url, model=big_server.alias, max_tokens=8,
                  temperature=0.0, connect_timeout_s=1.0, **changes)
    return OpenAIBackend(cfg, "big", retries=0)


def _posts(big_server, start: int) -> int:
    return big_server.log_path.read_text(errors="replace")[start:].count(POST)


async def _posts_reach(big_server, start: int, n: int, timeout_s: float = 60.0) -> int:
    async with asyncio.timeout(timeout_s):
        while _posts(big_server, start) < n:
            await asyncio.sleep(0.05)
    return _posts(big_server, start)


async def _last_prompt_tokens(big_server, timeout_s: float = 60.0) -> int:
    """The prompt length of the server's last request, from llama.cpp's own log (prefix-cache hit + evaluated)."""
    async with asyncio.timeout(timeout_s):
        while "total time" not in (seg := big_server.log_path.read_text(errors="replace").rsplit(POST, 1)[-1]):
            await asyncio.sleep(0.05)
    if hit := re.search(r"(\d+) prefix-match hit, remaining (\d+) prompt tokens", seg):
        return int(hit[1]) + int(hit[2])
    return int(re.search(r"prompt eval time = .*?/\s*(\d+) tokens", seg)[1])


@asynccontextmanager
async def _serving(small, big, open_meteo=None):
    """A gateway on loopback with these tiers; the OpenAI backends made here are closed with it."""
    c = Config()
    tools = c.tools if open_meteo is None else replace(c.tools, geocoding_url=open_meteo.geocoding_url,
                                                       forecast_url=open_meteo.forecast_url)
    gw = await start_gateway(c.gateway, tools, c.router, port=0, backends={"small": small, "big": big})
    try:
        yield gw
    finally:
        await gw.stop(0.5)
        for backend in (small, big):
            if isinstance(backend, OpenAIBackend):
                await backend.close()


@pytest.fixture
async def down_small_gateway(big_server, open_meteo):
    """The small tier is a local server that is down (nothing listens); the big tier is up."""
    small = OpenAIBackend(replace(Config().gateway.small, kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1",
                                  local=True, connect_timeout_s=0.5), "small", retries=0)
    async with _serving(small, _big(big_server), open_meteo) as gw:
        yield gw


async def test_private_turn_is_not_failed_over_to_the_remote_tier(down_small_gateway, big_server):
    start = len(big_server.log_path.read_text(errors="replace"))
    private = await one_turn(down_small_gateway.port, query("p1", PRIVATE))
    assert all(r.tier != pb.TIER_BIG for r in private.routes), private.routes
    (err,) = private.errors
    assert err.spoken == SPOKEN_NOT_PRIVATE and "gateway.small" in err.message and "never sent" in err.message
    assert private.end.finish_reason == pb.TurnEnd.FINISH_REASON_ERROR

    # the same failure on an ordinary question does fail over: the remote side sees exactly that one request
    ordinary = await one_turn(down_small_gateway.port, query("p2", "What is the capital of France? One word."))
    assert [(r.tier, r.failover) for r in ordinary.routes] == [(pb.TIER_SMALL, False), (pb.TIER_BIG, True)]
    assert ordinary.text and not ordinary.errors
    assert await _posts_reach(big_server, start, 1) == 1


@pytest.fixture
async def no_small_gateway(big_server, open_meteo):
    """No small tier configured at all; the big tier is up."""
    async with _serving(None, _big(big_server), open_meteo) as gw:
        yield gw


async def test_private_turn_with_no_small_tier_is_refused_not_sent_big(no_small_gateway, big_server):
    start = len(big_server.log_path.read_text(errors="replace"))
    private = await one_turn(no_small_gateway.port, query("n1", PRIVATE, route=pb.ROUTE_PREFERENCE_BIG))
    assert [(r.tier, r.reason) for r in private.routes] == [(pb.TIER_NONE, "private_no_local_tier")]
    assert [e.spoken for e in private.errors] == [SPOKEN_NOT_PRIVATE]
    ordinary = await one_turn(no_small_gateway.port, query("n2", "What is the capital of France? One word."))
    assert [(r.tier, r.reason) for r in ordinary.routes] == [(pb.TIER_BIG, "small_unavailable")]
    assert await _posts_reach(big_server, start, 1) == 1


async def test_private_weather_intent_is_answered_by_template_not_phrased_remotely(no_small_gateway, big_server):
    start = len(big_server.log_path.read_text(errors="replace"))
    turn = await one_turn(no_small_gateway.port, query("w1", "What's the weather at my address in Paris?",
                                                       intent="weather", slots={"city": "Paris"}))
    assert [(r.tier, r.model) for r in turn.routes] == [(pb.TIER_NONE, "template")]
    assert "21" in turn.text and not turn.errors
    # the same intent without the private words is phrased by the big tier: one request, and only that one
    ordinary = await one_turn(no_small_gateway.port, query("w2", "What's the weather in Paris?",
                                                           intent="weather", slots={"city": "Paris"}))
    assert [r.tier for r in ordinary.routes] == [pb.TIER_BIG]
    assert await _posts_reach(big_server, start, 1) == 1


async def test_a_declared_local_server_may_answer_private_turns(big_server):
    # e.g. a vLLM on your own LAN, declared `local = true`
    async with _serving(None, _big(big_server, local=True)) as gw:
        turn = await one_turn(gw.port, query("l1", PRIVATE))
    assert [r.tier for r in turn.routes] == [pb.TIER_BIG] and turn.text and not turn.errors


async def test_private_exchanges_stay_out_of_the_history_a_remote_tier_sees(small_backend, big_server):
    """The remote server's own log shows how long a prompt it was sent: a private exchange adds nothing to it."""
    follow = "Tell me a fact about the sea."
    async with _serving(small_backend, _big(big_server)) as gw:
        async def big_prompt_tokens(conversation: str, first: str) -> int:
            if first:
                await one_turn(gw.port, query(f"{conversation}-1", first, conversation_id=conversation,
                                              route=pb.ROUTE_PREFERENCE_SMALL))
            turn = await one_turn(gw.port, query(f"{conversation}-2", follow, conversation_id=conversation,
                                                 route=pb.ROUTE_PREFERENCE_BIG))
            assert [r.tier for r in turn.routes] == [pb.TIER_BIG]
            return await _last_prompt_tokens(big_server)

        fresh = await big_prompt_tokens("cf", "")
        after_private = await big_prompt_tokens("cp", PRIVATE)
        after_ordinary = await big_prompt_tokens("co", "What should I do about my garden?")
    assert after_private == fresh
    assert after_ordinary > fresh + 10  # the history does reach the remote tier when it is not private
