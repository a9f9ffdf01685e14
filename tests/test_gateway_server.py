"""The gateway over real gRPC on loopback with the real in-process small model."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.auth import hash_token
from gateway.server import start_gateway
from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc
from tests.gateway_support import Turn, cancel_after_deltas, one_turn, query
from voxlens.config import Config, replace

pytestmark = pytest.mark.asyncio(loop_scope="session")  # same loop as the session-scoped model and gateway
TOKENS = ("device-a-token", "device-b-token")


@pytest.fixture(scope="module")
async def gateway(small_backend, open_meteo):
    c = Config()
    cfg = replace(c.gateway, token_sha256=tuple(hash_token(t) for t in TOKENS), max_text_chars=200,
                  max_turns_per_device=1)
    tools = replace(c.tools, geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
    gw = await start_gateway(cfg, tools, c.router, port=0, backends={"small": small_backend, "big": None})
    yield gw
    await gw.stop(0.5)


async def test_small_model_streams_several_deltas_and_ends_with_timings(gateway):
    turn = await one_turn(gateway.port, query("t1", "What is the capital of France? Answer in one sentence."),
                          token=TOKENS[0])
    assert turn.routes[0].tier == pb.TIER_SMALL and turn.routes[0].reason == "big_unavailable"
    assert len(turn.of("delta")) >= 3, turn.messages
    assert "paris" in turn.text.lower()
    end = turn.end
    assert end.finish_reason in (pb.TurnEnd.FINISH_REASON_STOP, pb.TurnEnd.FINISH_REASON_LENGTH)
    assert end.tokens_out >= 3 and end.tokens_in > 10
    stages = {t.stage: t.duration_ms for t in end.timings}
    assert {"route", "first_token", "total"} <= set(stages) and 0 < stages["first_token"] <= stages["total"]


async def test_health_and_reflection_are_served(gateway):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="voxlens.v1.Assistant"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for r in stub.ServerReflectionInfo(ask()):
            names = {s.name for s in r.list_services_response.service}
            assert "voxlens.v1.Assistant" in names
            break


async def test_no_token_is_unauthenticated(gateway):
    for token in ("", "not-a-device"):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await one_turn(gateway.port, query("t2", "hello"), token=token)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED, (exc.value.code(), exc.value.details())
        assert "token" in exc.value.details() and "not-a-device" not in exc.value.details()


async def test_oversized_text_is_invalid_argument(gateway):
    turn = await one_turn(gateway.port, query("t3", "why " * 100), token=TOKENS[0])
    (err,) = turn.errors
    assert err.code == "INVALID_ARGUMENT" and "max_text_chars" in err.message and err.spoken
    assert not turn.of("delta")


async def test_too_many_turns_is_resource_exhausted_while_another_device_is_served(gateway):
    md_a = (("authorization", f"Bearer {TOKENS[0]}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.AssistantStub(channel)
        outbox: asyncio.Queue = asyncio.Queue()

        async def requests():
            while (item := await outbox.get()) is not None:
                yield item

        call = stub.Converse(requests(), metadata=md_a, timeout=60)
        await outbox.put(query("a1", "Name three colors."))
        await outbox.put(query("a2", "Name three animals."))
        other = asyncio.create_task(one_turn(gateway.port, query("b1", "Say hello."), token=TOKENS[1]))
        got = Turn()
        async for m in call:
            got.messages.append(m)
            if m.WhichOneof("payload") == "end" and m.turn_id == "a1":
                await outbox.put(None)
        by_turn = {tid: [m for m in got.messages if m.turn_id == tid] for tid in ("a1", "a2")}
        assert by_turn["a2"][0].error.code == "RESOURCE_EXHAUSTED"
        assert "max_turns_per_device" in by_turn["a2"][0].error.message
        assert by_turn["a1"][-1].end.finish_reason != pb.TurnEnd.FINISH_REASON_ERROR
        b = await other
        assert not b.errors and b.text and b.end is not None


async def test_cancel_mid_stream_stops_generation_at_the_backend(gateway, small_backend):
    before = small_backend.stats.cancelled
    small_backend.max_tokens = 200
    try:
        _, end = await cancel_after_deltas(gateway.port, query("c1", "Count from 1 to 100, separated by commas."),
                                           token=TOKENS[1])
    finally:
        small_backend.max_tokens = 24
    assert end is not None and end.finish_reason == pb.TurnEnd.FINISH_REASON_CANCELLED
    assert small_backend.stats.cancelled == before + 1 and small_backend.stats.active == 0
    generated = small_backend.stats.tokens_generated
    await asyncio.sleep(0.5)
    assert small_backend.stats.tokens_generated == generated  # nothing keeps generating after the cancel


async def test_logs_at_info_carry_no_tokens_and_no_user_words(gateway, caplog):
    """Every kind of turn the gateway logs about: answered, refused, too long, wrong token, bad weather city."""
    secret_words = "zebrafinch quartermaster"
    with caplog.at_level("INFO"):
        await one_turn(gateway.port, query("lg1", f"Say {secret_words} twice."), token=TOKENS[0])
        await one_turn(gateway.port, query("lg2", f"{secret_words} " * 60), token=TOKENS[0])  # over max_text_chars
        await one_turn(gateway.port, query("lg3", f"weather in {secret_words}", intent="weather",
                                           slots={"city": secret_words}), token=TOKENS[1])
        with pytest.raises(grpc.aio.AioRpcError):
            await one_turn(gateway.port, query("lg4", secret_words), token="not-" + TOKENS[0])
    logged = [r for r in caplog.records if r.levelno >= 20]
    assert logged, "the gateway logged nothing at info: this test would prove nothing"
    for record in logged:
        line = record.getMessage() + (record.exc_text or "")
        for word in secret_words.split():
            assert word not in line, f"user words logged at {record.levelname}: {line}"
        for token in TOKENS:
            assert token not in line, f"a device token logged at {record.levelname}: {line}"
