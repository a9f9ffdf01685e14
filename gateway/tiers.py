"""The tiers a turn may run on, and whether each may take a turn: read from what its backend declares.

Why: privacy, failover and the breaker follow from what a backend is, never from its tier's name. A
backend that declares itself local (in process, or a server on your own LAN) may see a private turn and a
remote one never; a turn in a language only one backend declares goes to that one; a prompt longer than a
backend's context goes to the other; a backend reached over a network has its own circuit breaker, an
in-process model (nothing to disconnect) has none. The tier's name (SMALL/BIG) is only what the device is
told in RouteDecision.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from gateway.admission import TierQueue
from gateway.backends.base import Backend, Capabilities
from gateway.breaker import CircuitBreaker
from voxlens.config import BackendConfig
from voxlens.timing import Clock, monotonic

NOT_LOCAL, LANGUAGE, CONTEXT = "not_local", "language", "context"  # why a backend may not take a turn
CHARS_PER_TOKEN = 3  # an estimate on the safe side (English runs ~4): a backend is never sent more than it holds
TOKENS_PER_MESSAGE = 8  # the chat template's role markers
ANSWER_ROOM_TOKENS = 64  # a prompt must leave at least this much of the context for the answer


@dataclass(frozen=True)
class Need:
    """What a turn asks of a backend."""

    private: bool = False
    language: str = ""  # the Query's BCP 47 tag ("fr", "en-US"); "": not said, any backend


@dataclass
class Tier:
    name: str                        # SMALL or BIG: what the device is told, never a decision input
    backend: Backend
    breaker: CircuitBreaker | None   # None: an in-process model, nothing that a pause would help
    queue: TierQueue | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def refuses(self, need: Need) -> str:
        """Why this backend may not take the turn (NOT_LOCAL, LANGUAGE), or "" when it may."""
        caps = self.capabilities
        if need.private and not caps.local:
            return NOT_LOCAL
        if not speaks(caps, need.language):
            return LANGUAGE
        return ""

    def holds(self, messages: list[dict[str, Any]], max_tokens: int) -> bool:
        """Does the prompt, with room for a short answer, fit the backend's declared context? (A longer cap is
        the server's to trim: llama.cpp stops at the context's end.)"""
        room = min(max_tokens, ANSWER_ROOM_TOKENS)
        return estimate_tokens(messages) + room <= self.capabilities.context_tokens

    def available(self) -> bool:
        """Is its breaker (if any) letting turns through? A preview: takes no probe slot."""
        return self.breaker is None or self.breaker.available()

    def permit(self) -> AbstractContextManager[bool]:
        return self.breaker.permit() if self.breaker is not None else nullcontext(True)

    def failed(self, retry_after_s: float = 0.0) -> None:
        if self.breaker is not None:
            self.breaker.record_failure(retry_after_s)

    def answered(self) -> None:
        if self.breaker is not None:
            self.breaker.record_success()


def primary(language: str) -> str:
    """ "en-US" -> "en": a backend that declares a language takes every region of it."""
    return language.replace("_", "-").split("-")[0].strip().lower()


def speaks(caps: Capabilities, language: str) -> bool:
    """No declared languages means any; no language on the turn means any backend."""
    if not caps.languages or not primary(language):
        return True
    return primary(language) in {primary(lang) for lang in caps.languages}


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A tokenizer-free estimate (a remote backend's tokenizer is not here): chars / 3, plus the template."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(messages)


def make_tiers(backends: dict[str, Backend | None], cfg, router, *, metrics=None,
               clock: Clock = monotonic) -> dict[str, Tier]:
    """One Tier per configured backend (GatewayConfig, RouterConfig): its breaker and its line of waiting turns."""
    tiers = {}
    for name, backend in backends.items():
        if backend is None:
            continue
        breaker = (None if backend.capabilities.in_process
                   else CircuitBreaker(name, router.breaker_failures, router.breaker_reset_s, clock=clock))
        tier_cfg = getattr(cfg, name, None) or BackendConfig()
        slots = tier_cfg.slots or backend.capabilities.concurrency  # else as many as it says it generates at once
        queue = TierQueue(name, slots, tier_cfg.max_waiting, tier_cfg.max_wait_s, metrics=metrics)
        tiers[name] = Tier(name, backend, breaker, queue)
    return tiers
