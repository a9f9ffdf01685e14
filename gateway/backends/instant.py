"""A backend that streams a fixed answer at once: the benchmark measures the gateway's own overhead with it."""
from __future__ import annotations

from typing import AsyncIterator

from gateway.backends.base import Capabilities, ChatRequest, Chunk

WORDS = ("It ", "is ", "sunny ", "today.")


class InstantBackend:
    def __init__(self, tier_name: str = "small") -> None:
        self.tier_name = tier_name
        self.model = "instant"
        self.max_tokens = 16
        self.temperature = 0.0
        self.capabilities = Capabilities(local=True)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        for word in WORDS:
            yield Chunk(text=word)
        yield Chunk(finish_reason="stop", tokens_in=1, tokens_out=len(WORDS))

    async def close(self) -> None:
        return None
