"""One turn: route, run tools, stream the model's answer with mid-turn failover, end with timings.

Why this shape: the server only frames messages and enforces limits; everything
a turn decides lives here, emitting GatewayMessages through one callback, so it
runs the same for every device and is testable through real gRPC.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from gateway import messages as msg
from gateway import prompts
from gateway.admission import SPOKEN_BUSY, Busy, TierQueue
from gateway.backends.base import Backend, BackendError, ChatRequest, ToolCall
from gateway.memory import ConversationMemory
from gateway.metrics import GatewayMetrics
from gateway.router import BIG, SMALL, RouteInput, is_private, route
from gateway.tiers import CONTEXT, LANGUAGE, Need, Tier
from gateway.tools.base import ToolError, ToolResult
from gateway.tools.calculator import calculate
from gateway.tools.parse import is_json_like, looks_like_tool_call, parse_tool_call
from gateway.tools.registry import STATUS, Toolbox
from gateway.tools.weather import Place
from protos import assistant_pb2 as pb
from protos.enums import PREFERENCE_NAMES
from voxlens.phrases import translate
from voxlens.timing import Timings

log = logging.getLogger(__name__)
Emit = Callable[[pb.GatewayMessage], Awaitable[None]]
INTENT_TOOLS = {"weather": "weather", "time_in_city": "time"}
PHRASED_TOOLS = {"weather", "time"}  # a calculator result reads best as the template says it
PHRASE_MAX_TOKENS = 48
PHRASE_TIMEOUT_S = 10.0  # then the template answers: a slow model must not hold a known fact back
TOOL_CALL_MIN_TOKENS = 48  # room for a tool call written as JSON
SPOKEN_UNSURE = "Sorry, I'm not sure how to answer that."
SPOKEN_NO_MODEL = "I can't reach a language model right now. Please try again soon."
SPOKEN_NOT_PRIVATE = "I can't answer that privately right now. Please try again soon."
SPOKEN_NO_LANGUAGE = "Sorry, I can't answer in that language yet."
SPOKEN_TOO_LONG = "That question is too long for me. Please ask a shorter one."
NONE = "none"


class _Failed(Exception):
    """The tier failed before its first token: the turn may move to the other tier."""


class _Refused(_Failed):
    """The tier's line was full or too slow (admission control): the other tier may take the turn."""


@dataclass(frozen=True)
class Choice:
    tier: str        # SMALL, BIG or NONE (no tier may take the turn)
    reason: str
    private: bool    # only a backend that declares itself local may see this turn's words


@dataclass
class Outcome:
    text: str = ""
    finish: str = "stop"
    tokens_in: int = 0
    tokens_out: int = 0
    tool_call: ToolCall | None = None


@dataclass
class TurnContext:
    query: pb.Query
    emit: Emit
    timings: Timings = field(default_factory=Timings)
    tokens_in: int = 0
    tokens_out: int = 0
    first_token_s: float | None = None
    tier: str = NONE
    need: Need = field(default_factory=Need)
    start_s: float = 0.0

    def __post_init__(self) -> None:
        self.start_s = self.timings.clock()

    @property
    def turn_id(self) -> str:
        return self.query.turn_id

    @property
    def private(self) -> bool:
        return self.need.private


