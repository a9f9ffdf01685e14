"""Prometheus metrics for the gateway, on their own registry (so several gateways can live in one process).

Labels never carry user text, tokens or device secrets: only tier, reason, tool and status names.
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)
_MS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.route_ms = Histogram("voxlens_route_ms", "Time to choose a tier", registry=r,
                                  buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10))
        self.first_token_ms = Histogram("voxlens_first_token_ms", "Query received to first text delta", ["tier"],
                                        registry=r, buckets=_MS_BUCKETS)
        self.turn_ms = Histogram("voxlens_turn_ms", "Query received to TurnEnd", ["tier"], registry=r,
                                 buckets=_MS_BUCKETS)
        self.routes = Counter("voxlens_routes", "Turns routed, by tier and reason", ["tier", "reason"], registry=r)
        self.failovers = Counter("voxlens_failovers", "Turns moved to the other tier mid-turn", ["from_tier"], registry=r)
        self.tool_calls = Counter("voxlens_tool_calls", "Tool runs by outcome", ["tool", "outcome"], registry=r)
        self.errors = Counter("voxlens_errors", "Errors sent to devices, by status code", ["code"], registry=r)
        self.streams = Counter("voxlens_streams", "Converse streams devices opened (a device holds one; more: "
                               "reconnects)", registry=r)
        self.turns = Counter("voxlens_turns", "Turns ended, by finish reason (stop, length, cancelled, error)",
                             ["finish_reason"], registry=r)
        self.queue_depth = Gauge("voxlens_queue_depth", "Turns waiting for a generation slot", ["tier"], registry=r)
        self.queue_wait_ms = Histogram("voxlens_queue_wait_ms", "Time a turn waited for a generation slot", ["tier"],
                                       registry=r, buckets=_MS_BUCKETS)
        self.busy = Counter("voxlens_busy", "Turns a tier refused (queue_full, max_wait)", ["tier", "reason"], registry=r)
        self.outbound_dropped = Counter("voxlens_streams_not_reading", "Streams ended because the device stopped "
                                        "reading (gateway.max_outbound_messages)", registry=r)
        self.tokens = Counter("voxlens_tokens", "Tokens by tier and direction", ["tier", "direction"], registry=r)
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
            log.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
