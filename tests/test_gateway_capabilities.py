"""The tier executor decides from what each backend declares (local, languages, context, in process), never
from its tier's name: privacy, failover and the breakers follow from what a backend is.

Real gateway over loopback gRPC; the servers are OpenAI stand-ins speaking vLLM's streaming format
(tests/openai_standin.py), one per tier, so "never reached" is what each server saw; the in-process model is
the instant backend.
"""
from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from gateway.backends.base import Capabilities
from gateway.backends.instant import InstantBackend
from gateway.backends.openai_backend import OpenAIBackend
from gateway.breaker import CLOSED, HALF_OPEN, OPEN
from gateway.server import start_gateway
from gateway.turn import SPOKEN_NO_LANGUAGE, SPOKEN_NOT_PRIVATE, SPOKEN_TOO_LONG
from protos import assistant_pb2 as pb
from tests.gateway_support import free_port, one_turn, query
from tests.openai_standin import RETRY_AFTER_S, start_openai_standin
from voxlens.config import Config, replace
from voxlens.phrases import translate
from voxlens.timing import ManualClock

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRIVATE = "What should I do about my bank account?"
ASK = "What is the capital of Italy?"
SMALL, BIG, NONE = pb.TIER_SMALL, pb.TIER_BIG, pb.TIER_NONE


@pytest.fixture(scope="module")
def servers():
    """Two OpenAI-compatible servers: the one a small tier reaches, the one a big tier reaches."""
    small, big = start_openai_standin(), start_openai_standin()
    yield small, big
    small.close()
    big.close()


def _openai(base_url: str, tier: str, **cfg) -> OpenAIBackend:
    c = Config()
    cfg = {"model": "ok", "connect_timeout_s": 1.0, "max_tokens": 16, **cfg}
    return OpenAIBackend(replace(c.gateway.big, kind="openai", base_url=base_url, **cfg), tier, retries=0)


def _in_process(**caps) -> InstantBackend:
    return InstantBackend("small", capabilities=Capabilities(local=True, in_process=True, **caps))


@asynccontextmanager
async def _serving(small, big, clock: ManualClock | None = None):
    c = Config()
    router = replace(c.router, latency_budget_ms=60_000)
    gw = await start_gateway(c.gateway, c.tools, router, port=0, backends={"small": small, "big": big},
                             clock=clock or ManualClock())
    try:
        yield gw
    finally:
        await gw.stop(0.5)
        for backend in (small, big):
            if isinstance(backend, OpenAIBackend):
                await backend.close()


def _ask(turn_id: str, text: str, language: str = "en", **kw) -> pb.DeviceMessage:
    message = query(turn_id, text, **kw)
    message.query.language = language
    return message


@pytest.mark.parametrize("local", [True, False])
async def test_a_private_turn_fails_over_to_a_local_big_backend_never_to_a_remote_one(servers, local):
    """The small tier (a local server) is down: a big backend declared local (a vLLM on your LAN) takes the
    private turn; a remote one is never sent it."""
    _, big_server = servers
    down = _openai(f"http://127.0.0.1:{free_port()}/v1", "small", local=True)
    before = len(big_server.requests)
    async with _serving(down, _openai(big_server.base_url, "big", local=local)) as gw:
        turn = await one_turn(gw.port, _ask("p1", PRIVATE))
    sent = len(big_server.requests) - before
    if local:
        assert [(r.tier, r.failover) for r in turn.routes] == [(SMALL, False), (BIG, True)]
        assert turn.text.startswith("Rome") and not turn.errors and sent == 1
    else:
        assert [r.tier for r in turn.routes] == [SMALL]
        assert [e.spoken for e in turn.errors] == [SPOKEN_NOT_PRIVATE] and sent == 0


