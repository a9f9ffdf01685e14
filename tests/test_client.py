"""The gRPC client over real gRPC on 127.0.0.1, against the real gateway (gateway/server.py).

The gateway's tiers are the instant backend (gateway/backends/instant.py: no model to load, answers the
tests can predict; `echo` answers with the question, `word_s` paces the words like a model writing them);
its weather tool reads the Open-Meteo stand-in. What the gateway did is read from its own metrics and from
what its backends were asked, not from a test servicer.
"""
from __future__ import annotations

import asyncio
import random
import socket
import subprocess
from pathlib import Path

import pytest
import pytest_asyncio

from device.client import AssistantClient, device_context, parse_target
from device.client_events import (ClientConfigError, GatewayError, GatewayUnavailable, OFFLINE_SPOKEN, RouteEvent,
                                  TextEvent, ToolEvent, TurnEndEvent, TurnTimeout)
from device.commands import understand
from protos import assistant_pb2 as pb
from tests.gateway_support import TOKEN, LiveGateway, free_port, until
from voxlens.config import DeviceConfig
from voxlens.retry import Backoff, retry

FAST = Backoff(initial_s=0.05, max_s=0.2)
SLOW = {"words": tuple(f"word{i} " for i in range(50)), "word_s": 0.05}   # a 2.5 s answer
HANGS = {"word_s": 3600.0}                                                # a model that never answers


@pytest_asyncio.fixture(loop_scope="function")  # the gateway must run on the test's own loop
async def serve(open_meteo):
    started: list[LiveGateway] = []

    async def start(**kw) -> LiveGateway:
        gw = LiveGateway(open_meteo, **kw)
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        await gw.stop()


class BatteryAndWifi:
    def battery_percent(self) -> int | None:
        return 73

    def network(self) -> int:
        return pb.NETWORK_TYPE_WIFI


def config(port: int, **kw) -> DeviceConfig:
    return DeviceConfig(gateway=f"127.0.0.1:{port}", token=kw.pop("token", TOKEN), **kw)


async def collect(client: AssistantClient, query, **kw) -> list:
    return [event async for event in client.ask(query, **kw)]


def said(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextEvent))


async def test_a_turn_carries_the_query_and_its_context_and_gives_the_gateways_events(serve, open_meteo) -> None:
    live = await serve()
    paris = dict(place_name="Paris, France", latitude=48.8566, longitude=2.3522, time_zone="Europe/Paris")
    asked_before = len(open_meteo.requests)
    async with AssistantClient(config(live.port, **paris), status=BatteryAndWifi(), backoff=FAST) as client:
        events = await collect(client, understand("ask the big model what's the weather in Paris tomorrow"))
    route = events[0]
    assert isinstance(route, RouteEvent) and (route.tier, route.model, route.reason) == (
        "big", "instant", "explicit_preference")       # the route preference arrived
    tools = [(e.phase, e.status) for e in events if isinstance(e, ToolEvent)]
    assert tools == [("started", "Checking the weather"), ("finished", "")]
    # the intent's slots arrived: the weather tool looked up Paris, and tomorrow's forecast was phrased
    assert ("/v1/search", "Paris") in [(path, q.get("name")) for path, q in open_meteo.requests[asked_before:]]
    assert said(events).endswith("Tomorrow in Paris: light rain, high of 18 and low of 10 degrees.")
    end = events[-1]
    assert isinstance(end, TurnEndEvent) and end.finish_reason == "stop"
    assert {"route", "tool.weather", "total"} <= set(end.timings_ms) and all(v >= 0 for v in end.timings_ms.values())
    assert all(a.at_s <= b.at_s for a, b in zip(events, events[1:]))
    (asked,) = live.big.requests                      # the model was given the device's place and time zone
    assert "Paris, France" in asked.messages[0]["content"] and "Europe/Paris" in asked.messages[0]["content"]


async def test_concurrent_turns_share_one_stream(serve) -> None:
    live = await serve()
    async with AssistantClient(config(live.port), backoff=FAST) as client:
        results = await asyncio.gather(*(collect(client, f"question number {i}") for i in range(5)))
        for i, events in enumerate(results):
            assert said(events).strip() == f"question number {i}"  # no turn got another turn's words
    assert live.count("voxlens_streams_total") == 1
    assert live.count("voxlens_turns_total", finish_reason="stop") == 5
    assert len(live.gw.runner.memory) == 1  # one conversation


