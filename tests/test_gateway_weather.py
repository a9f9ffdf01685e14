"""Typed intents call their tool directly: weather from an Open-Meteo stand-in, time in a city, follow-ups."""
from __future__ import annotations

import time

import pytest

from gateway.server import start_gateway
from protos import assistant_pb2 as pb
from tests.gateway_support import one_turn, query
from voxlens.config import Config, replace

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def gateway(small_backend, open_meteo):
    c = Config()
    tools = replace(c.tools, geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url, timeout_s=0.5)
    gw = await start_gateway(c.gateway, tools, c.router, port=0, backends={"small": small_backend, "big": None})
    yield gw
    await gw.stop(0.5)


async def test_weather_intent_answers_with_the_served_temperature(gateway, open_meteo):
    turn = await one_turn(gateway.port, query("w1", "What's the weather in Paris?", intent="weather",
                                              slots={"city": "Paris"}, conversation_id="conv-w"))
    assert turn.routes[0].reason == "intent_tool"
    started, finished = turn.of("tool")
    assert (started.tool, started.phase, finished.phase) == ("weather", pb.ToolEvent.PHASE_STARTED,
                                                             pb.ToolEvent.PHASE_FINISHED)
    assert "weather" in started.status.lower()
    assert turn.messages[0].WhichOneof("payload") == "route" and turn.messages[1].tool.phase == pb.ToolEvent.PHASE_STARTED
    assert "21" in turn.text and "{" not in turn.text  # 21.3 °C served -> "21 degrees"
    assert turn.end.finish_reason == pb.TurnEnd.FINISH_REASON_STOP
    assert "tool.weather" in {t.stage for t in turn.end.timings}
    paths = [p for p, _ in open_meteo.requests]
    assert "/v1/search" in paths and "/v1/forecast" in paths


async def test_follow_up_without_a_city_keeps_the_last_one(gateway, open_meteo):
    await one_turn(gateway.port, query("f1", "weather in Reykjavik", intent="weather", slots={"city": "Reykjavik"},
                                       conversation_id="conv-f"))
    turn = await one_turn(gateway.port, query("f2", "and tomorrow?", intent="weather", slots={"day": "tomorrow"},
                                              conversation_id="conv-f"))
    searched = [q["name"] for p, q in open_meteo.requests if p == "/v1/search"]
    assert searched[-1] == "Reykjavik"
    assert "18" in turn.text and "10" in turn.text  # tomorrow: high 17.8, low 9.6 served


@pytest.mark.parametrize("city,code,words", [
    ("Atlantis", "", "couldn't find"),            # unknown city: a spoken answer, not a failure
    ("Errorville", "UNAVAILABLE", "isn't working"),  # HTTP 500
    ("Slowtown", "DEADLINE_EXCEEDED", "too long"),   # slower than tools.timeout_s
    ("Garbletown", "UNAVAILABLE", "can't read"),     # 200 with a body that is not JSON
    ("Fieldless", "UNAVAILABLE", "can't read"),      # JSON without the forecast's fields
])
async def test_weather_errors_end_the_turn_with_a_short_spoken_explanation(gateway, city, code, words):
    t0 = time.monotonic()
    turn = await one_turn(gateway.port, query(f"e-{city}", f"weather in {city}", intent="weather", slots={"city": city}),
                          timeout_s=10)
    assert time.monotonic() - t0 < 5.0
    assert turn.of("tool")[-1].phase == pb.ToolEvent.PHASE_FAILED
    if code:
        (err,) = turn.errors
        assert err.code == code and words in err.spoken and len(err.spoken) < 80
        assert "Open-Meteo" in err.message
        assert turn.end.finish_reason == pb.TurnEnd.FINISH_REASON_ERROR
    else:
        assert words in turn.text and turn.end.finish_reason == pb.TurnEnd.FINISH_REASON_STOP


async def test_time_in_city_intent(gateway):
    turn = await one_turn(gateway.port, query("tc", "what time is it in Tokyo", intent="time_in_city",
                                              slots={"city": "Tokyo"}))
    assert turn.of("tool")[0].tool == "time"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    hour = datetime.now(ZoneInfo("Asia/Tokyo")).strftime("%H")
    assert hour in turn.text and turn.end.finish_reason == pb.TurnEnd.FINISH_REASON_STOP


async def test_arithmetic_is_answered_by_the_calculator_without_a_model(gateway):
    turn = await one_turn(gateway.port, query("calc", "What is 12 times 7?"))
    assert (turn.routes[0].tier, turn.routes[0].reason) == (pb.TIER_NONE, "intent_tool")
    assert [t.tool for t in turn.of("tool")] == ["calculator", "calculator"]
    assert "84" in turn.text and turn.end.tokens_out == 0


async def test_turn_deadline_and_metrics(small_backend, open_meteo):
    import httpx

    from tests.gateway_support import free_port

    c = Config()
    metrics_port = free_port()
    cfg = replace(c.gateway, turn_deadline_s=0.3, metrics_port=metrics_port)
    tools = replace(c.tools, geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url, timeout_s=5)
    gw = await start_gateway(cfg, tools, c.router, port=0, backends={"small": small_backend, "big": None})
    try:
        slow = await one_turn(gw.port, query("slow", "weather in Slowtown", intent="weather", slots={"city": "Slowtown"}))
        (err,) = slow.errors
        assert err.code == "DEADLINE_EXCEEDED" and "turn_deadline_s" in err.message and err.spoken
        assert slow.end.finish_reason == pb.TurnEnd.FINISH_REASON_ERROR
        await one_turn(gw.port, query("m1", "What is 6 times 7?"))
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        # the metric says what the device was told: the weather is phrased by SMALL, the calculator by template
        assert 'voxlens_routes_total{reason="intent_tool",tier="small"} 1.0' in text
        assert 'voxlens_routes_total{reason="intent_tool",tier="none"} 1.0' in text
        assert 'voxlens_errors_total{code="DEADLINE_EXCEEDED"} 1.0' in text
        assert 'voxlens_tool_calls_total{outcome="ok",tool="calculator"} 1.0' in text
        assert "Slowtown" not in text
    finally:
        await gw.stop(0.5)


async def test_free_text_question_uses_the_tool_the_small_model_writes_as_json(gateway):
    turn = await one_turn(gateway.port, query("ft", "What time is it in Tokyo?"))
    assert turn.routes[0].tier == pb.TIER_SMALL, turn.text
    assert [(t.tool, t.phase) for t in turn.of("tool")] == [("time", pb.ToolEvent.PHASE_STARTED),
                                                            ("time", pb.ToolEvent.PHASE_FINISHED)]
    from datetime import datetime
    from zoneinfo import ZoneInfo

    assert datetime.now(ZoneInfo("Asia/Tokyo")).strftime("%H") in turn.text and "{" not in turn.text


async def test_weather_without_a_city_uses_the_device_location(gateway, open_meteo):
    before = len(open_meteo.requests)
    turn = await one_turn(gateway.port, query("loc", "what's the weather", intent="weather", slots={"day": "now"}))
    new = open_meteo.requests[before:]
    assert [p for p, _ in new] == ["/v1/forecast"]  # no geocoding: the device sent its coordinates
    assert new[0][1]["latitude"] == "48.85341" and "21" in turn.text
