"""Helpers for the gateway tests: an Open-Meteo stand-in, a llama.cpp OpenAI server process, a gRPC turn client.

The Open-Meteo stand-in is a real HTTP server speaking the documented JSON of
https://geocoding-api.open-meteo.com/v1/search and https://api.open-meteo.com/v1/forecast,
because the real service is unreachable from the test machine.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import grpc

from bench.llama_server import LlamaServer, free_port  # noqa: F401 - re-exported for the fixtures
from gateway.auth import hash_token
from gateway.backends.instant import InstantBackend
from gateway.server import Gateway, start_gateway
from protos import assistant_pb2 as pb
from protos import assistant_pb2_grpc as pb_grpc
from voxlens.config import Config, replace

PLACES = {  # name -> (latitude, longitude, country, timezone)
    "paris": (48.85341, 2.3488, "France", "Europe/Paris"),
    "errorville": (10.0, 10.0, "Nowhere", "UTC"),
    "slowtown": (20.0, 20.0, "Nowhere", "UTC"),
    "garbletown": (30.0, 30.0, "Nowhere", "UTC"),   # the forecast answers 200 with a body that is not JSON
    "fieldless": (40.0, 40.0, "Nowhere", "UTC"),    # the forecast answers JSON without its fields
    "reykjavik": (64.13548, -21.89541, "Iceland", "Atlantic/Reykjavik"),
}
CURRENT_C = {48.85341: 21.3, 64.13548: -3.6}


class _OpenMeteoHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((url.path, q))
        if url.path == "/v1/search":
            place = PLACES.get(q.get("name", "").lower())
            if place is None:  # Open-Meteo omits "results" when nothing matches
                return self._json(200, {"generationtime_ms": 0.3})
            lat, lon, country, tz = place
            return self._json(200, {"results": [{
                "id": 2988507, "name": q["name"].title(), "latitude": lat, "longitude": lon, "elevation": 42.0,
                "feature_code": "PPLC", "country_code": country[:2].upper(), "timezone": tz, "population": 2138551,
                "country_id": 3017382, "country": country, "admin1": ""}], "generationtime_ms": 0.5})
        if url.path == "/v1/forecast":
            lat = float(q.get("latitude", "0"))
            if lat == 10.0:
                return self._json(500, {"error": True, "reason": "Internal server error"})
            if lat == 20.0:
                time.sleep(2.0)
            if lat == 30.0:
                data = b"<html><body>502 Bad Gateway</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            if lat == 40.0:
                return self._json(200, {"latitude": lat, "generationtime_ms": 0.1})
            temp = CURRENT_C.get(lat, 12.0)
            return self._json(200, {
                "latitude": lat, "longitude": float(q.get("longitude", "0")), "generationtime_ms": 0.1,
                "utc_offset_seconds": 3600, "timezone": "Europe/Paris", "timezone_abbreviation": "GMT+1",
                "elevation": 43.0,
                "current_units": {"time": "iso8601", "interval": "seconds", "temperature_2m": "°C",
                                  "weather_code": "wmo code", "wind_speed_10m": "km/h"},
                "current": {"time": "2026-11-29T16:00", "interval": 900, "temperature_2m": temp, "weather_code": 1,
                            "wind_speed_10m": 11.2},
                "daily_units": {"time": "iso8601", "weather_code": "wmo code", "temperature_2m_max": "°C",
                                "temperature_2m_min": "°C", "precipitation_probability_max": "%"},
                "daily": {"time": ["2026-11-29", "2026-11-30"], "weather_code": [1, 61],
                          "temperature_2m_max": [23.4, 17.8], "temperature_2m_min": [14.1, 9.6],
                          "precipitation_probability_max": [5, 80]},
            })
        self._json(404, {"error": True, "reason": f"no route {url.path}"})


@dataclass
class OpenMeteoStandIn:
    server: ThreadingHTTPServer
    base: str

    @property
    def geocoding_url(self) -> str:
        return f"{self.base}/v1/search"

    @property
    def forecast_url(self) -> str:
        return f"{self.base}/v1/forecast"

    @property
    def requests(self) -> list:
        return self.server.requests


def start_open_meteo() -> OpenMeteoStandIn:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenMeteoHandler)
    server.daemon_threads = True
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return OpenMeteoStandIn(server, f"http://127.0.0.1:{server.server_address[1]}")


def query(turn_id: str, text: str = "", *, intent: str = "", slots: dict[str, str] | None = None,
          route: int = pb.ROUTE_PREFERENCE_AUTO, conversation_id: str = "", location: bool = True) -> pb.DeviceMessage:
    ctx = pb.DeviceContext(time_zone="Europe/Paris", locale="en-US", route_preference=route)
    if location:
        ctx.location.CopyFrom(pb.Location(latitude=48.85341, longitude=2.3488, place_name="Paris"))
    q = pb.Query(turn_id=turn_id, conversation_id=conversation_id, text=text, language="en", context=ctx)
    if intent:
        q.intent.name = intent
        for k, v in (slots or {}).items():
            q.intent.slots[k].text = v
    return pb.DeviceMessage(query=q)


@dataclass
class Turn:
    messages: list = field(default_factory=list)

    def of(self, kind: str) -> list:
        return [getattr(m, kind) for m in self.messages if m.WhichOneof("payload") == kind]

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.of("delta"))

    @property
    def end(self):
        ends = self.of("end")
        return ends[-1] if ends else None

    @property
    def routes(self) -> list:
        return self.of("route")

    @property
    def errors(self) -> list:
        return self.of("error")


async def one_turn(port: int, message: pb.DeviceMessage, *, token: str = "", timeout_s: float = 60.0) -> Turn:
    """Open a stream, send one query, collect everything until the stream ends."""
    md = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AssistantStub(channel)

        async def requests():
            yield message

        turn = Turn()
        async for m in stub.Converse(requests(), metadata=md, timeout=timeout_s):
            turn.messages.append(m)
        return turn


async def cancel_after_deltas(port: int, message: pb.DeviceMessage, *, after: int = 3, token: str = "",
                              timeout_s: float = 60.0) -> tuple[int, "pb.TurnEnd | None"]:
    """Send one query, send Cancel for it after `after` text deltas, and return (deltas seen, the TurnEnd)."""
    md = (("authorization", f"Bearer {token}"),) if token else None
    turn_id = message.query.turn_id
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        outbox: asyncio.Queue = asyncio.Queue()

        async def requests():
            while (item := await outbox.get()) is not None:
                yield item

        call = pb_grpc.AssistantStub(channel).Converse(requests(), metadata=md, timeout=timeout_s)
        await outbox.put(message)
        deltas, end = 0, None
        async for m in call:
            kind = m.WhichOneof("payload")
            if kind == "delta":
                deltas += 1
                if deltas == after:
                    await outbox.put(pb.DeviceMessage(cancel=pb.Cancel(turn_id=turn_id)))
            elif kind == "end":
                end = m.end
                await outbox.put(None)
        return deltas, end


TOKEN = "s3cret"


class LiveGateway:
    """The real gateway on a fixed loopback port with instant tiers; stoppable and restartable on that port."""

    def __init__(self, open_meteo, *, token: str = TOKEN, tls: tuple[Path, Path] | None = None, **backend) -> None:
        c = Config()
        cert, key = (str(tls[0]), str(tls[1])) if tls else ("", "")
        self.cfg = replace(c.gateway, token_sha256=(hash_token(token),) if token else (), tls_cert=cert, tls_key=key)
        self.tools = replace(c.tools, geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
        self.router = c.router
        backend = {"echo": True, **backend}
        self.small, self.big = InstantBackend("small", **backend), InstantBackend("big", **backend)
        self.port = free_port()
        self.gw: Gateway | None = None

    async def start(self) -> None:
        self.gw = await start_gateway(self.cfg, self.tools, self.router, port=self.port,
                                      backends={"small": self.small, "big": self.big})

    async def stop(self) -> None:
        if self.gw is not None:
            await self.gw.stop(0)
            self.gw = None

    def count(self, metric: str, **labels: str) -> float:
        assert self.gw is not None
        return self.gw.metrics.registry.get_sample_value(metric, labels) or 0.0

    @property
    def stopped(self) -> int:
        """Model streams the gateway closed before their last word (a Cancel reached the model)."""
        return self.small.stopped + self.big.stopped


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for something the gateway does on its own loop (a Cancel it handles after the client returned)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)