async def test_cancel_reaches_the_gateway_and_ends_the_turn(serve) -> None:
    live = await serve(**SLOW)
    async with AssistantClient(config(live.port), backoff=FAST) as client:
        turn_id = client.new_turn_id()
        events = []
        async for event in client.ask("tell me a long story", turn_id=turn_id):
            events.append(event)
            if isinstance(event, TextEvent):
                assert client.cancel(turn_id)
        assert isinstance(events[-1], TurnEndEvent) and events[-1].finish_reason == "cancelled"
        assert len([e for e in events if isinstance(e, TextEvent)]) < 10
    assert live.count("voxlens_turns_total", finish_reason="cancelled") == 1
    assert live.stopped == 1  # the model stopped writing


async def test_leaving_the_loop_early_sends_cancel(serve) -> None:
    live = await serve(**SLOW)
    async with AssistantClient(config(live.port), backoff=FAST) as client:
        stream = client.ask("tell me a long story")
        async for event in stream:
            if isinstance(event, TextEvent):
                break  # barge-in: the engine stops listening
        await stream.aclose()
        await until(lambda: live.stopped == 1)
    assert live.count("voxlens_turns_total", finish_reason="cancelled") == 1


async def test_unreachable_gateway_fails_fast_with_a_spoken_message() -> None:
    async with AssistantClient(config(free_port()), backoff=FAST) as client:
        for _ in range(2):  # at start-up and again later: never a hang
            with pytest.raises(GatewayUnavailable) as caught:
                await asyncio.wait_for(collect(client, "what is the meaning of life"), 1.0)
            assert caught.value.spoken == OFFLINE_SPOKEN


async def test_silent_gateway_fails_within_the_connect_timeout() -> None:
    # a port that accepts TCP but never speaks HTTP/2 (a hung gateway): the channel never becomes READY
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        async with AssistantClient(DeviceConfig(gateway=f"127.0.0.1:{port}"), backoff=FAST,
                                   connect_timeout_s=0.3) as client:
            loop = asyncio.get_running_loop()
            start_s = loop.time()
            with pytest.raises(GatewayUnavailable) as caught:
                await asyncio.wait_for(collect(client, "hello"), 1.0)
            assert loop.time() - start_s >= 0.2  # it did wait for the handshake, then gave up
            assert caught.value.spoken == OFFLINE_SPOKEN


async def test_reconnects_after_the_gateway_restarts(serve) -> None:
    live = await serve(**SLOW)
    async with AssistantClient(config(live.port), backoff=FAST) as client:
        assert said(await collect(client, "first"))
        turn = client.ask("slow and steady")
        first = await anext(turn)
        assert isinstance(first, RouteEvent)
        await live.stop()
        with pytest.raises(GatewayUnavailable):  # the in-flight turn ends at once, no hang
            await asyncio.wait_for(collect_rest(turn), 1.0)
        with pytest.raises(GatewayUnavailable):
            await asyncio.wait_for(collect(client, "while down"), 1.0)
        live.small.word_s = live.big.word_s = 0.0
        live.small.echo = live.big.echo = True
        await live.start()
        assert await client.wait_connected(3.0)
        assert said(await collect(client, "back again")).strip() == "back again"
        assert live.count("voxlens_streams_total") == 1  # the restarted gateway: one new stream


async def collect_rest(turn) -> list:
    return [event async for event in turn]


async def test_per_turn_deadline_raises_and_cancels(serve) -> None:
    live = await serve(**HANGS)
    async with AssistantClient(config(live.port), backoff=FAST) as client:
        turn_id = client.new_turn_id()
        with pytest.raises(TurnTimeout) as caught:
            await collect(client, "hang", turn_id=turn_id, timeout_s=0.3)
        assert "turn_timeout_s" in str(caught.value) and caught.value.spoken
        await until(lambda: live.stopped == 1)  # the Cancel reached the gateway: the model stopped waiting
    assert live.count("voxlens_turns_total", finish_reason="cancelled") == 1


