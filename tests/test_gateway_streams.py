"""A stream that sends bytes the gateway cannot read ends with a logged reason; other devices are served."""
from __future__ import annotations

import logging

import grpc
import pytest

from gateway.server import start_gateway
from tests.gateway_support import one_turn, query
from voxlens.config import Config

pytestmark = pytest.mark.asyncio(loop_scope="session")
METHOD = "/voxlens.v1.Assistant/Converse"


async def test_undecodable_bytes_end_that_stream_with_a_warning_and_others_are_served(small_backend, caplog):
    c = Config()
    gw = await start_gateway(c.gateway, c.tools, c.router, port=0, backends={"small": small_backend, "big": None})
    try:
        caplog.set_level(logging.INFO, logger="gateway.server")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
            raw = channel.stream_stream(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)

            async def garbage():
                yield b"\xff\xff\xff\xff\x0f not a DeviceMessage"

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in raw(garbage(), timeout=30):
                    pass
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "DeviceMessage" in refused.value.details()
        ok = await one_turn(gw.port, query("after", "What is 6 times 7?"))
        assert "42" in ok.text
        dropped = [r for r in caplog.records if "stream from device" in r.getMessage()]
        assert dropped, [r.getMessage() for r in caplog.records]
    finally:
        await gw.stop(0.5)
