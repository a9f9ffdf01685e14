"""Run one Wyoming event handler per connection, on tcp:// or unix:// URIs.

Why not `wyoming.server.AsyncServer` as is: tests and `voxlens bench wyoming` bind port 0
and need the port the OS chose, and a client that vanishes mid-stream must end only its
own handler, logged, without an unretrieved task error. The framing, events and handler
loop are the `wyoming` package's own (`AsyncEventHandler.run`).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from wyoming.server import AsyncEventHandler

log = logging.getLogger(__name__)

HandlerFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], AsyncEventHandler]
STOP_GRACE_S = 2.0


class UriError(ValueError):
    """A --uri that is not tcp://HOST:PORT or unix://PATH."""


def parse_uri(uri: str) -> tuple[str, str, int]:
    """('tcp', host, port) or ('unix', path, 0); UriError naming the expected forms otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise UriError(f"--uri {uri!r} needs a host and a port: tcp://HOST:PORT, e.g. tcp://0.0.0.0:10300")
        return "tcp", parsed.hostname, port
    if parsed.scheme == "unix" and parsed.path:
        return "unix", parsed.path, 0
    raise UriError(f"--uri {uri!r} is not supported; use tcp://HOST:PORT (e.g. tcp://0.0.0.0:10300) or unix://PATH")


class WyomingServer:
    """`async with WyomingServer(uri, factory) as server:` serves until the block ends; `server.uri` is where."""

    def __init__(self, uri: str, factory: HandlerFactory) -> None:
        self.kind, self.host, self._port = parse_uri(uri)
        self.factory = factory
        self._server: asyncio.AbstractServer | None = None
        self._sessions: dict[asyncio.Task, AsyncEventHandler] = {}
        self._changed: asyncio.Condition | None = None   # notified when a session starts or ends

    @property
    def port(self) -> int:
        """The bound TCP port (the OS's choice when the URI said 0)."""
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1] if self.kind == "tcp" else 0

    @property
    def uri(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.kind == "tcp" else f"unix://{self.host}"

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def sessions_at_most(self, n: int) -> None:
        """Wait until no more than n sessions are open (tests and shutdown wait on this, not on time)."""
        assert self._changed is not None, "start() first"
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._sessions) <= n)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        if self.kind == "tcp":
            self._server = await asyncio.start_server(self._serve_one, self.host, self._port)
        else:
            Path(self.host).unlink(missing_ok=True)
            self._server = await asyncio.start_unix_server(self._serve_one, self.host)
        log.info("wyoming: serving on %s", self.uri)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = self.factory(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = handler
        await self._notify()
        try:
            await handler.run()   # calls handler.disconnect() and closes the writer, however it ends
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("wyoming: a client went away mid-session (%s); only its session ended", type(exc).__name__)
        except Exception:  # noqa: BLE001 - one session's bug must not stop the others; logged with its traceback
            log.exception("wyoming: a session failed; only that session ended")
        finally:
            writer.close()
            self._sessions.pop(task, None)
            await self._notify()

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def stop(self) -> None:
        """Stop accepting, ask each session to stop, and wait for them at most STOP_GRACE_S."""
        if self._server is None:
            return
        self._server.close()
        for handler in list(self._sessions.values()):
            await handler.stop()
        tasks = list(self._sessions)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()
        if self.kind == "unix":
            Path(self.host).unlink(missing_ok=True)
        self._server = None

    async def __aenter__(self) -> "WyomingServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