async def test_typed_gateway_error_is_raised_with_its_spoken_text(serve) -> None:
    live = await serve()
    async with AssistantClient(config(live.port), backoff=FAST) as client:
        with pytest.raises(GatewayError) as caught:
            await collect(client, "why " * (live.cfg.max_text_chars // 4 + 1))
        assert (caught.value.code, caught.value.retryable) == ("INVALID_ARGUMENT", False)
        assert caught.value.spoken == "That was too long for me. Please ask a shorter question."
        assert "gateway.max_text_chars" in str(caught.value)
        # the stream is still good for the next turn
        assert isinstance((await collect(client, "ok"))[-1], TurnEndEvent)
    assert live.count("voxlens_streams_total") == 1


async def test_wrong_token_is_a_clear_refusal(serve) -> None:
    live = await serve()
    async with AssistantClient(config(live.port, token="wrong"), backoff=FAST) as client:
        with pytest.raises(GatewayError) as caught:
            await asyncio.wait_for(collect(client, "hello"), 2.0)
    assert caught.value.code == "UNAUTHENTICATED"
    assert "check [device] token" in str(caught.value)
    assert caught.value.spoken == "The assistant didn't accept this device."
    assert live.count("voxlens_errors_total", code="UNAUTHENTICATED") >= 1 and not live.small.requests


async def test_tls_with_a_private_ca(serve, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    live = await serve(tls=(cert, key))
    async with AssistantClient(config(live.port, tls_ca=str(cert)), backoff=FAST) as client:
        assert said(await collect(client, "over tls")).strip() == "over tls"
    # the same server refuses a plaintext client: it fails fast, not hangs
    async with AssistantClient(config(live.port), backoff=FAST) as plain:
        with pytest.raises(GatewayUnavailable):
            await asyncio.wait_for(collect(plain, "plaintext"), 2.0)


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match=r"not HOST:PORT; set \[device\] gateway"):
        parse_target("localhost")
    with pytest.raises(ClientConfigError, match=r"set \[device\] tls_ca"):
        AssistantClient(DeviceConfig(tls_ca=str(tmp_path / "missing.pem")))


def test_device_context_from_config_and_status() -> None:
    ctx = device_context(DeviceConfig(time_zone="Asia/Tokyo", locale="ja-JP", latitude=35.7, longitude=139.7,
                                      place_name="Tokyo"), BatteryAndWifi(), pb.ROUTE_PREFERENCE_SMALL)
    assert (ctx.time_zone, ctx.locale, ctx.location.latitude, ctx.battery_percent) == ("Asia/Tokyo", "ja-JP", 35.7, 73)
    assert ctx.route_preference == pb.ROUTE_PREFERENCE_SMALL
    assert not device_context(DeviceConfig()).HasField("battery_percent")  # unknown stays unset, not 0


async def test_conversation_renews_after_the_ttl() -> None:
    now = [0.0]
    client = AssistantClient(DeviceConfig(conversation_ttl_s=60.0), clock=lambda: now[0])
    first = client.conversation_id
    now[0] = 30.0
    assert client.conversation_id == first
    now[0] = 200.0
    assert client.conversation_id != first


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0, multiplier=2.0, jitter=0.5)
    assert [backoff.delay_s(a, rand=lambda: 0.0) for a in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay_s(3, rand=lambda: 1.0) == pytest.approx(0.4)
    rng = random.Random(7)
    delays = {round(backoff.delay_s(2, rand=rng.random), 6) for _ in range(20)}
    assert len(delays) > 10 and all(0.2 <= d <= 0.4 for d in delays)
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(initial_s=0)


async def test_retry_helper_retries_only_what_it_should() -> None:
    calls, slept = [], []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    assert await retry(flaky, backoff=Backoff(initial_s=0.1, jitter=0.0), attempts=3, sleep=fake_sleep) == "up"
    assert slept == pytest.approx([0.1, 0.2])

    async def broken() -> None:
        raise KeyError("not retryable")

    with pytest.raises(KeyError):
        await retry(broken, attempts=5, sleep=fake_sleep)
    calls.clear()
    with pytest.raises(ConnectionError):
        await retry(flaky, attempts=2, sleep=fake_sleep)


async def test_voxlens_ask_goes_through_the_device_client(serve, capsys) -> None:
    """`voxlens ask` sends what a device sends (its client, DeviceContext, token) and prints what it reads."""
    import json

    from gateway.cli import _ask

    live = await serve()
    device = DeviceConfig(place_name="Paris", latitude=48.85, longitude=2.35, time_zone="Europe/Paris")
    assert await _ask("what is the capital of France", f"127.0.0.1:{live.port}", TOKEN, device, "small", False) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "what is the capital of France"          # the echo tier's answer, on stdout
    assert "[route: small instant (explicit_preference)]" in err and "[stop; tokens" in err
    assert "The user is in Paris." in live.small.requests[-1].messages[0]["content"]
    assert await _ask("hello", f"127.0.0.1:{live.port}", TOKEN, device, "big", True) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events][0] == "RouteEvent" and events[0]["tier"] == "big"
    assert events[-1]["event"] == "TurnEndEvent" and events[-1]["finish_reason"] == "stop"
    assert await _ask("hello", f"127.0.0.1:{live.port}", "wrong", device, "auto", False) == 1
    assert "didn't accept this device" in capsys.readouterr().err