async def test_a_turn_goes_to_the_backend_that_declares_its_language(servers):
    _, big_server = servers
    small = _in_process(languages=("en",))
    before = len(big_server.requests)
    async with _serving(small, _openai(big_server.base_url, "big", languages=("en", "fr"))) as gw:
        french = await one_turn(gw.port, _ask("l1", "Quelle est la capitale de l'Italie ?", "fr-FR"))
        english = await one_turn(gw.port, _ask("l2", ASK, "en-US"))
        german = await one_turn(gw.port, _ask("l3", "Was ist die Hauptstadt von Italien?", "de"))
    assert [(r.tier, r.reason, r.failover) for r in french.routes] == [(BIG, "small_language", False)]
    assert french.text.startswith("Rome") and not french.errors
    assert [r.tier for r in english.routes] == [SMALL] and english.text == "It is sunny today."
    assert [(r.tier, r.reason) for r in german.routes] == [(NONE, "no_tier_can_answer")]
    (err,) = german.errors
    assert err.spoken == translate("de", SPOKEN_NO_LANGUAGE) != SPOKEN_NO_LANGUAGE   # said in the turn's language
    assert "'de'" in err.message and "gateway.big.languages" in err.message
    assert len(small.requests) == 1                     # the English turn only
    assert len(big_server.requests) - before == 1       # the French turn only


async def test_a_prompt_too_long_for_one_backend_goes_to_the_other(servers):
    _, big_server = servers
    long_question = "Tell me about " + "the long grey sea " * 60 + "please."  # ~1,100 characters
    small = _in_process(context_tokens=256)
    before = len(big_server.requests)
    async with _serving(small, _openai(big_server.base_url, "big")) as gw:
        turn = await one_turn(gw.port, _ask("c1", long_question, route=pb.ROUTE_PREFERENCE_SMALL))
        short = await one_turn(gw.port, _ask("c2", ASK, route=pb.ROUTE_PREFERENCE_SMALL))
    assert [(r.tier, r.reason, r.failover) for r in turn.routes] == [(BIG, "small_context", False)]
    assert turn.text.startswith("Rome") and not turn.errors
    assert [r.tier for r in short.routes] == [SMALL]
    assert len(small.requests) == 1 and len(big_server.requests) - before == 1  # the long one was never sent small

    tiny = _openai(big_server.base_url, "big", context_tokens=256)
    async with _serving(_in_process(context_tokens=256), tiny) as gw:
        refused = await one_turn(gw.port, _ask("c3", long_question))
    (err,) = refused.errors
    assert err.spoken == SPOKEN_TOO_LONG and "context_tokens" in err.message and not err.retryable
    assert len(big_server.requests) - before == 1


async def test_each_backend_has_its_own_breaker_and_an_in_process_one_has_none(servers):
    small_server, big_server = servers
    clock = ManualClock()
    small = _openai(small_server.base_url, "small", local=True, model="status-503")  # overloaded, Retry-After
    async with _serving(small, _openai(big_server.base_url, "big"), clock) as gw:
        first = await one_turn(gw.port, _ask("b1", ASK))
        assert [(r.tier, r.failover) for r in first.routes] == [(SMALL, False), (BIG, True)]
        assert first.text.startswith("Rome")
        assert (gw.breakers["small"].state, gw.breakers["big"].state) == (OPEN, CLOSED)
        asked_small = len(small_server.requests)

        second = await one_turn(gw.port, _ask("b2", ASK))   # the small server is not asked while it is open
        assert [(r.tier, r.reason, r.failover) for r in second.routes] == [(BIG, "small_unavailable", False)]
        assert len(small_server.requests) == asked_small

        clock.advance(RETRY_AFTER_S)
        assert gw.breakers["small"].state == HALF_OPEN
        small.model = "ok"                                  # the server is back: the probe closes the breaker
        third = await one_turn(gw.port, _ask("b3", ASK))
        assert [r.tier for r in third.routes] == [SMALL] and gw.breakers["small"].state == CLOSED

    async with _serving(_in_process(), _openai(big_server.base_url, "big")) as gw:
        assert set(gw.breakers) == {"big"}   # a model inside the gateway has no connection to break
