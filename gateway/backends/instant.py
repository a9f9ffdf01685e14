"""A backend that streams a fixed answer at once: the benchmark measures the gateway's own overhead with it,
and the device tests run the real gateway on it (no model to load, answers they can predict).

`echo` answers with the question (the last paragraph of the last user message: any turn instructions come
before it); `word_s` paces the words like a model writing them (a long pace: a model that does not answer).
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from gateway.backends.base import Backend, Capabilities, ChatRequest, Chunk

WORDS = ("It ", "is ", "sunny ", "today.")


class InstantBackend(Backend):
    def __init__(self, tier_name: str = "small", *, words: tuple[str, ...] = WORDS, echo: bool = False,
                 word_s: float = 0.0, capabilities: Capabilities | None = None) -> None:
        self.tier_name = tier_name
        self.model = "instant"
        self.max_tokens = 16
        self.temperature = 0.0
        self.capabilities = capabilities or Capabilities(local=True, in_process=True)
        self.words, self.echo, self.word_s = words, echo, word_s
        self.requests: list[ChatRequest] = []   # what the gateway asked, for tests to read
        self.stopped = 0                        # streams closed before their last word (a Cancel, a barge-in)

    def _answer(self, request: ChatRequest) -> tuple[str, ...]:
        if not self.echo:
            return self.words
        asked = next((m["content"] for m in reversed(request.messages) if m.get("role") == "user"), "")
        return tuple(f"{word} " for word in str(asked).split("\n\n")[-1].split())

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        words = self._answer(request)
        finished = False
        try:
            for word in words:
                if self.word_s:
                    await asyncio.sleep(self.word_s)
                yield Chunk(text=word)
            finished = True
            yield Chunk(finish_reason="stop", tokens_in=1, tokens_out=len(words))
        finally:
            if not finished:
                self.stopped += 1

    async def close(self) -> None:
        return None
