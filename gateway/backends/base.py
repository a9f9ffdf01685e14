"""The one backend interface: stream text deltas for a chat, cancellable, reporting tokens.

Why a Protocol plus declared capabilities: the router decides from what a
backend says it can do (tool calls, context length, where it runs), never from
its class name, and a new server kind is one small class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol


class BackendError(RuntimeError):
    """A backend failed. `retryable` says whether the same request may succeed later (connection, overload);
    `retry_after_s` is how long the server asked us to stay away (HTTP Retry-After), 0 if it did not say."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Capabilities:
    streaming: bool = True
    tool_calls: bool = False        # native OpenAI-style tool_calls
    context_tokens: int = 2048
    local: bool = True              # runs on your own machine or LAN: it may see private turns
    languages: tuple[str, ...] = ()  # BCP 47 primary tags it answers in ("en", "fr"); empty: any
    concurrency: int = 64           # turns it generates at once (an in-process model: 1); admission control reads it
    in_process: bool = False        # runs inside the gateway: no connection to fail, so no circuit breaker


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    max_tokens: int = 256
    temperature: float = 0.3
    tools: list[dict[str, Any]] | None = None  # OpenAI "tools" schema; only sent to backends with tool_calls


@dataclass
class Chunk:
    """One streamed piece. The last chunk of a stream carries finish_reason and token counts."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None   # "stop" | "length" | "tool_calls"
    tokens_in: int = 0
    tokens_out: int = 0


class Backend(Protocol):
    """Subclass it (explicitly) to inherit the no-op lifecycle: a remote server is loaded and warm already."""

    tier_name: str
    model: str
    capabilities: Capabilities
    max_tokens: int        # per-answer cap from the tier's config
    temperature: float

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        """Stream the answer. Closing the iterator (aclose, or cancelling the task) stops generation."""
        ...

    async def load(self) -> None:
        """Load the model now, at start-up, not on the first user's turn (an in-process model)."""

    async def warm(self, messages: list[dict[str, Any]]) -> None:
        """Decode this chat's prefix now, so the first turn finds it in the KV cache (an in-process model)."""

    async def close(self) -> None: ...
