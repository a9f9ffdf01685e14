"""Model backends: one small streaming interface, two implementations (llama.cpp in process, OpenAI-compatible HTTP)."""
from __future__ import annotations

from gateway.backends.base import Backend, BackendError, Capabilities, ChatRequest, Chunk, ToolCall

__all__ = ["Backend", "BackendError", "Capabilities", "ChatRequest", "Chunk", "ToolCall", "make_backend"]


def make_backend(cfg, tier_name: str) -> Backend:
    """Build the backend a BackendConfig describes; heavy imports happen only for the kind in use."""
    if cfg.kind == "llama_cpp":
        from gateway.backends.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(cfg, tier_name)
    if cfg.kind == "openai":
        from gateway.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg, tier_name)
    if cfg.kind == "instant":
        from gateway.backends.instant import InstantBackend

        return InstantBackend(tier_name)
    raise ValueError(
        f"gateway.{tier_name}.kind = {cfg.kind!r} is not a backend kind; use 'llama_cpp' (GGUF in process) "
        "or 'openai' (any OpenAI-compatible server)"
    )
