"""The gRPC client over real gRPC on 127.0.0.1, against a small real grpc.aio servicer of the same contract.

The servicer is a test peer of the voxlens.v1 protocol (the real gateway is its own
stream of work): it echoes the query as deltas, streams slowly when asked, honours
Cancel, checks the bearer token, and can be stopped and restarted on the same port.
"""
from __future__ import annotations

import asyncio
import random
import socket
import subprocess
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from device.client import AssistantClient, device_context, parse_target
from device.client_events import (ClientConfigError, GatewayError, GatewayUnavailable, OFFLINE_SPOKEN, RouteEvent,
                                  TextEvent, ToolEvent, TurnEndEvent, TurnTimeout)
from device.commands import understand
from protos import assistant_pb2 as pb
from tests.grpc_peer import BatteryAndWifi, EchoServicer, PeerServer, free_port
from voxlens.config import DeviceConfig
from voxlens.retry import Backoff, retry

FAST = Backoff(initial_s=0.05, max_s=0.2)


@pytest_asyncio.fixture(loop_scope="function")  # the servicer must run on the test's own loop
async def peer():
    server = PeerServer(EchoServicer(token="s3cret"), free_port())
    await server.start()
    yield server
    await server.stop()


def config(port: int, **kw) -> DeviceConfig:
    return DeviceConfig(gateway=f"127.0.0.1:{port}", token=kw.pop("token", "s3cret"), **kw)


async def collect(client: AssistantClient, query, **kw) -> list:
    return [event async for event in client.ask(query, **kw)]


async def test_echo_turn_carries_query_context_and_events(peer: PeerServer) -> None:
    paris = dict(place_name="Paris, France", latitude=48.8566, longitude=2.3522, time_zone="Europe/Paris")
    async with AssistantClient(config(peer.port, **paris), status=BatteryAndWifi(), backoff=FAST) as client:
        events = await collect(client, understand("ask the big model what's the weather in Paris tomorrow"))
    assert isinstance(events[0], RouteEvent) and events[0].model == "echo" and events[0].tier == "none"
    assert isinstance(events[1], ToolEvent) and (events[1].phase, events[1].status) == ("started", "Checking the weather")
    text = "".join(e.text for e in events if isinstance(e, TextEvent))
    assert text.strip() == "what's the weather in Paris tomorrow"
    end = events[-1]
    assert isinstance(end, TurnEndEvent) and end.finish_reason == "stop" and end.timings_ms == {"first_token": 1.5}
    assert all(a.at_s <= b.at_s for a, b in zip(events, events[1:]))
    (query,) = peer.servicer.queries
    assert query.intent.name == "weather"
    assert {k: v.text for k, v in query.intent.slots.items()} == {"city": "Paris", "day": "tomorrow"}
    ctx = query.context
    assert ctx.route_preference == pb.ROUTE_PREFERENCE_BIG
    assert (ctx.time_zone, ctx.locale, ctx.battery_percent, ctx.network) == ("Europe/Paris", "en-US", 73, pb.NETWORK_TYPE_WIFI)
    assert ctx.location.place_name == "Paris, France"
    assert query.language == "en" and query.conversation_id


async def test_concurrent_turns_share_one_stream(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port), backoff=FAST) as client:
        results = await asyncio.gather(*(collect(client, f"question number {i}") for i in range(5)))
        for i, events in enumerate(results):
            text = "".join(e.text for e in events if isinstance(e, TextEvent))
            assert text.strip() == f"question number {i}"  # no turn got another turn's words
    assert peer.servicer.streams == 1
    assert len({q.turn_id for q in peer.servicer.queries}) == 5
    assert len({q.conversation_id for q in peer.servicer.queries}) == 1


async def test_cancel_reaches_the_gateway_and_ends_the_turn(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port), backoff=FAST) as client:
        turn_id = client.new_turn_id()
        events = []
        async for event in client.ask("slow story please", turn_id=turn_id):
            events.append(event)
            if isinstance(event, TextEvent):
                assert client.cancel(turn_id)
        assert isinstance(events[-1], TurnEndEvent) and events[-1].finish_reason == "cancelled"
        assert len([e for e in events if isinstance(e, TextEvent)]) < 10
    assert peer.servicer.cancels == [turn_id]  # sent once, not again when the turn ended


async def test_leaving_the_loop_early_sends_cancel(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port), backoff=FAST) as client:
        turn_id = client.new_turn_id()
        stream = client.ask("slow story", turn_id=turn_id)
        async for event in stream:
            if isinstance(event, TextEvent):
                break  # barge-in: the engine stops listening
        await stream.aclose()
        await asyncio.wait_for(peer.servicer.cancel_seen.wait(), 2.0)
    assert peer.servicer.cancels == [turn_id]


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


async def test_reconnects_after_the_gateway_restarts(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port), backoff=FAST) as client:
        assert [e for e in await collect(client, "first") if isinstance(e, TextEvent)]
        turn = client.ask("slow and steady")
        first = await anext(turn)
        assert isinstance(first, RouteEvent)
        await peer.stop()
        with pytest.raises(GatewayUnavailable):  # the in-flight turn ends at once, no hang
            await asyncio.wait_for(collect_rest(turn), 1.0)
        with pytest.raises(GatewayUnavailable):
            await asyncio.wait_for(collect(client, "while down"), 1.0)
        await peer.start()
        assert await client.wait_connected(3.0)
        events = await collect(client, "back again")
        assert "".join(e.text for e in events if isinstance(e, TextEvent)).strip() == "back again"
    assert peer.servicer.streams == 2


async def collect_rest(turn) -> list:
    return [event async for event in turn]


async def test_per_turn_deadline_raises_and_cancels(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port), backoff=FAST) as client:
        turn_id = client.new_turn_id()
        with pytest.raises(TurnTimeout) as caught:
            await collect(client, "hang", turn_id=turn_id, timeout_s=0.3)
        assert "turn_timeout_s" in str(caught.value) and caught.value.spoken
        await asyncio.wait_for(peer.servicer.cancel_seen.wait(), 2.0)
    assert peer.servicer.cancels == [turn_id]


async def test_typed_gateway_error_is_raised_with_its_spoken_text(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port), backoff=FAST) as client:
        with pytest.raises(GatewayError) as caught:
            await collect(client, "fail")
        assert (caught.value.code, caught.value.spoken, caught.value.retryable) == (
            "INVALID_ARGUMENT", "That was too long.", False)
        # the stream is still good for the next turn
        assert isinstance((await collect(client, "ok"))[-1], TurnEndEvent)


async def test_wrong_token_is_a_clear_refusal(peer: PeerServer) -> None:
    async with AssistantClient(config(peer.port, token="wrong"), backoff=FAST) as client:
        with pytest.raises(GatewayError) as caught:
            await asyncio.wait_for(collect(client, "hello"), 2.0)
    assert caught.value.code == "UNAUTHENTICATED"
    assert "check [device] token" in str(caught.value)
    assert caught.value.spoken == "The assistant didn't accept this device."


async def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server = PeerServer(EchoServicer(), free_port(), creds)
    await server.start()
    try:
        async with AssistantClient(config(server.port, tls_ca=str(cert)), backoff=FAST) as client:
            events = await collect(client, "over tls")
        assert "".join(e.text for e in events if isinstance(e, TextEvent)).strip() == "over tls"
        # the same server refuses a plaintext client: it fails fast, not hangs
        async with AssistantClient(config(server.port), backoff=FAST) as plain:
            with pytest.raises(GatewayUnavailable):
                await asyncio.wait_for(collect(plain, "plaintext"), 2.0)
    finally:
        await server.stop()


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
