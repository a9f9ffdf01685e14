"""The gRPC gateway: voxlens.v1.Assistant/Converse plus health and reflection.

Why a reader task and an outbound queue per stream: a device session is one
long bidirectional stream carrying many turns; queries start turn tasks, a
Cancel stops its turn at once (interruptions overtake queued data), and every
turn's messages are framed onto the one response stream. Limits are checked
per device before a turn starts; a bad message costs its own turn only.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway import messages as msg
from gateway import prompts
from gateway.auth import AuthError, Authenticator, server_credentials
from gateway.backends import make_backend
from gateway.backends.base import Backend
from gateway.breaker import CircuitBreaker
from gateway.limits import DeviceLimits, LimitExceeded
from gateway.memory import ConversationMemory
from gateway.metrics import GatewayMetrics
from gateway.router import BIG, SMALL
from gateway.tiers import make_tiers
from gateway.tools.registry import Toolbox
from gateway.turn import TurnContext, TurnRunner
from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc
from voxlens.timing import Clock, monotonic

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["Assistant"].full_name
_END = object()
_RECENT_TURNS = 64   # per stream: a late Cancel (after the turn ended) can still find its conversation


@dataclass(frozen=True)
class _Abort:
    """The reader could not read the stream: end the RPC with INVALID_ARGUMENT and say why."""

    details: str


class AssistantService(pb_grpc.AssistantServicer):
    def __init__(self, cfg, runner: TurnRunner, auth: Authenticator, limits: DeviceLimits, metrics: GatewayMetrics) -> None:
        self.cfg = cfg
        self.runner = runner
        self.auth = auth
        self.limits = limits
        self.metrics = metrics

    async def Converse(self, request_iterator, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.GatewayMessage]:
        try:
            device = self.auth.device_id(context.invocation_metadata(), context.peer())
        except AuthError as exc:
            self.metrics.errors.labels("UNAUTHENTICATED").inc()
            log.info("rejected a stream from %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            return
        self.metrics.streams.inc()
        out: asyncio.Queue = asyncio.Queue(maxsize=max(1, self.cfg.max_outbound_messages))
        tasks: dict[str, asyncio.Task] = {}
        stream = _Outbound(out, asyncio.current_task(), tasks, self.cfg.send_stall_s, device, self.metrics)
        reader = asyncio.create_task(self._read(request_iterator, context, device, stream, tasks))
        try:
            pending = None
            while True:
                item = pending if pending is not None else await out.get()
                pending = None
                if item is _END:
                    break
                if isinstance(item, _Abort):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.details)
                if item.WhichOneof("payload") == "delta":
                    item, pending = _coalesce(item, out, self.cfg.max_message_bytes // 4)
                yield item
        finally:
            reader.cancel()
            for task in list(tasks.values()):
                task.cancel()

    async def _read(self, requests, context, device: str, stream: "_Outbound", tasks: dict[str, asyncio.Task]) -> None:
        emit = stream.emit
        conversations: OrderedDict[str, str] = OrderedDict()   # this stream's recent turn ids -> conversation ids
        try:
            async for request in requests:
                kind = request.WhichOneof("payload")
                if kind == "cancel":
                    task = tasks.get(request.cancel.turn_id)
                    if task is not None:
                        task.cancel()
                    # a turn cancelled once answered (a preemptive question the final did not confirm) is forgotten
                    self.runner.memory.forget(conversations.get(request.cancel.turn_id, ""), request.cancel.turn_id)
                elif kind == "query":
                    conversations[request.query.turn_id] = request.query.conversation_id
                    while len(conversations) > _RECENT_TURNS:
                        conversations.popitem(last=False)
                    await self._admit(request.query, device, emit, tasks, context)
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)
            await stream.control(_END)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:  # the client went away or the RPC was cancelled: routine
            log.info("stream from device %s ended by the transport: %s", device, exc.code().name)
            await stream.control(_END)
        except Exception as exc:  # noqa: BLE001 - one broken stream ends; other devices are unaffected
            self.metrics.errors.labels("STREAM").inc()
            log.warning("stream from device %s dropped: %s: %s (a message it sent could not be read; "
                        "the device reconnects)", device, type(exc).__name__, exc)
            await stream.control(_Abort(f"could not read a DeviceMessage ({type(exc).__name__}); "
                                        "send voxlens.v1.DeviceMessage as defined in protos/assistant.proto"))

    async def _admit(self, query: pb.Query, device: str, emit, tasks: dict[str, asyncio.Task], context) -> None:
        """Start a turn, or refuse it with a typed Error (the stream and other turns go on)."""
        turn_id = query.turn_id
        try:
            if not turn_id:
                raise LimitExceeded("INVALID_ARGUMENT", "Query.turn_id is empty; give every turn a unique id",
                                    "Something went wrong with that question.")
            if turn_id in tasks:
                raise LimitExceeded("INVALID_ARGUMENT", f"turn {turn_id!r} is already running; turn ids must be unique",
                                    "I'm already working on that.")
            if not query.text.strip() and not query.HasField("intent"):
                raise LimitExceeded("INVALID_ARGUMENT", "Query has neither text nor intent", "I didn't catch that.")
            self.limits.check_text(query.text)
            self.limits.start_turn(device)
        except LimitExceeded as exc:
            self.metrics.errors.labels(exc.code).inc()
            log.info("device %s turn refused: %s", device, exc)
            await emit(msg.error(turn_id, exc.code, str(exc), exc.spoken, exc.code == "RESOURCE_EXHAUSTED"))
            return
        log.debug("device %s turn %s: %r", device, turn_id, query.text)
        deadline_s = self.cfg.turn_deadline_s
        remaining = context.time_remaining()
        if remaining is not None:
            deadline_s = min(deadline_s, remaining)
        tasks[turn_id] = asyncio.create_task(self._turn(TurnContext(query, emit), device, deadline_s, tasks))

    async def _turn(self, ctx: TurnContext, device: str, deadline_s: float, tasks: dict[str, asyncio.Task]) -> None:
        try:
            async with asyncio.timeout(deadline_s):
                await self.runner.run(ctx)
        except TimeoutError:
            self.metrics.errors.labels("DEADLINE_EXCEEDED").inc()
            await ctx.emit(msg.error(ctx.turn_id, "DEADLINE_EXCEEDED",
                                     f"turn exceeded its deadline of {deadline_s:.1f} s (gateway.turn_deadline_s)",
                                     "That took too long. Please try again.", True))
            await ctx.emit(msg.end(ctx.turn_id, "error", ctx.timings, ctx.tokens_in, ctx.tokens_out))
            self.metrics.turns.labels("error").inc()
        except asyncio.CancelledError:
            ctx.timings.add("total", ctx.start_s)
            self.metrics.turns.labels("cancelled").inc()
            await ctx.emit(msg.end(ctx.turn_id, "cancelled", ctx.timings, ctx.tokens_in, ctx.tokens_out))
        except Exception as exc:  # noqa: BLE001 - one broken turn must not take the stream down
            log.exception("turn %s failed", ctx.turn_id)
            self.metrics.errors.labels("INTERNAL").inc()
            await ctx.emit(msg.error(ctx.turn_id, "INTERNAL", f"gateway bug: {type(exc).__name__}: {exc}; see the gateway log",
                                     "Sorry, something went wrong.", True))
            await ctx.emit(msg.end(ctx.turn_id, "error", ctx.timings, ctx.tokens_in, ctx.tokens_out))
            self.metrics.turns.labels("error").inc()
        finally:
            self.limits.end_turn(device)
            tasks.pop(ctx.turn_id, None)


class _Outbound:
    """The bounded queue of one stream's outgoing messages.

    Why bounded: a device that stops reading (a hung app, a half-open link) would otherwise make the
    gateway buffer every token of every turn it starts. When the queue is full for send_stall_s the
    device is not reading: its turns and the stream end, which also closes their model streams."""

    def __init__(self, out: asyncio.Queue, handler: asyncio.Task | None, tasks: dict[str, asyncio.Task],
                 stall_s: float, device: str, metrics: GatewayMetrics) -> None:
        self.out, self.handler, self.tasks = out, handler, tasks
        self.stall_s, self.device, self.metrics = stall_s, device, metrics
        self.dead = False

    async def emit(self, message: pb.GatewayMessage) -> None:
        if self.dead:
            return  # the stream is ending: nobody will read this
        try:
            self.out.put_nowait(message)
            return
        except asyncio.QueueFull:
            pass
        try:
            async with asyncio.timeout(self.stall_s):
                await self.out.put(message)
        except TimeoutError:
            self._drop()
            raise asyncio.CancelledError from None

    async def control(self, item: object) -> None:
        """End-of-stream markers wait for room like messages do (the writer drains, or the stream is dropped)."""
        if not self.dead:
            await self.out.put(item)

    def _drop(self) -> None:
        self.dead = True
        self.metrics.outbound_dropped.inc()
        log.warning("device %s stopped reading: %d messages waited %.1f s (gateway.max_outbound_messages, "
                    "gateway.send_stall_s); ending its stream and its turns", self.device, self.out.qsize(), self.stall_s)
        current = asyncio.current_task()
        for task in list(self.tasks.values()):
            if task is not current:  # the emitting turn ends by the CancelledError emit raises (one, not two)
                task.cancel()
        if self.handler is not None:
            self.handler.cancel()


def _coalesce(first: pb.GatewayMessage, out: asyncio.Queue, max_chars: int) -> tuple[pb.GatewayMessage, object | None]:
    """Merge text deltas of the same turn that are already waiting into one message, up to max_chars.

    Why: under load the writer falls behind the models; sending what is already queued as one
    message costs no latency and saves a gRPC write per token. The cap keeps a merged message far
    below gateway.max_message_bytes. Returns the merged message and the next queued item that could
    not be merged (or None)."""
    while not out.empty() and len(first.delta.text) < max_chars:
        nxt = out.get_nowait()
        if isinstance(nxt, pb.GatewayMessage) and nxt.turn_id == first.turn_id and nxt.WhichOneof("payload") == "delta":
            first.delta.text += nxt.delta.text
            continue
        return first, nxt
    return first, None


@dataclass
class Gateway:
    """A running gateway: `.port`, `stop(grace_s)`; the parts are exposed for tests and the benchmark."""

    server: grpc.aio.Server
    port: int
    runner: TurnRunner
    backends: dict[str, Backend | None]
    metrics: GatewayMetrics
    toolbox: Toolbox
    health: health.aio.HealthServicer
    owned: list[Backend] = field(default_factory=list)

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each tier's breaker; a tier whose backend runs in process has none."""
        return {name: t.breaker for name, t in self.runner.tiers.items() if t.breaker is not None}

    async def stop(self, grace_s: float = 1.0) -> None:
        try:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace_s)
        finally:
            self.metrics.stop()
            await self.toolbox.close()
            for backend in self.owned:
                await backend.close()


