"""The device's gRPC client: one long-lived Converse stream per session, turns multiplexed by turn_id.

Why: opening a stream per question costs a TCP+HTTP/2 (+TLS) handshake on the
critical path; one stream kept open by a background task, reconnecting with
backoff and jitter, makes every turn start at once. When the gateway is
unreachable a turn fails fast (a connection attempt bounded by
connect_timeout_s) with GatewayUnavailable, whose `spoken` text the engine
says; it never hangs.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable, Protocol

import grpc
import numpy as np

from device.client_events import (ClientConfigError, ClientError, GatewayError, GatewayEvent, GatewayUnavailable,
                                  TurnEndEvent, TurnTimeout, event_from_proto)
from device.commands import Understanding
from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc
from voxlens.cancel import CancelToken
from voxlens.config import DeviceConfig
from voxlens.retry import Backoff
from voxlens.timing import Clock, monotonic

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 20_000),       # notice a dead link while idle between turns
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 1 << 20),
)


class DeviceStatus(Protocol):
    """What the client reads from the platform for every query (device/actions.py's Platform has both)."""

    def battery_percent(self) -> int | None: ...
    def network(self) -> int: ...


def device_context(cfg: DeviceConfig, status: DeviceStatus | None = None,
                   route_preference: int = pb.ROUTE_PREFERENCE_AUTO) -> pb.DeviceContext:
    """DeviceContext from the config (location, time zone, locale) plus live battery and network state."""
    ctx = pb.DeviceContext(time_zone=cfg.zone, locale=cfg.locale, route_preference=route_preference)
    if cfg.has_location:
        ctx.location.CopyFrom(pb.Location(latitude=cfg.latitude, longitude=cfg.longitude, place_name=cfg.place_name))
    if status is not None:
        battery = status.battery_percent()
        if battery is not None:
            ctx.battery_percent = int(battery)
        ctx.network = status.network()
    return ctx


def parse_target(gateway: str) -> str:
    host, sep, port = gateway.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientConfigError(f"gateway address {gateway!r} is not HOST:PORT; "
                                "set [device] gateway (or --gateway) to e.g. 127.0.0.1:50051")
    return gateway


def _rpc_error(exc: grpc.aio.AioRpcError) -> ClientError:
    """A failed stream -> the error each of its turns ends with."""
    code, details = exc.code(), exc.details() or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
        return GatewayUnavailable(f"gateway stream ended: {code.name}: {details}", code=code.name)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return GatewayError(f"gateway refused this device ({code.name}: {details}); check [device] token",
                            spoken="The assistant didn't accept this device.", retryable=False, code=code.name)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return GatewayError(f"gateway is rate limiting this device: {details}",
                            spoken="Too many requests. Try again in a moment.", code=code.name)
    return GatewayError(f"gateway stream failed: {code.name}: {details}", code=code.name)


class AssistantClient:
    """Use as `async with AssistantClient(cfg) as client:`, then `async for event in client.ask(...)`."""

    def __init__(self, cfg: DeviceConfig, *, status: DeviceStatus | None = None,
                 backoff: Backoff = Backoff(initial_s=0.2, max_s=10.0), connect_timeout_s: float = 0.5,
                 clock: Clock = monotonic) -> None:
        self.cfg = cfg
        self.target = parse_target(cfg.gateway)
        self._credentials = self._load_credentials(cfg.tls_ca)
        self.status = status
        self.backoff = backoff
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock
        self._turns: dict[str, asyncio.Queue[pb.GatewayMessage | ClientError]] = {}
        self._cancelled: set[str] = set()
        self._outbox: asyncio.Queue[pb.DeviceMessage | None] | None = None
        self._connected = asyncio.Event()
        self._attempt_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._conversation_id = ""
        self._last_turn_s = float("-inf")
        self.connections = 0  # streams opened so far, for logs and tests
        self._call: grpc.aio.StreamStreamCall | None = None
        self._heard = 0  # messages received on any stream: a turn that hears nothing at all suspects the link

    @staticmethod
    def _load_credentials(tls_ca: str) -> grpc.ChannelCredentials | None:
        if not tls_ca:
            return None
        path = Path(tls_ca).expanduser()
        try:
            return grpc.ssl_channel_credentials(root_certificates=path.read_bytes())
        except OSError as exc:
            raise ClientConfigError(f"cannot read the gateway CA certificate {path} ({exc.strerror}); "
                                    "set [device] tls_ca to a PEM file, or empty for a plaintext gateway") from exc

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="assistant-client")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._outbox is not None:
            self._outbox.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def __aenter__(self) -> "AssistantClient":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------ the connection
    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            served = False
            error: ClientError
            try:
                served = await self._connect_and_serve()
                error = GatewayUnavailable("the gateway closed the stream")
            except grpc.aio.AioRpcError as exc:
                error = _rpc_error(exc)
            except (TimeoutError, OSError, grpc.RpcError) as exc:
                error = GatewayUnavailable(f"cannot connect to the gateway at {self.target}: {exc or type(exc).__name__}; "
                                           "is `voxlens gateway serve` running there?")
            except Exception as exc:  # a bug here must not end the session's only connection loop
                log.exception("gateway connection loop failed; reconnecting")
                error = GatewayUnavailable(f"gateway connection failed unexpectedly: {exc!r}")
            self._fail_turns(error)
            self._signal_attempt()
            if self._closing:
                break
            attempt = 0 if served else attempt + 1
            delay_s = self.backoff.delay_s(attempt)
            log.info("gateway %s unavailable (%s); reconnecting in %.2f s", self.target, error, delay_s)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay_s)  # a new turn cuts the wait short
            except TimeoutError:
                pass

    async def _connect_and_serve(self) -> bool:
        """Connect, then read the stream until it ends. Returns whether any message was exchanged."""
        if self._credentials is not None:
            channel = grpc.aio.secure_channel(self.target, self._credentials, options=_CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        outbox: asyncio.Queue[pb.DeviceMessage | None] = asyncio.Queue()
        try:
            await self._wait_ready(channel)
            metadata = (("authorization", f"Bearer {self.cfg.token}"),) if self.cfg.token else None
            call = pb_grpc.AssistantStub(channel).Converse(self._requests(outbox), metadata=metadata)
            self._outbox = outbox
            self._call = call
            self.connections += 1
            self._connected.set()
            self._signal_attempt()
            log.info("connected to gateway %s", self.target)
            try:
                async for message in call:
                    self._dispatch(message)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # close(): the session ends
                raise ConnectionError("the stream was dropped: the link was silent through a whole turn") from None
            return True
        finally:
            self._connected.clear()
            self._outbox = None
            self._call = None
            outbox.put_nowait(None)
            await channel.close(grace=None)

    async def _wait_ready(self, channel: grpc.aio.Channel) -> None:
        """READY within connect_timeout_s, or fail at the first TRANSIENT_FAILURE (refused: milliseconds)."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self.connect_timeout_s
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                raise ConnectionError(f"connection to {self.target} failed ({state.name})")
            remaining_s = deadline_s - loop.time()
            if remaining_s <= 0:
                raise TimeoutError(f"no connection to {self.target} within {self.connect_timeout_s} s")
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining_s)
            except TimeoutError:
                raise TimeoutError(f"no connection to {self.target} within {self.connect_timeout_s} s") from None
            state = channel.get_state(try_to_connect=True)

    @staticmethod
    async def _requests(outbox: asyncio.Queue[pb.DeviceMessage | None]) -> AsyncIterator[pb.DeviceMessage]:
        while (message := await outbox.get()) is not None:
            yield message

    def _signal_attempt(self) -> None:
        done, self._attempt_done = self._attempt_done, asyncio.Event()
        done.set()

    def _dispatch(self, message: pb.GatewayMessage) -> None:
        self._heard += 1
        queue = self._turns.get(message.turn_id)
        if queue is None:
            log.debug("dropping %s for finished turn %s", message.WhichOneof("payload"), message.turn_id)
            return
        queue.put_nowait(message)

    def _fail_turns(self, error: ClientError) -> None:
        for queue in self._turns.values():
            queue.put_nowait(error)

    async def _ensure_connected(self) -> None:
        if self.connected:
            return
        if self._task is None:
            raise RuntimeError("AssistantClient.start() was not called (use `async with AssistantClient(...)`)")
        attempt_done = self._attempt_done
        self._wake.set()
        try:
            await asyncio.wait_for(attempt_done.wait(), self.connect_timeout_s * 2)
        except TimeoutError:
            pass
        if not self.connected:
            raise GatewayUnavailable(f"gateway {self.target} is unreachable")

    # ------------------------------------------------------------ turns
    def new_turn_id(self) -> str:
        return uuid.uuid4().hex[:16]

    @property
    def conversation_id(self) -> str:
        """One conversation per session, renewed after conversation_ttl_s without a turn."""
        now_s = self.clock()
        if not self._conversation_id or now_s - self._last_turn_s > self.cfg.conversation_ttl_s:
            self._conversation_id = uuid.uuid4().hex[:16]
        self._last_turn_s = now_s
        return self._conversation_id

    def build_query(self, understanding: Understanding, turn_id: str, language: str = "") -> pb.Query:
        """language: the utterance's, as heard; "": the device's configured language."""
        query = pb.Query(turn_id=turn_id, conversation_id=self.conversation_id, text=understanding.text,
                         language=language or self.cfg.language,
                         context=device_context(self.cfg, self.status, understanding.route_preference))
        if understanding.intent is not None:
            query.intent.CopyFrom(understanding.intent.to_proto())
        return query

    async def ask(self, query: Understanding | str, *, turn_id: str | None = None, timeout_s: float | None = None,
                  audio: np.ndarray | None = None, language: str = "",
                  cancel: CancelToken | None = None) -> AsyncIterator[GatewayEvent]:
        """Send one Query and yield its events until TurnEnd (the engine's Asker; the gateway takes the words,
        so the utterance's `audio` is not sent).

        Raises GatewayUnavailable (fast) when the gateway cannot be reached, TurnTimeout past the
        per-turn deadline (after sending Cancel), GatewayError for a typed Error. Leaving the loop
        early sends Cancel for the turn; so does tripping `cancel` (the turn's token: barge-in), at the
        trip, and the events end there.
        """
        understanding = Understanding(text=query) if isinstance(query, str) else query
        turn_id = turn_id or self.new_turn_id()
        timeout_s = self.cfg.turn_timeout_s if timeout_s is None else timeout_s
        await self._ensure_connected()
        queue: asyncio.Queue[pb.GatewayMessage | ClientError] = asyncio.Queue()
        self._turns[turn_id] = queue
        ended = False
        unregister: Callable[[], None] = lambda: None
        try:
            self._send(pb.DeviceMessage(query=self.build_query(understanding, turn_id, language)))
            if cancel is not None:
                unregister = cancel.on_cancel(lambda: self.cancel(turn_id))   # at the trip, not at unwinding
            heard_before = self._heard
            loop = asyncio.get_running_loop()
            deadline_s = loop.time() + timeout_s
            while True:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation (barge-in)
                    # that lands just as an item arrives, and the cancelled turn would run on.
                    async with asyncio.timeout(max(0.0, deadline_s - loop.time())):
                        item = await (queue.get() if cancel is None else cancel.guard(queue.get()))
                except TimeoutError:
                    if self._heard == heard_before:
                        ended = True
                        raise self._drop_silent_link(timeout_s) from None
                    raise TurnTimeout(f"turn {turn_id} had no TurnEnd within {timeout_s} s; sent Cancel "
                                      "(raise [device] turn_timeout_s if the models are slow)") from None
                if item is None:   # the turn's token tripped: Cancel has gone
                    return
                if isinstance(item, ClientError):
                    ended = True  # the stream is gone: nothing to cancel
                    raise item
                try:
                    event = event_from_proto(item, self.clock())
                except GatewayError:
                    ended = True
                    raise
                yield event
                if isinstance(event, TurnEndEvent):
                    ended = True
                    return
        finally:
            unregister()
            self._turns.pop(turn_id, None)
            if not ended:
                self.cancel(turn_id)
            self._cancelled.discard(turn_id)

    def _drop_silent_link(self, timeout_s: float) -> GatewayUnavailable:
        """Nothing at all came back for a whole turn (the gateway always routes at once): the link is dead.

        Why: out of Wi-Fi range the socket stays open and keepalive needs ~25 s to notice; until then
        every turn would go into a dead stream. Ending the stream now makes the next turn reconnect."""
        log.warning("no message from gateway %s for %.1f s while a turn was open; treating the link as dead "
                    "and reconnecting", self.target, timeout_s)
        self._connected.clear()  # from now on: a new turn waits for the reconnection, not for the dead stream
        self._outbox = None
        if self._call is not None:
            self._call.cancel()
        return GatewayUnavailable(f"gateway {self.target} sent nothing for {timeout_s} s: the network link is "
                                  "down or the gateway is stuck; reconnecting")

    def cancel(self, turn_id: str) -> bool:
        """Send Cancel for a turn now (no await: interruptions overtake everything). False when offline."""
        if turn_id in self._cancelled:
            return True
        if not self._send(pb.DeviceMessage(cancel=pb.Cancel(turn_id=turn_id))):
            return False
        if turn_id in self._turns:
            self._cancelled.add(turn_id)
        return True

    def _send(self, message: pb.DeviceMessage) -> bool:
        outbox = self._outbox
        if outbox is None:
            if message.HasField("query"):
                raise GatewayUnavailable(f"gateway {self.target} disconnected before the query was sent")
            return False
        outbox.put_nowait(message)
        return True
