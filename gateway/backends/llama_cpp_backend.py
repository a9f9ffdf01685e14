"""llama.cpp in process (llama-cpp-python) on a GGUF: the small tier.

Why a thread and a flag: generation is blocking C code, so it runs off the
event loop; tokens cross back through the loop one by one, and a cancel flag
checked between tokens stops generation within one token when the device
barges in (closing the async iterator sets it).

Why the KV cache is kept: on a CPU the first token waits for the prompt to be decoded. llama.cpp reuses
the longest common token prefix with the previous prompt, the gateway lays prompts out stable-first
(gateway/prompts.py) and decodes the system message at start-up (`warm`), and the state after each answer
is kept (gateway/backends/llama_kv.py) so a conversation resumes after another device's turn.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from gateway.backends.base import Backend, BackendError, Capabilities, ChatRequest, Chunk

if TYPE_CHECKING:
    from gateway.backends.llama_kv import PromptUse

log = logging.getLogger(__name__)
_DONE = object()
KV_CACHE_BYTES = 256 << 20  # kept KV states, oldest out first: ~85 turns of 250 tokens on the 0.5B model, ~8 on an 8B


@dataclass
class GenerationStats:
    """Counters tests and metrics read: how much was generated and whether cancels reached the model."""

    streams: int = 0
    active: int = 0
    tokens_generated: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0            # all turns' prompts, summed
    prompt_tokens_evaluated: int = 0  # of those, decoded (the rest was reused from the KV cache)
    last_prompt: PromptUse | None = None  # the last generation's: prompt length, tokens decoded, restored?
    kv_restores: int = 0              # prompts that restored a kept KV state


def resolve_gguf(model: str) -> Path:
    """A catalog name or a path; the error says which and how to fix it."""
    from models.catalog import ModelError, resolve

    path = Path(model).expanduser()
    if path.suffix == ".gguf" or os.sep in model:
        if not path.is_file():
            raise BackendError(f"small model GGUF {path} does not exist; set gateway.small.model to a GGUF path")
        return path
    try:
        return Path(resolve(model or "qwen2.5-coder-0.5b-q4km"))
    except (ModelError, KeyError) as exc:
        raise BackendError(f"small model {model!r}: {exc}; run `voxlens models prepare` or set a GGUF path") from exc


class LlamaCppBackend(Backend):
    def __init__(self, cfg, tier_name: str = "small", *, llm: Any = None) -> None:
        self.tier_name = tier_name
        self.max_tokens = cfg.max_tokens
        self.temperature = cfg.temperature
        self._cfg = cfg
        self.path = resolve_gguf(cfg.model) if llm is None else None
        self.model = self.path.stem if self.path else "llama.cpp"
        self.capabilities = Capabilities(tool_calls=False, context_tokens=cfg.context_tokens, local=True,
                                         languages=tuple(cfg.languages), concurrency=1, in_process=True)
        self.stats = GenerationStats()
        self._llm = llm
        self._load_lock = threading.Lock()
        self._gen_lock = asyncio.Lock()  # one generation at a time per loaded model

    def _load(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                from llama_cpp import LlamaRAMCache

                from gateway.backends.llama_kv import KvLlama

                log.info("loading %s", self.path)
                try:
                    # Prompt and generation use the same thread count. llama.cpp's default gives the prompt
                    # every core, and its OpenMP threads spin-wait: on a 2-core box that also runs whisper and
                    # Piper, prompt reading fell to ~6 tokens/s (15 s for 90 tokens) vs ~65/s on one thread.
                    threads = self._cfg.threads or max(1, (os.cpu_count() or 2) // 2)
                    llm = KvLlama(
                        model_path=str(self.path), n_ctx=self._cfg.context_tokens,
                        n_threads=threads, n_threads_batch=threads, verbose=False,
                    )
                    # after each answer the KV state is kept; a turn whose prompt shares a longer prefix with a
                    # kept state than with the live cache (its conversation, after another device's turn)
                    # restores it instead of decoding that prefix again
                    llm.set_cache(LlamaRAMCache(capacity_bytes=KV_CACHE_BYTES))
                    self._llm = llm
                except (ValueError, RuntimeError) as exc:
                    raise BackendError(f"cannot load {self.path}: {exc}; the file may be truncated, re-run `voxlens models prepare`") from exc
            return self._llm

    async def load(self) -> None:
        """Load now (off the event loop) instead of on the first turn."""
        await asyncio.to_thread(self._load)

    async def warm(self, messages: list[dict[str, Any]]) -> None:
        """Decode a chat's prompt now, so the KV cache holds its prefix (the system message) before the first turn:
        llama.cpp reuses the longest common prefix, and the first user then pays only for what follows it."""
        async with self._gen_lock:
            await asyncio.to_thread(self._warm, messages)

    def _warm(self, messages: list[dict[str, Any]]) -> None:
        llm = self._load()
        llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
        log.info("warmed the KV cache with a %d-token prompt", llm.n_tokens)

    def _generate(self, request: ChatRequest, emit, cancel: threading.Event) -> None:
        llm = self._load()
        produced = 0
        finish = "stop"
        counting = hasattr(llm, "start_counting")
        if counting:
            llm.start_counting()
        try:
            for part in llm.create_chat_completion(
                messages=request.messages, max_tokens=request.max_tokens,
                temperature=request.temperature, stream=True,
            ):
                if cancel.is_set():
                    finish = "cancelled"
                    break
                choice = part["choices"][0]
                text = choice["delta"].get("content") or ""
                if text:
                    produced += 1
                    self.stats.tokens_generated += 1
                    emit(Chunk(text=text))
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting side, which raises it
            emit(BackendError(f"llama.cpp generation failed: {exc}"))
            return
        finally:
            if counting:
                self._count_prompt(llm.prompt_use)
        tokens_total = int(getattr(llm, "n_tokens", 0) or 0)
        emit(Chunk(finish_reason=finish, tokens_in=max(tokens_total - produced, 0), tokens_out=produced))

    def _count_prompt(self, use: PromptUse | None) -> None:
        if use is None:  # cancelled or failed before the prompt was decoded
            return
        self.stats.last_prompt = use
        self.stats.kv_restores += use.restored
        self.stats.prompt_tokens += use.prompt_tokens
        self.stats.prompt_tokens_evaluated += use.evaluated
        log.debug("prompt %d tokens, %d decoded, %d reused from the KV cache%s", use.prompt_tokens, use.evaluated,
                  use.reused, " (restored)" if use.restored else "")

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        async with self._gen_lock:
            self.stats.streams += 1
            self.stats.active += 1
            worker = asyncio.ensure_future(asyncio.to_thread(self._generate, request, emit, cancel))
            worker.add_done_callback(lambda f: emit(_DONE))
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                if not worker.done():
                    cancel.set()
                    self.stats.cancelled += 1
                # wait for the thread to notice, so the next turn gets the model; a cancel must not leave it running
                await asyncio.shield(worker)
                self.stats.active -= 1

    async def close(self) -> None:
        self._llm = None
