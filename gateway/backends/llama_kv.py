"""The small tier's Llama: counts the prompt tokens each generation decodes, and keeps KV states cheaply.

Why: llama-cpp-python keeps one KV cache and decodes only what follows the longest common prefix with the
previous prompt, so a turn from another device, or a tool result being phrased, made the next turn of a
conversation decode its whole history again. With a `LlamaRAMCache` set, llama-cpp-python saves the state
after each completion and restores the one sharing the longest prefix with a new prompt. Its stock state
also copies a logits row per token (600 KB each with Qwen's 152k vocabulary: ~55 ms to save, 270 ms to
load); here a state is sequence 0's KV cache and its token ids only (12 KB a token for the 0.5B model),
which is all a restore needs: `generate()` decodes at least one token after a restore before sampling.
How many tokens a turn decoded is what its first token waits for; timing alone cannot tell it from load.
"""
from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from llama_cpp import Llama, LlamaState, llama_cpp

log = logging.getLogger(__name__)
_SEQ = 0  # llama-cpp-python's high-level API decodes into sequence 0 only


@dataclass(frozen=True)
class PromptUse:
    """One generation's prompt: its length and how much of it was decoded (the rest came from the KV cache)."""

    prompt_tokens: int
    evaluated: int
    restored: bool = False  # a saved KV state was loaded for this prompt (another turn had replaced it)

    @property
    def reused(self) -> int:
        return self.prompt_tokens - self.evaluated


class KvLlama(Llama):
    """`Llama` whose first `eval` after `start_counting()` is recorded (`generate()` decodes the whole uncached
    prompt suffix in that one call, then one sampled token per call), with lean `save_state`/`load_state`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_use: PromptUse | None = None
        self.restores = 0
        self._counting = False
        self._restores_at_start = 0

    def start_counting(self) -> None:
        self.prompt_use = None
        self._counting = True
        self._restores_at_start = self.restores

    def eval(self, tokens: Sequence[int]) -> None:
        super().eval(tokens)
        if self._counting:
            self._counting = False
            self.prompt_use = PromptUse(prompt_tokens=self.n_tokens, evaluated=len(tokens),
                                        restored=self.restores > self._restores_at_start)

    def save_state(self) -> LlamaState:
        size = llama_cpp.llama_state_seq_get_size(self._ctx.ctx, _SEQ)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx.ctx, buf, size, _SEQ)
        if written == 0 or written > size:
            raise RuntimeError(f"llama.cpp could not copy the KV cache ({written} of {size} bytes)")
        return LlamaState(input_ids=self.input_ids[: self.n_tokens].copy(), scores=np.empty((0, 0), np.single),
                          n_tokens=self.n_tokens, llama_state=ctypes.string_at(buf, written),
                          llama_state_size=written, seed=self._seed)

    def load_state(self, state: LlamaState) -> None:
        """Restore a saved KV state; if llama.cpp refuses it, the cache is left empty and the prompt is decoded in
        full (slower, still right), rather than failing the turn."""
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._ctx.ctx), _SEQ, -1, -1)
        buf = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
        if llama_cpp.llama_state_seq_set_data(self._ctx.ctx, buf, state.llama_state_size, _SEQ) == 0:
            log.warning("llama.cpp refused a saved KV state of %d bytes; decoding the prompt in full",
                        state.llama_state_size)
            self.n_tokens = 0
            return
        self.input_ids[: state.n_tokens] = state.input_ids[: state.n_tokens]
        self.n_tokens = state.n_tokens
        self._requires_eval = True  # the logits are not restored: decode at least one token before sampling
        self._seed = state.seed
        self.restores += 1
