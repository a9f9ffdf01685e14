"""Any OpenAI-compatible chat server over HTTP: vLLM (the big tier), llama.cpp's server, Ollama.

Why the `openai` client on a shared httpx pool: one pooled connection set per
tier, explicit connect/read timeouts, and our own retry (connection errors
only, before any output) instead of the client's blanket retries.
Closing the stream closes the HTTP response, which makes vLLM and llama.cpp
stop generating for that request.
"""
from __future__ import annotations

import dataclasses
import datetime
import email.utils
import json
import logging
import os
from typing import Any, AsyncIterator

import httpx
import openai

from gateway.backends.base import Backend, BackendError, Capabilities, ChatRequest, Chunk, ToolCall
from voxlens.retry import Backoff, retry

log = logging.getLogger(__name__)


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, (openai.APIConnectionError, httpx.ConnectError)) and not isinstance(exc, openai.APITimeoutError)


class OpenAIBackend(Backend):
    def __init__(self, cfg, tier_name: str, *, retries: int = 2, backoff_s: float = 0.1) -> None:
        if not cfg.base_url:
            raise ValueError(
                f"gateway.{tier_name}.base_url is empty; set it to the server's OpenAI API root, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        self.tier_name = tier_name
        self.max_tokens = cfg.max_tokens
        self.temperature = cfg.temperature
        self.model = cfg.model or "default"
        self.capabilities = Capabilities(tool_calls=True, context_tokens=cfg.context_tokens, local=cfg.local,
                                         languages=tuple(cfg.languages))
        self._cfg = cfg
        self._retries = retries
        self._backoff = Backoff(initial_s=backoff_s, max_s=max(backoff_s, 2.0))
        api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._client = openai.AsyncOpenAI(
            base_url=cfg.base_url, api_key=api_key or "none", http_client=self._http, max_retries=0
        )
        self.native_tools = True  # switched off when the server rejects "tools"

    async def _open(self, request: ChatRequest) -> Any:
        kwargs: dict[str, Any] = dict(
            model=self.model,
            messages=request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        if request.tools and self.native_tools:
            kwargs["tools"] = request.tools
        return await self._client.chat.completions.create(**kwargs)

    async def _open_with_fallback(self, request: ChatRequest) -> Any:
        """Open the stream; a server that rejects "tools" (400) is asked again without them, and remembered."""
        try:
            return await self._open(request)
        except openai.BadRequestError:
            if not (request.tools and self.native_tools):
                raise
            log.warning("%s tier rejected native tools; sending tool instructions as text from now on", self.tier_name)
            self.native_tools = False
            self.capabilities = dataclasses.replace(self.capabilities, tool_calls=False)
            return await self._open(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        try:
            stream = await retry(
                lambda: self._open_with_fallback(request), retry_on=(Exception,), retry_if=_is_connection_error,
                attempts=self._retries + 1, backoff=self._backoff, what=f"{self.tier_name} tier",
            )
        except openai.APITimeoutError as exc:
            raise BackendError(
                f"{self.tier_name} tier at {self._cfg.base_url} did not answer within gateway.{self.tier_name}.timeout_s "
                f"= {self._cfg.timeout_s} s; the server is overloaded or stuck", retryable=True,
            ) from exc
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"{self.tier_name} tier at {self._cfg.base_url} is unreachable ({type(exc).__name__}); "
                f"check that the server runs and gateway.{self.tier_name}.base_url", retryable=True,
            ) from exc
        except openai.APIStatusError as exc:
            raise BackendError(
                f"{self.tier_name} tier at {self._cfg.base_url} answered HTTP {exc.status_code}: {exc.message}",
                retryable=exc.status_code >= 500 or exc.status_code == 429,
                retry_after_s=retry_after_s(exc.response.headers.get("retry-after")),
            ) from exc
        finish: str | None = None
        usage = None
        calls: dict[int, dict[str, str]] = {}
        produced = 0
        try:
            async for event in stream:
                if event.usage is not None:
                    usage = event.usage
                for choice in event.choices:
                    delta = choice.delta
                    if delta is not None and delta.content:
                        produced += 1
                        yield Chunk(text=delta.content)
                    for tc in (delta.tool_calls or []) if delta is not None else []:
                        slot = calls.setdefault(tc.index or 0, {"name": "", "arguments": ""})
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except openai.APITimeoutError as exc:
            raise BackendError(f"{self.tier_name} tier stalled: nothing for gateway.{self.tier_name}.timeout_s = "
                               f"{self._cfg.timeout_s} s after {produced} tokens", retryable=True) from exc
        except (openai.APIError, httpx.HTTPError) as exc:
            raise BackendError(f"{self.tier_name} tier stream broke: {type(exc).__name__}: {exc}", retryable=True) from exc
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # JSON that is not a chat.completion.chunk
            raise BackendError(f"{self.tier_name} tier sent a malformed stream event ({type(exc).__name__}: {exc}); "
                               f"is gateway.{self.tier_name}.base_url an OpenAI-compatible server?", retryable=True) from exc
        finally:
            await stream.close()  # closes the HTTP response: the server stops generating
        if finish is None and not calls:
            raise BackendError(f"{self.tier_name} tier ended its stream without a finish_reason after {produced} tokens: "
                               "the answer was cut off (server restarted or a proxy closed the response)", retryable=True)
        tool_calls = [ToolCall(c["name"], _json_args(c["arguments"])) for c in calls.values() if c["name"]]
        yield Chunk(
            tool_calls=tool_calls,
            finish_reason=finish or ("tool_calls" if tool_calls else "stop"),
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else produced,
        )

    async def close(self) -> None:
        await self._client.close()
        await self._http.aclose()


def retry_after_s(value: str | None) -> float:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _json_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        log.warning("tool call arguments are not JSON; ignoring them")
        return {}
    return value if isinstance(value, dict) else {}
