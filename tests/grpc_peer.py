"""A small real grpc.aio peer of the voxlens.v1 contract for device tests (the real gateway is its own work stream).

It echoes the query as deltas, streams slowly when asked, honours Cancel, checks the
bearer token, and can be stopped and restarted on the same port.
"""
from __future__ import annotations

import asyncio
import socket

import grpc

from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc


class EchoServicer(pb_grpc.AssistantServicer):
    """Turns: 'slow ...' streams a word every 50 ms until cancelled; 'hang' never answers;
    'fail' answers with a typed Error; anything else is echoed word by word."""

    def __init__(self, token: str = "") -> None:
        self.token = token
        self.queries: list[pb.Query] = []
        self.cancels: list[str] = []
        self.streams = 0
        self.cancel_seen = asyncio.Event()

    async def Converse(self, request_iterator, context):  # noqa: N802 (gRPC's name)
        md = dict(context.invocation_metadata())
        if self.token and md.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        self.streams += 1
        out: asyncio.Queue[pb.GatewayMessage | None] = asyncio.Queue()
        cancelled: set[str] = set()
        tasks: set[asyncio.Task] = set()

        async def answer(query: pb.Query) -> None:
            tid = query.turn_id
            out.put_nowait(pb.GatewayMessage(turn_id=tid, route=pb.RouteDecision(tier=pb.TIER_NONE, model="echo",
                                                                                 reason="test")))
            if query.text == "hang":
                return
            if query.text == "fail":
                out.put_nowait(pb.GatewayMessage(turn_id=tid, error=pb.Error(
                    code="INVALID_ARGUMENT", message="text too long", spoken="That was too long.", retryable=False)))
                return
            if query.HasField("intent") and query.intent.name == "weather":
                out.put_nowait(pb.GatewayMessage(turn_id=tid, tool=pb.ToolEvent(
                    tool="weather", phase=pb.ToolEvent.PHASE_STARTED, status="Checking the weather")))
            slow = query.text.startswith("slow")
            words = query.text.split() * (50 if slow else 1)
            for word in words:
                if tid in cancelled:
                    out.put_nowait(pb.GatewayMessage(turn_id=tid, end=pb.TurnEnd(
                        finish_reason=pb.TurnEnd.FINISH_REASON_CANCELLED)))
                    return
                out.put_nowait(pb.GatewayMessage(turn_id=tid, delta=pb.TextDelta(text=word + " ")))
                await asyncio.sleep(0.05 if slow else 0)
            out.put_nowait(pb.GatewayMessage(turn_id=tid, end=pb.TurnEnd(
                finish_reason=pb.TurnEnd.FINISH_REASON_STOP, tokens_in=1, tokens_out=len(words),
                timings=[pb.StageTiming(stage="first_token", duration_ms=1.5)])))

        async def read() -> None:
            async for message in request_iterator:
                if message.HasField("query"):
                    self.queries.append(message.query)
                    task = asyncio.create_task(answer(message.query))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    cancelled.add(message.cancel.turn_id)
                    self.cancels.append(message.cancel.turn_id)
                    self.cancel_seen.set()
            out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (message := await out.get()) is not None:
                yield message
        finally:
            reader.cancel()
            for task in tasks:
                task.cancel()


class PeerServer:
    """The test peer on a fixed loopback port, stoppable and restartable."""

    def __init__(self, servicer: EchoServicer, port: int, credentials: grpc.ServerCredentials | None = None) -> None:
        self.servicer, self.port, self.credentials = servicer, port, credentials
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        pb_grpc.add_AssistantServicer_to_server(self.servicer, self.server)
        address = f"127.0.0.1:{self.port}"
        if self.credentials is None:
            self.server.add_insecure_port(address)
        else:
            self.server.add_secure_port(address, self.credentials)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BatteryAndWifi:
    def battery_percent(self) -> int | None:
        return 73

    def network(self) -> int:
        return pb.NETWORK_TYPE_WIFI
