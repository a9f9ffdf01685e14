"""A real HTTP server speaking the OpenAI chat-completions streaming wire format, with scripted faults.

Why: the big tier is a vLLM cluster that cannot be reached from a test machine, and a healthy
llama.cpp server cannot be made to break in the middle of an answer. This stand-in speaks what
vLLM sends (HTTP/1.1 chunked `text/event-stream`, `data: {chat.completion.chunk}` events, a usage
chunk, `data: [DONE]`; JSON error bodies with Retry-After on 429/503) and breaks on purpose, so the
gateway's real OpenAI client is what meets each fault.

The requested `model` names the scenario (a user message starting "#scenario" overrides it for one turn):
  ok                 a short answer, then finish_reason and usage
  die-after-N        N tokens, then the TCP connection is cut (no terminating chunk)
  stall-before       headers, then nothing until the client hangs up
  stall-after-N      N tokens, then nothing until the client hangs up
  malformed-after-N  N tokens, then an event whose data is not JSON
  cut-after-N        N tokens, then a clean end of stream with no finish_reason and no [DONE]
  status-429 / status-503   an OpenAI error body with `Retry-After: 7`
  flood              1 KB tokens as fast as the socket takes them, until the client hangs up
"""
from __future__ import annotations

import json
import select
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = "Rome is the capital of Italy and it has been for a very long time indeed".split()
RETRY_AFTER_S = 7


@dataclass
class Request:
    """What the stand-in saw of one request: tests assert on it, not on what the gateway meant to do."""

    scenario: str
    body: dict
    tokens_sent: int = 0
    bytes_sent: int = 0
    client_closed: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


def _chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = [] if usage is not None else [{"index": 0, "delta": {"content": content} if content else {},
                                             "logprobs": None, "finish_reason": finish}]
    event = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1764000000,
             "model": "standin", "choices": choices}
    if usage is not None:
        event["usage"] = usage
    return f"data: {json.dumps(event)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send_chunk(self, req: Request, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
        req.bytes_sent += len(data)

    def _wait_for_hangup(self, req: Request) -> None:
        """Send nothing; return once the client closes its end (or the server stops)."""
        while not self.server.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break
                except OSError:
                    break
        req.client_closed.set()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        scenario = str(body.get("model", "ok"))
        asked = next((m.get("content") or "" for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        if isinstance(asked, str) and asked.startswith("#"):  # "#stall-after-3 ..." picks the scenario per turn
            scenario = asked.split()[0][1:]
        req = Request(scenario, body)
        with self.server.arrived:
            self.server.requests.append(req)
            self.server.arrived.notify_all()
        try:
            self._serve(req, scenario)
        except (BrokenPipeError, ConnectionResetError):
            req.client_closed.set()
        finally:
            req.finished.set()

    def _serve(self, req: Request, scenario: str) -> None:
        kind, _, count = scenario.rpartition("-") if scenario[-1:].isdigit() else (scenario, "", "")
        n = int(count) if count else 0
        if kind == "status":
            data = json.dumps({"object": "error", "message": f"server overloaded (HTTP {n})",
                               "type": "ServiceUnavailableError", "param": None, "code": n}).encode()
            self.send_response(n)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", str(RETRY_AFTER_S))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        if kind == "stall-before":
            return self._wait_for_hangup(req)
        if kind == "flood":
            token = "word " * 200
            while not self.server.stopping.is_set():
                self._send_chunk(req, _chunk(token))
                req.tokens_sent += 1
            return
        tokens = n if kind in ("die-after", "stall-after", "malformed-after", "cut-after") else len(WORDS)
        for i in range(tokens):
            self._send_chunk(req, _chunk(WORDS[i % len(WORDS)] + " "))
            req.tokens_sent += 1
        if kind == "die-after":
            self.connection.shutdown(socket.SHUT_RDWR)  # the server process died mid-answer
            self.close_connection = True
            return
        if kind == "stall-after":
            return self._wait_for_hangup(req)
        if kind == "malformed-after":
            self._send_chunk(req, b'data: {"id": "chatcmpl-standin", "choices": [{"delta": {"content": "bro\n\n')
            self._send_chunk(req, b"")
            return
        if kind == "cut-after":
            self._send_chunk(req, b"")
            return
        self._send_chunk(req, _chunk(finish="stop"))
        self._send_chunk(req, _chunk(usage={"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens}))
        self._send_chunk(req, b"data: [DONE]\n\n")
        self._send_chunk(req, b"")


@dataclass
class OpenAIStandIn:
    server: ThreadingHTTPServer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def last(self, scenario: str, timeout_s: float = 30.0) -> Request:
        """The latest request for a scenario, waiting for it to arrive."""
        def found() -> list[Request]:
            return [r for r in self.server.requests if r.scenario == scenario]

        with self.server.arrived:
            if not self.server.arrived.wait_for(found, timeout_s):
                raise AssertionError(f"no request for scenario {scenario!r} reached the stand-in")
            return found()[-1]

    def close(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def start_openai_standin() -> OpenAIStandIn:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []
    server.arrived = threading.Condition()
    server.stopping = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True, name="openai-standin").start()
    return OpenAIStandIn(server)
