"""The contract: committed stubs equal what the .proto generates, and every message round-trips."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from google.protobuf import message as pb_message

from protos import assistant_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import gen_protos  # noqa: E402


def test_committed_stubs_match_the_proto(tmp_path: Path, repo_root: Path) -> None:
    written = gen_protos.generate(tmp_path)
    assert {p.name for p in written} == {"assistant_pb2.py", "assistant_pb2.pyi", "assistant_pb2_grpc.py"}
    for fresh in written:
        committed = repo_root / "protos" / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is out of date with protos/assistant.proto; run: python scripts/gen_protos.py"
        )


def _message_types() -> list[type[pb_message.Message]]:
    return [getattr(pb, name) for name in pb.DESCRIPTOR.message_types_by_name]


def _filled(cls: type[pb_message.Message]) -> pb_message.Message:
    """Set every scalar field (the first of each oneof) to a non-default value."""
    msg = cls()
    seen_oneofs: set[str] = set()
    for fd in cls.DESCRIPTOR.fields:
        oneof = fd.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        if fd.message_type is not None:
            if fd.message_type.GetOptions().map_entry:
                continue
            sub = getattr(msg, fd.name)
            if fd.is_repeated:
                sub.add()
            else:
                sub.SetInParent()
        elif fd.is_repeated:
            continue
        elif fd.enum_type is not None:
            setattr(msg, fd.name, fd.enum_type.values[-1].number)
        elif fd.type == fd.TYPE_STRING:
            setattr(msg, fd.name, f"{fd.name}-value")
        elif fd.type == fd.TYPE_BOOL:
            setattr(msg, fd.name, True)
        else:
            setattr(msg, fd.name, 7)
    return msg


@pytest.mark.parametrize("cls", _message_types(), ids=lambda c: c.__name__)
def test_every_message_round_trips(cls: type[pb_message.Message]) -> None:
    msg = _filled(cls)
    data = msg.SerializeToString()
    back = cls.FromString(data)
    assert back == msg
    if cls.DESCRIPTOR.fields:
        assert data, f"{cls.__name__} serialized to nothing: the filler set no field"


def test_query_carries_intent_slots_and_context() -> None:
    q = pb.Query(turn_id="t1", conversation_id="c1", text="weather in Paris tomorrow", language="en")
    q.intent.name = "weather"
    q.intent.slots["city"].text = "Paris"
    q.intent.slots["day_offset"].integer = 1
    q.context.location.latitude = 48.85
    q.context.time_zone = "Europe/Paris"
    q.context.route_preference = pb.ROUTE_PREFERENCE_BIG
    back = pb.DeviceMessage.FromString(pb.DeviceMessage(query=q).SerializeToString())
    assert back.WhichOneof("payload") == "query"
    assert back.query.HasField("intent")
    assert back.query.intent.slots["city"].WhichOneof("value") == "text"
    assert back.query.intent.slots["day_offset"].integer == 1
    assert back.query.context.HasField("location")
    assert not back.query.context.HasField("battery_percent")
    assert pb.DESCRIPTOR.services_by_name["Assistant"].full_name == "voxlens.v1.Assistant"


# ---------------------------------------------------------------- VoxLens's own converters, across the wire

def _wire(message: pb.GatewayMessage) -> pb.GatewayMessage:
    return pb.GatewayMessage.FromString(message.SerializeToString())


@pytest.mark.parametrize("tier", ["small", "big", "none"])
def test_a_route_the_gateway_builds_is_the_route_the_device_reads(tier: str) -> None:
    from device.client_events import RouteEvent, event_from_proto
    from gateway import messages as msg

    event = event_from_proto(_wire(msg.route("t1", tier, "m", "simple_query", failover=True)), 1.0)
    assert event == RouteEvent("t1", tier, "m", "simple_query", True, 1.0)


@pytest.mark.parametrize("phase", ["started", "finished", "failed"])
def test_tool_phases_survive_the_wire(phase: str) -> None:
    from device.client_events import ToolEvent, event_from_proto
    from gateway import messages as msg

    assert event_from_proto(_wire(msg.tool("t1", "weather", phase, "Checking the weather")), 2.0) == \
        ToolEvent("t1", "weather", phase, "Checking the weather", 2.0)


@pytest.mark.parametrize("finish,heard", [("stop", "stop"), ("length", "length"), ("cancelled", "cancelled"),
                                          ("error", "error"), ("tool_calls", "stop")])
def test_turn_end_finish_tokens_and_timings_survive_the_wire(finish: str, heard: str) -> None:
    from device.client_events import TurnEndEvent, event_from_proto
    from gateway import messages as msg
    from voxlens.timing import ManualClock, Timings

    clock = ManualClock()
    timings = Timings(clock=clock)
    start = clock()
    clock.advance(0.25)
    timings.add("first_token", start)
    event = event_from_proto(_wire(msg.end("t1", finish, timings, tokens_in=11, tokens_out=22)), 3.0)
    assert isinstance(event, TurnEndEvent)
    assert (event.finish_reason, event.tokens_in, event.tokens_out) == (heard, 11, 22)
    assert event.timings_ms == pytest.approx({"first_token": 250.0})


def test_an_error_reaches_the_device_as_its_spoken_line_and_code() -> None:
    from device.client_events import GatewayError, event_from_proto
    from gateway import messages as msg

    with pytest.raises(GatewayError) as caught:
        event_from_proto(_wire(msg.error("t1", "RESOURCE_EXHAUSTED", "queue full", "I'm busy.", True)), 4.0)
    assert (caught.value.code, caught.value.spoken, caught.value.retryable) == ("RESOURCE_EXHAUSTED", "I'm busy.", True)


def test_unknown_enum_values_from_a_newer_peer_read_as_unspecified() -> None:
    from device.client_events import event_from_proto

    raw = pb.GatewayMessage(turn_id="t1", route=pb.RouteDecision(tier=99, model="m"))
    assert event_from_proto(_wire(raw), 0.0).tier == "unspecified"
    raw = pb.GatewayMessage(turn_id="t1", end=pb.TurnEnd(finish_reason=42))
    assert event_from_proto(_wire(raw), 0.0).finish_reason == "unspecified"


@pytest.mark.parametrize("enum,prefix", [(pb.Tier, "TIER_"), (pb.RoutePreference, "ROUTE_PREFERENCE_"),
                                         (pb.ToolEvent.Phase, "PHASE_"), (pb.TurnEnd.FinishReason, "FINISH_REASON_")],
                         ids=["tier", "preference", "phase", "finish"])
def test_every_enum_value_has_one_short_name_both_ways(enum, prefix: str) -> None:
    """protos/enums.py: each value of each enum maps to its short name and back (a value added to the .proto
    is named without touching the code); unknown numbers read as "unspecified"."""
    from protos import enums

    names, numbers = {pb.Tier: (enums.TIER_NAMES, enums.TIERS),
                      pb.RoutePreference: (enums.PREFERENCE_NAMES, enums.PREFERENCES),
                      pb.ToolEvent.Phase: (enums.PHASE_NAMES, enums.PHASES),
                      pb.TurnEnd.FinishReason: (enums.FINISH_NAMES, enums.FINISH)}[enum]
    for full, number in enum.items():
        short = names[number]
        assert short == full.removeprefix(prefix).lower() and numbers[short] == number
    assert enums.name(names, max(enum.values()) + 1) == "unspecified"


def test_a_query_the_device_builds_is_the_query_the_gateway_reads(tmp_path: Path) -> None:
    """The device's converters (understand -> Intent.to_proto, device_context, AssistantClient.build_query)
    across the wire into the gateway's readers (the route preference's name, the intent's slots, the tool it
    calls without a model)."""
    from device.client import AssistantClient
    from device.commands import understand
    from gateway import messages as msg
    from gateway.turn import TurnRunner
    from protos.enums import PREFERENCE_NAMES
    from voxlens.config import DeviceConfig

    client = AssistantClient(DeviceConfig(place_name="Paris, France", latitude=48.8566, longitude=2.3522,
                                          time_zone="Europe/Paris", media_dir=str(tmp_path)))
    sent = client.build_query(understand("ask the big model what's the weather in Paris tomorrow"), "t1")
    got = pb.DeviceMessage.FromString(pb.DeviceMessage(query=sent).SerializeToString()).query
    assert PREFERENCE_NAMES[got.context.route_preference] == "big"
    assert (got.intent.name, msg.slot_text(got.intent)) == ("weather", {"city": "Paris", "day": "tomorrow"})
    assert TurnRunner.direct_tool(got) == ("weather", {"city": "Paris", "day": "tomorrow"})
    assert (got.context.time_zone, got.context.location.place_name) == ("Europe/Paris", "Paris, France")
    assert got.turn_id == "t1" and got.conversation_id == client.conversation_id and got.language