def _backend(cfg, name: str) -> Backend | None:
    if cfg.kind == "none" or (cfg.kind == "openai" and not cfg.base_url):
        log.info("%s tier not configured", name)
        return None
    return make_backend(cfg, name)


async def start_gateway(cfg, tools, router, *, port: int | None = None,
                        backends: dict[str, Backend | None] | None = None, clock: Clock = monotonic) -> Gateway:
    """Start serving (GatewayConfig, ToolsConfig, RouterConfig). `backends` replaces the configured tiers (tests, bench);
    `clock` is what the breaker, rate limits and conversation memory decide by (tests advance a ManualClock)."""
    creds = server_credentials(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)  # fail on bad paths before starting
    given = backends is not None
    if backends is None:
        backends = {SMALL: _backend(cfg.small, SMALL), BIG: _backend(cfg.big, BIG)}
    if not any(backends.values()):
        raise ValueError("no model tier configured: set gateway.small (llama_cpp GGUF) and/or gateway.big (openai base_url)")
    for backend in backends.values():
        if backend is not None:  # a remote server's are no-ops (Backend's defaults)
            await backend.load()  # load once, now, not on the first user's turn
            await backend.warm(prompts.warm_chat())  # the system message is in the KV cache before the first turn
    metrics = GatewayMetrics()
    toolbox = Toolbox(tools)
    memory = ConversationMemory(cfg.history_turns, cfg.history_ttl_s, clock=clock)
    tiers = make_tiers(backends, cfg, router, metrics=metrics, clock=clock)
    runner = TurnRunner(tiers, toolbox, memory, metrics, router)
    options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
               ("grpc.max_send_message_length", cfg.max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options)
    pb_grpc.add_AssistantServicer_to_server(
        AssistantService(cfg, runner, Authenticator(tuple(cfg.token_sha256)), DeviceLimits(cfg, clock=clock), metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{cfg.host}:{cfg.port if port is None else port}"
    bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot listen on {address}; is another gateway running there? choose --port")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics.serve(cfg.metrics_port, cfg.host)
    owned = [] if given else [b for b in backends.values() if b is not None]
    log.info("gateway listening on %s:%d (%s), tiers: %s", cfg.host, bound, "TLS" if creds else "plaintext",
             {k: (v.model if v else None) for k, v in backends.items()})
    return Gateway(server, bound, runner, backends, metrics, toolbox, health_servicer, owned)


async def serve(cfg, tools, router, port: int | None = None) -> None:
    """Run until interrupted, then stop with a grace period."""
    gw = await start_gateway(cfg, tools, router, port=port)
    print(f"voxlens gateway listening on {cfg.host}:{gw.port}", flush=True)
    try:
        await gw.server.wait_for_termination()
    finally:
        await gw.stop(5.0)
