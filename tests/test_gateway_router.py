"""Unit tests for the gateway's pure parts: one test per router rule, the breaker, memory, auth, limits, parsers."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.auth import AuthError, Authenticator, hash_token
from gateway.backends.base import Capabilities
from gateway.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gateway.limits import DeviceLimits, LimitExceeded
from gateway.memory import ConversationMemory
from gateway.router import BIG, RULES, SMALL, Route, RouteInput, route
from gateway.tools.base import ToolError
from gateway.tools.calculator import calculate
from gateway.tools.parse import is_json_like, looks_like_tool_call, parse_tool_call
from gateway.tools.time import time_in_city
from voxlens.config import GatewayConfig, RouterConfig, replace
from voxlens.timing import ManualClock

CFG = RouterConfig()


def test_rule_table_order_is_the_documented_policy():
    assert [name for name, _ in RULES] == ["private_topic", "explicit_preference", "intent_tool", "big_unavailable",
                                           "tools_needed", "latency_budget", "complex_query", "simple_query"]


def test_private_topic_stays_small_even_when_big_is_asked_for():
    r = route(RouteInput("ask the big model about my bank account", preference="big"), CFG)
    assert (r.tier, r.reason) == (SMALL, "private_topic")


@pytest.mark.parametrize("pref,tier", [("big", BIG), ("small", SMALL)])
def test_explicit_preference(pref, tier):
    r = route(RouteInput("explain how tides work in detail", preference=pref), CFG)
    assert (r.tier, r.reason) == (tier, "explicit_preference")


def test_big_unavailable_overrides_preference_and_complexity():
    r = route(RouteInput("explain why the sky is blue", preference="big", big_available=False), CFG)
    assert (r.tier, r.reason) == (SMALL, "big_unavailable")


def test_intent_tool_goes_small():
    assert route(RouteInput("weather in Paris", intent="weather"), CFG) == Route(SMALL, "intent_tool")


def test_tools_needed_goes_to_the_tier_that_calls_tools():
    r = route(RouteInput("what's the weather like in Oslo"), CFG)
    assert (r.tier, r.reason) == (BIG, "tools_needed")
    both = RouteInput("what's the weather like in Oslo", small_caps=Capabilities(tool_calls=True))
    assert route(both, CFG).reason != "tools_needed"


def test_latency_budget_keeps_complex_query_small_when_big_is_slow():
    r = route(RouteInput("explain how vaccines work", big_first_token_ms=4000, latency_budget_ms=1500), CFG)
    assert (r.tier, r.reason) == (SMALL, "latency_budget")


def test_complex_query_by_cue_and_by_length():
    assert route(RouteInput("explain how vaccines work"), CFG).reason == "complex_query"
    long_text = " ".join(["word"] * CFG.complex_min_words)
    assert route(RouteInput(long_text), CFG).tier == BIG


def test_simple_query_stays_small():
    r = route(RouteInput("what is the capital of France"), CFG)
    assert (r.tier, r.reason) == (SMALL, "simple_query")


def test_breaker_opens_probes_half_open_and_closes():
    clock = ManualClock(0.0)
    b = CircuitBreaker("big", failures=2, reset_s=10, clock=clock)
    b.record_failure()
    assert b.state == CLOSED and b.allow()
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    clock.now_s = 10.0
    assert b.state == HALF_OPEN
    assert b.allow() and not b.allow()  # one probe at a time
    b.record_failure()
    assert b.state == OPEN
    clock.now_s = 20.0
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED and b.allow()


def test_breaker_permit_frees_a_probe_that_ended_without_a_verdict():
    clock = ManualClock(0.0)
    b = CircuitBreaker("big", failures=1, reset_s=10, clock=clock)
    b.record_failure()
    clock.advance(10)
    with b.permit() as allowed:  # the probe, cancelled before it learned anything
        assert allowed and not b.available()
        with b.permit() as second:
            assert not second  # one probe at a time
        assert not b.available()  # the refused second use did not free the first one's slot
    assert b.state == HALF_OPEN and b.available()
    with b.permit() as allowed:
        b.record_failure()  # a verdict: the tier is still down
    assert b.state == OPEN and not b.available()


def test_memory_is_bounded_and_expires():
    clock = ManualClock(0.0)
    mem = ConversationMemory(max_turns=2, ttl_s=60, max_conversations=2, clock=clock)
    for i in range(3):
        mem.remember("c1", f"q{i}", f"a{i}", "weather", {"city": "Paris"})
    assert [m["content"] for m in mem.history("c1")] == ["q1", "a1", "q2", "a2"]
    assert mem.slots("c1", "weather") == {"city": "Paris"}
    mem.remember("c2", "x", "y")
    mem.remember("c3", "x", "y")
    assert len(mem) == 2 and mem.history("c1") == []
    clock.now_s = 61
    assert mem.history("c3") == []


def test_auth_hashes_tokens_and_names_the_fix():
    auth = Authenticator((hash_token("s3cret"),))
    assert auth.device_id((("authorization", "Bearer s3cret"),)).startswith("dev-")
    with pytest.raises(AuthError, match="missing bearer token"):
        auth.device_id(())
    with pytest.raises(AuthError, match="unknown device token") as exc:
        auth.device_id((("authorization", "Bearer wrong"),))
    assert "wrong" not in str(exc.value)


def test_limits_text_concurrency_and_rate():
    clock = ManualClock(0.0)
    lim = DeviceLimits(replace(GatewayConfig(), max_text_chars=10, max_turns_per_device=1, rate_per_minute=60), clock)
    with pytest.raises(LimitExceeded) as exc:
        lim.check_text("x" * 11)
    assert exc.value.code == "INVALID_ARGUMENT" and "max_text_chars" in str(exc.value)
    lim.start_turn("a")
    with pytest.raises(LimitExceeded, match="max_turns_per_device"):
        lim.start_turn("a")
    lim.start_turn("b")  # another device is unaffected
    lim.end_turn("a")
    for _ in range(9):
        lim.start_turn("a")
        lim.end_turn("a")
    with pytest.raises(LimitExceeded, match="rate_per_minute"):
        lim.start_turn("a")
    clock.now_s = 1.0  # one more turn's worth of tokens refills per second at 60/min
    lim.start_turn("a")


@pytest.mark.parametrize("text,answer", [("3 times (4 + 5)", "27"), ("what is 2 ** 10", "1024"),
                                         ("10 divided by 4", "2.5"), ("5 km to miles", "3.1069"),
                                         ("100 f to c", "37.7778"), ("sqrt(16) + 1", "5")])
def test_calculator(text, answer):
    assert calculate(text).data["result"] == answer


@pytest.mark.parametrize("text", ["__import__('os').system('ls')", "2 ** 99999", "1/0", "open('x')", "5 km to kg"])
def test_calculator_refuses_unsafe_or_invalid(text):
    with pytest.raises(ToolError) as exc:
        calculate(text)
    assert exc.value.spoken


@pytest.mark.parametrize("text", [
    '{"name": "weather", "arguments": {"city": "Oslo"}}',
    '```json\n{"name": "weather", "arguments": {"city": "Oslo"}}\n```',
    'Sure! <tool_call>{"name": "weather", "parameters": {"city": "Oslo"}}</tool_call>',
    '{"name": "get_weather(Oslo)", "arguments": {"city": "Oslo"}}',
    '{"name": "weather", "arguments": {"city": "Oslo", "day": "tom',  # cut short by the token limit
    '[{"type": "function", "function": {"name": "weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}}]',
])
def test_tool_call_written_as_text_is_parsed(text):
    call = parse_tool_call(text, ["weather", "time"])
    assert call is not None and call.name == "weather" and call.arguments == {"city": "Oslo"}


def test_text_that_is_not_a_known_tool_call_stays_text():
    assert parse_tool_call('{"name": "rm_rf", "arguments": {}}', ["weather"]) is None
    assert parse_tool_call("Paris is the capital of France.", ["weather"]) is None
    assert looks_like_tool_call("  ```") and not looks_like_tool_call("Paris")
    assert is_json_like('{"name": "rm_rf", "argu') and not is_json_like("Paris is lovely.")


async def test_time_in_city_from_zoneinfo_and_device_zone():
    now = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
    tokyo = await time_in_city("Tokyo", "Europe/Paris", now_utc=now)
    assert tokyo.data["time"] == "21:00" and "Thursday" in tokyo.summary
    mine = await time_in_city(None, "Europe/Paris", now_utc=now)
    assert mine.data["time"] == "13:00"
    with pytest.raises(ToolError) as exc:
        await time_in_city("Atlantis", "Europe/Paris", now_utc=now)
    assert exc.value.code == "NOT_FOUND"


def test_private_topic_goes_to_the_tier_whose_backend_is_local():
    small_remote = Capabilities(local=False)
    r = route(RouteInput("my bank account", small_caps=small_remote, big_caps=Capabilities(local=True)), CFG)
    assert (r.tier, r.reason) == (BIG, "private_topic")
    assert route(RouteInput("my bank account", small_caps=None, big_caps=Capabilities(local=False)), CFG).tier == SMALL