class TurnRunner:
    """The one tier executor: which backend may take a turn, failover and breakers all read what each backend
    declares (gateway/tiers.py); the tier's name is only what the device is told."""

    def __init__(self, tiers: dict[str, Tier], toolbox: Toolbox, memory: ConversationMemory,
                 metrics: GatewayMetrics, router_cfg) -> None:
        self.tiers = tiers
        self.backends: dict[str, Backend] = {name: t.backend for name, t in tiers.items()}
        self.toolbox = toolbox
        self.memory = memory
        self.metrics = metrics
        self.router_cfg = router_cfg
        self.first_token_ms: dict[str, float] = {}  # moving average per tier, read by the latency rule

    # ------------------------------------------------------------------ routing
    @staticmethod
    def direct_tool(query: pb.Query) -> tuple[str, dict[str, str]] | None:
        """The tool a turn calls without asking a model: a typed intent, or plain arithmetic / a unit conversion.

        Why arithmetic here: a calculation is unambiguous and a small model is unreliable at both arithmetic
        and choosing tools, so "what is 12 times 7" never reaches a model."""
        if query.HasField("intent") and query.intent.name in INTENT_TOOLS:
            return INTENT_TOOLS[query.intent.name], msg.slot_text(query.intent)
        if not query.HasField("intent") and any(ch.isdigit() for ch in query.text):
            try:
                calculate(query.text)
            except ToolError:
                return None
            return "calculator", {"expression": query.text}
        return None

    def need(self, query: pb.Query) -> Need:
        return Need(private=is_private(query.text, self.router_cfg), language=query.language)

    def may_use(self, tier: str, need: Need) -> bool:
        """Is the tier configured, and may its backend take this turn (local for a private one, its language)?"""
        t = self.tiers.get(tier)
        return t is not None and not t.refuses(need)

    def able(self, need: Need) -> list[str]:
        """The tiers whose backends may take the turn, in the order a turn fails over."""
        return [name for name in dict.fromkeys((SMALL, BIG, *self.tiers)) if self.may_use(name, need)]

    def choose(self, query: pb.Query, direct: tuple[str, dict[str, str]] | None = None) -> Choice:
        need = self.need(query)
        able = self.able(need)
        ready = [name for name in able if self.tiers[name].available()]
        small, big = self.tiers.get(SMALL), self.tiers.get(BIG)
        inp = RouteInput(
            text=query.text, preference=PREFERENCE_NAMES.get(query.context.route_preference, "auto"),
            intent=direct[0] if direct else (query.intent.name if query.HasField("intent") else ""),
            big_available=BIG in ready,
            small_caps=small.capabilities if small else None,
            big_caps=big.capabilities if big else None,
            big_first_token_ms=self.first_token_ms.get(BIG, 0.0),
            latency_budget_ms=self.router_cfg.latency_budget_ms,
        )
        decided = route(inp, self.router_cfg)
        if decided.tier in ready or (decided.tier in able and not ready):
            return Choice(decided.tier, decided.reason, need.private)
        if able:  # the rule's tier may not take it: another may (its breaker, privacy, language)
            t = self.tiers.get(decided.tier)
            why = (t.refuses(need) or "unavailable") if t is not None else "unavailable"
            return Choice((ready or able)[0], f"{decided.tier}_{why}", need.private)
        if need.private:
            return Choice(NONE, "private_no_local_tier", need.private)
        return Choice(NONE, "no_tier_can_answer", need.private)

    # ------------------------------------------------------------------ entry
    async def run(self, ctx: TurnContext) -> None:
        """Run the turn and send its TurnEnd. Cancellation and deadlines are the caller's (it sends their TurnEnd)."""
        query, emit = ctx.query, ctx.emit
        with ctx.timings.measure("route"):
            direct = self.direct_tool(query)
            choice = self.choose(query, direct)
        ctx.need = self.need(query)
        self.metrics.route_ms.observe(ctx.timings.get("route").duration_ms)
        if direct is not None:
            finish = await self._intent_turn(ctx, choice.tier, choice.reason, *direct)
        else:
            finish = await self._free_turn(ctx, choice.tier, choice.reason)
        ctx.timings.add("total", ctx.start_s)
        self.metrics.turn_ms.labels(ctx.tier).observe(ctx.timings.get("total").duration_ms)
        self.metrics.turns.labels(finish).inc()
        await emit(msg.end(ctx.turn_id, finish, ctx.timings, ctx.tokens_in, ctx.tokens_out))

    async def _announce(self, ctx: TurnContext, tier: str, model: str, reason: str, failover: bool = False) -> None:
        """Tell the device where the turn runs; the route metric counts what the device was told, once per turn."""
        if not failover:
            self.metrics.routes.labels(tier, reason).inc()
        await ctx.emit(msg.route(ctx.turn_id, tier, model, reason, failover))

    async def fail(self, ctx: TurnContext, code: str, message: str, spoken: str, retryable: bool) -> str:
        self.metrics.errors.labels(code).inc()
        spoken = translate(ctx.query.language, spoken)  # voxlens/phrases/<lang>.yaml, by the English line
        await ctx.emit(msg.error(ctx.turn_id, code, message, spoken, retryable))
        return "error"

    # ------------------------------------------------------------------ typed intents
    def _location(self, query: pb.Query) -> Place | None:
        if not query.context.HasField("location"):
            return None
        loc = query.context.location
        return Place(loc.place_name or "your area", loc.latitude, loc.longitude, timezone=query.context.time_zone)

    async def _run_tool(self, ctx: TurnContext, name: str, args: dict[str, Any]) -> ToolResult:
        status = translate(ctx.query.language, STATUS.get(name, "Working on it"))  # said as a filler
        await ctx.emit(msg.tool(ctx.turn_id, name, "started", status))
        try:
            with ctx.timings.measure(f"tool.{name}"):
                result = await self.toolbox.run(name, args, location=self._location(ctx.query),
                                                time_zone=ctx.query.context.time_zone, language=ctx.query.language)
        except ToolError as exc:
            self.metrics.tool_calls.labels(name, "failed").inc()
            log.warning("tool %s failed with %s", name, exc.code)  # the detail may hold user text: debug only
            log.debug("tool %s failure detail: %s", name, exc)
            await ctx.emit(msg.tool(ctx.turn_id, name, "failed", exc.spoken))
            raise
        self.metrics.tool_calls.labels(name, "ok").inc()
        await ctx.emit(msg.tool(ctx.turn_id, name, "finished"))
        return result

    async def _intent_turn(self, ctx: TurnContext, tier: str, reason: str, tool: str, slots: dict[str, str]) -> str:
        query = ctx.query
        remembered = self.memory.slots(query.conversation_id, tool)
        if not slots.get("city") and remembered.get("city"):  # "and tomorrow?" keeps the last city
            slots["city"] = remembered["city"]
        backend = self.backends.get(tier) if tool in PHRASED_TOOLS and self.may_use(tier, ctx.need) else None
        await self._announce(ctx, tier if backend else NONE, backend.model if backend else "template", reason)
        try:
            result = await self._run_tool(ctx, tool, slots)
        except ToolError as exc:
            return await self._tool_failed(ctx, exc)
        text = await self._phrase(ctx, tier, result) if backend else result.summary
        await ctx.emit(msg.delta(ctx.turn_id, text))
        self.memory.remember(query.conversation_id, query.text or result.summary, text, tool, slots, private=ctx.private,
                             turn_id=ctx.turn_id)
        return "stop"

    async def _tool_failed(self, ctx: TurnContext, exc: ToolError) -> str:
        """An unknown city or a bad expression is an answer (say it); a broken service is an Error."""
        if exc.code in ("NOT_FOUND", "INVALID_ARGUMENT"):
            await ctx.emit(msg.delta(ctx.turn_id, exc.spoken))
            self.memory.remember(ctx.query.conversation_id, ctx.query.text, exc.spoken, private=ctx.private,
                                 turn_id=ctx.turn_id)
            return "stop"
        return await self.fail(ctx, exc.code, str(exc), exc.spoken, exc.retryable)

    async def _phrase(self, ctx: TurnContext, tier: str, result: ToolResult) -> str:
        """The model phrases the facts; the template answers if it fails, stalls or changes a number."""
        if not self.may_use(tier, ctx.need):
            return result.summary
        backend = self.backends[tier]
        with self.tiers[tier].permit() as allowed:
            if not allowed:
                return result.summary
            try:
                async with self._slot(ctx, tier):
                    return await self._phrase_on(ctx, tier, backend, result)
            except Busy as exc:  # the facts are known: say them now rather than wait for a model to phrase them
                log.info("%s; the template phrases the %s result", exc, result.tool)
                return result.summary

    async def _phrase_on(self, ctx: TurnContext, tier: str, backend: Backend, result: ToolResult) -> str:
        ctx.tier = tier
        # no conversation: with it the small model repeated the previous answer before the facts
        request = ChatRequest(self._messages(ctx, backend, prompts.phrase_turn(result), with_history=False),
                              max_tokens=PHRASE_MAX_TOKENS, temperature=0.0)
        parts: list[str] = []
        try:
            with ctx.timings.measure("phrase"):
                async with asyncio.timeout(PHRASE_TIMEOUT_S), aclosing(backend.stream(request)) as stream:
                    async for chunk in stream:
                        parts.append(chunk.text)
                        ctx.tokens_in += chunk.tokens_in
                        ctx.tokens_out += chunk.tokens_out
        except (BackendError, TimeoutError) as exc:
            log.warning("%s tier could not phrase the %s result (%s); using the template", tier, result.tool, exc)
            self.tiers[tier].failed(getattr(exc, "retry_after_s", 0.0))  # a TimeoutError has none
            return result.summary
        self.tiers[tier].answered()
        text = " ".join("".join(parts).split())
        return text if prompts.phrase_ok(text, result) else result.summary

    # ------------------------------------------------------------------ free-form questions
    def _messages(self, ctx: TurnContext, backend: Backend, turn: list[dict[str, Any]],
                  instructions: str = "", with_history: bool = True) -> list[dict[str, Any]]:
        """The chat, laid out for the KV cache (see gateway/prompts.py): the device's system message and the
        conversation first, this turn's instructions and messages last."""
        q = ctx.query
        place = q.context.location.place_name if q.context.HasField("location") else ""
        history = (self.memory.history(q.conversation_id, include_private=backend.capabilities.local)
                   if with_history else [])
        return prompts.chat(prompts.system_prompt(place, q.context.time_zone, q.language), history, turn, instructions)

    def _request(self, ctx: TurnContext, backend: Backend, extra: list[dict[str, Any]] | None = None) -> ChatRequest:
        q = ctx.query
        wants_tools = prompts.needs_tools(q.text)
        native = wants_tools and backend.capabilities.tool_calls
        instructions = prompts.TOOLS_IN_TEXT if wants_tools and not native else ""
        messages = self._messages(ctx, backend, [{"role": "user", "content": q.text}, *(extra or [])], instructions)
        max_tokens = max(backend.max_tokens, TOOL_CALL_MIN_TOKENS) if wants_tools and not extra else backend.max_tokens
        tools = self.toolbox.schemas() if native and not extra else None
        return ChatRequest(messages, max_tokens=max_tokens, temperature=backend.temperature, tools=tools)

    async def _free_turn(self, ctx: TurnContext, tier: str, reason: str) -> str:
        q = ctx.query
        order = [t for t in dict.fromkeys((tier, *self.able(ctx.need))) if self.may_use(t, ctx.need)]
        failover = announced = False
        last_error = ""
        refused = too_long = 0
        for candidate in order:
            backend = self.backends[candidate]
            request = self._request(ctx, backend)
            if not self.tiers[candidate].holds(request.messages, request.max_tokens):
                last_error = f"the prompt does not fit {candidate}'s {backend.capabilities.context_tokens} tokens"
                too_long += 1
                reason = f"{candidate}_{CONTEXT}"
                continue  # never sent: the other backend takes it as its first try
            with self.tiers[candidate].permit() as allowed:
                if not allowed:
                    continue
                if failover:
                    reason = f"failover_{tier}_failed"
                    self.metrics.failovers.labels(tier).inc()
                await self._announce(ctx, candidate, backend.model, reason, failover)
                announced = True
                ctx.tier = candidate
                try:
                    outcome = await self._answer(ctx, candidate, backend, request)
                except _Failed as exc:
                    last_error = str(exc)
                    refused += isinstance(exc, _Refused)
                    failover = True
                    continue
                except BackendError as exc:  # broke after output started: nothing to fail over to cleanly
                    return await self.fail(ctx, "UNAVAILABLE", str(exc), "Sorry, I lost my train of thought.", True)
                except ToolError as exc:
                    return await self._tool_failed(ctx, exc)
            self.memory.remember(q.conversation_id, q.text, outcome.text, private=ctx.private, turn_id=ctx.turn_id)
            return outcome.finish
        if refused and refused == len(order):
            return await self.fail(ctx, "RESOURCE_EXHAUSTED", f"every tier that may answer is busy: {last_error}; "
                                   "add capacity or raise max_waiting / max_wait_s", SPOKEN_BUSY, True)
        if not announced:
            await self._announce(ctx, NONE, "", reason if tier == NONE or too_long else "unavailable")
        if too_long and too_long == len(order):
            return await self.fail(ctx, "INVALID_ARGUMENT", f"the question is too long for every model tier "
                                   f"({last_error}); ask a shorter one or raise gateway.small/big.context_tokens",
                                   SPOKEN_TOO_LONG, False)
        if ctx.private:
            return await self.fail(ctx, "UNAVAILABLE", "a private turn found no local model tier able to answer "
                                   f"({last_error or 'small tier not configured'}); it is never sent to a remote tier; "
                                   "check gateway.small", SPOKEN_NOT_PRIVATE, True)
        if not order and any(t.refuses(ctx.need) == LANGUAGE for t in self.tiers.values()):
            declared = sorted({lang for t in self.tiers.values() for lang in t.capabilities.languages})
            return await self.fail(ctx, "INVALID_ARGUMENT", f"no model tier declares language {ctx.need.language!r} "
                                   f"(declared: {', '.join(declared)}); add it to gateway.small.languages or "
                                   "gateway.big.languages", SPOKEN_NO_LANGUAGE, False)
        return await self.fail(ctx, "UNAVAILABLE", f"no model tier could answer: {last_error or 'none configured'}; "
                               "check gateway.small / gateway.big", SPOKEN_NO_MODEL, True)

    async def _answer(self, ctx: TurnContext, tier: str, backend: Backend, request: ChatRequest) -> Outcome:
        """Stream one answer; run at most one tool round if the model asks for a tool."""
        outcome = await self._stream(ctx, tier, backend, request)
        if outcome.tool_call is None:
            return outcome
        call = outcome.tool_call
        result = await self._run_tool(ctx, call.name, call.arguments)
        if call.name != "web_search":  # facts with a template: phrase them briefly, numbers checked
            text = await self._phrase(ctx, tier, result) if call.name in PHRASED_TOOLS else result.summary
            await ctx.emit(msg.delta(ctx.turn_id, text))
            return Outcome(text=text)
        extra = [{"role": "assistant", "content": f'{{"name": "{call.name}"}}'}, prompts.tool_followup(result)]
        try:
            again = await self._stream(ctx, tier, backend, self._request(ctx, backend, extra))
        except _Failed:
            again = Outcome()
        if not again.text.strip() or again.tool_call is not None:
            await ctx.emit(msg.delta(ctx.turn_id, result.summary))
            return Outcome(text=result.summary)
        return again

    async def _stream(self, ctx: TurnContext, tier: str, backend: Backend, request: ChatRequest) -> Outcome:
        """Forward deltas as they come, holding back text that may be a tool call written as JSON."""
        try:
            async with self._slot(ctx, tier):
                return await self._stream_in_slot(ctx, tier, backend, request)
        except Busy as exc:
            log.info("%s", exc)
            raise _Refused(str(exc)) from exc

    def _slot(self, ctx: TurnContext, tier: str):
        """A generation slot on the tier (admission control); the wait is one of the turn's timings."""
        queue = self.tiers[tier].queue
        if queue is None:
            return nullcontext()
        return _timed_slot(ctx, queue)

    async def _stream_in_slot(self, ctx: TurnContext, tier: str, backend: Backend, request: ChatRequest) -> Outcome:
        out = Outcome()
        held: list[str] = []
        started = ctx.timings.clock()
        spoke = False
        gen = backend.stream(request)
        try:
            async for chunk in gen:
                out.tokens_in += chunk.tokens_in
                out.tokens_out += chunk.tokens_out
                if chunk.finish_reason:
                    out.finish = chunk.finish_reason
                if chunk.tool_calls:
                    out.tool_call = next((c for c in chunk.tool_calls if c.name in self.toolbox.names), None)
                if not chunk.text:
                    continue
                if ctx.first_token_s is None:
                    self._first_token(ctx, tier, started)
                out.text += chunk.text
                if not spoke and looks_like_tool_call(out.text):
                    held.append(chunk.text)
                    continue
                spoke = True
                text, held = "".join(held) + chunk.text, []
                await ctx.emit(msg.delta(ctx.turn_id, text))
        except BackendError as exc:
            self.tiers[tier].failed(exc.retry_after_s)
            if ctx.first_token_s is None:
                log.warning("%s tier failed before its first token: %s", tier, exc)
                raise _Failed(str(exc)) from exc
            raise
        finally:
            await gen.aclose()
        self.tiers[tier].answered()
        ctx.tokens_in += out.tokens_in
        ctx.tokens_out += out.tokens_out
        self.metrics.tokens.labels(tier, "in").inc(out.tokens_in)
        self.metrics.tokens.labels(tier, "out").inc(out.tokens_out)
        if held and out.tool_call is None:
            out.tool_call = parse_tool_call(out.text, self.toolbox.names)
            if out.tool_call is None:  # no known tool: speak it unless it is raw JSON
                spoken = translate(ctx.query.language, SPOKEN_UNSURE) if is_json_like(out.text) else "".join(held)
                out.text = spoken
                await ctx.emit(msg.delta(ctx.turn_id, spoken))
        if out.tool_call is not None:
            out.text = ""
        ctx.timings.add(f"generate.{tier}", started)
        return out

    def _first_token(self, ctx: TurnContext, tier: str, started: float) -> None:
        ctx.first_token_s = ctx.timings.clock()
        rec = ctx.timings.add("first_token", ctx.start_s, ctx.first_token_s)
        self.metrics.first_token_ms.labels(tier).observe(rec.duration_ms)
        prev = self.first_token_ms.get(tier)
        self.first_token_ms[tier] = rec.duration_ms if prev is None else 0.8 * prev + 0.2 * rec.duration_ms


@asynccontextmanager
async def _timed_slot(ctx: TurnContext, queue: TierQueue) -> AsyncIterator[None]:
    start_s = ctx.timings.clock()
    async with queue.slot():
        ctx.timings.add(f"queue.{queue.tier}", start_s)
        yield
