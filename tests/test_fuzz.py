"""Fuzzing with hypothesis: the parsers that take input from outside never crash and never hang.

Profiles: `ci` (the default, a fixed budget per target, run by scripts/test and .ci/run) and `long`
(10,000 cases per target): `VOXLENS_FUZZ=long scripts/test tests/test_fuzz.py`. The seed is printed in
the pytest header (`fuzz: ...`); rerun it with `VOXLENS_FUZZ_SEED=N`.
"""
from __future__ import annotations

import asyncio
import json
import os
import struct
import tempfile
import threading
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from device.audio import AudioFormatError, read_wav
from device.commands import load_grammar
from gateway.tools.parse import is_json_like, looks_like_tool_call, parse_tool_call
from protos import assistant_pb2 as pb
from voxlens.config import Config, ConfigError, load, replace

settings.register_profile("ci", max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=10_000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("VOXLENS_FUZZ", "ci"))
SEED = int(os.environ.get("VOXLENS_FUZZ_SEED", "0"))  # chosen and printed by tests/conftest.py
GRAMMAR = load_grammar("en")
TOOLS = {"weather", "time", "calculator", "web_search"}
WORDS = ["set", "a", "timer", "for", "five", "minutes", "what", "time", "is", "it", "volume", "up", "weather",
         "in", "paris", "ask", "the", "big", "model", "take", "photo", "cancel", "stop", "brightness", "%", "0",
         "twenty", "hours", "seconds", "and", "tomorrow", "-", "1e309", "ünïcödé", "\u200b", "ไทย", "हिन्दी"]


# ---------------------------------------------------------------- the grammar: any text, any length
@seed(SEED)
@given(st.one_of(st.text(max_size=3000), st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join)))
def test_grammar_understands_any_text_without_crashing(text: str) -> None:
    u = GRAMMAR.understand(text)
    assert isinstance(u.text, str)
    assert not (u.command is not None and u.intent is not None)  # one outcome per utterance
    if u.intent is not None:
        u.intent.to_proto()  # whatever it found must still go on the wire


# ---------------------------------------------------------------- the WAV reader: lying and truncated files
def _wav(rate: int, channels: int, width: int, fmt: int, frames: bytes, data_len: int | None) -> bytes:
    block = channels * width
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, (rate * block) % 2**32, block, width * 8)
    data_len = len(frames) if data_len is None else data_len
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", data_len) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


wav_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(_wav, st.sampled_from([0, 1, 8000, 16000, 22050, 44100, 48000, 2**31 - 1]), st.integers(0, 8),
              st.sampled_from([0, 1, 2, 3, 4, 8]), st.sampled_from([1, 3, 0xFFFE, 0, 7]), st.binary(max_size=4096),
              st.one_of(st.none(), st.integers(0, 2**32 - 1))),
).flatmap(lambda b: st.integers(0, len(b)).map(lambda cut: b[:cut] if cut else b))


@seed(SEED)
@given(wav_bytes)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_wav_reader_reads_or_refuses_with_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.wav"
        path.write_bytes(data)
        try:
            pcm = read_wav(path)
        except AudioFormatError as exc:
            assert str(path) in str(exc)  # says which file
            return
    assert pcm.dtype == np.int16 and pcm.ndim == 1


# ---------------------------------------------------------------- the config loader: TOML text and env values
SECTIONS = {"models": ["stt", "cache_dir"], "vad": ["threshold", "min_silence_ms"], "device": ["gateway", "follow_up_s",
            "time_zone", "latitude"], "gateway": ["port", "max_text_chars", "token_sha256"],
            "wakeword": ["threshold", "heads", "verifier"], "router": ["private_keywords", "breaker_failures"]}
env_values = st.dictionaries(
    st.sampled_from([f"VOXLENS_{s.upper()}__{k.upper()}" for s, ks in SECTIONS.items() for k in ks]
                    + ["VOXLENS_NOPE__X", "VOXLENS_GATEWAY__SMALL__MODEL", "VOXLENS_GATEWAY__NOPE"]),
    st.one_of(st.text(max_size=40), st.sampled_from(["1", "-1", "0.5", "nan", "inf", "true", "a,b", "1e400", ""])),
    max_size=6)


@seed(SEED)
@given(env_values, st.text(max_size=400))
def test_config_loader_builds_a_config_or_names_the_bad_value(environ: dict[str, str], toml_text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "voxlens.toml"
        path.write_text(toml_text, encoding="utf-8", errors="surrogatepass")
        try:
            for args in ((None, environ), (path, {})):
                try:
                    cfg = load(*args)
                except ConfigError as exc:
                    assert str(exc)
                    continue
                assert isinstance(cfg, Config)
        finally:
            # load() makes models.cache_dir the process's model folder: a fuzzed one ("è") must not
            # outlive its case, or later tests write their caches into the checkout
            from models.catalog import configure_cache_dir

            configure_cache_dir(None)


# ---------------------------------------------------------------- the model-output tool-call parser
json_ish = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
              st.sampled_from(sorted(TOOLS))),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.one_of(st.sampled_from(["name", "tool", "function", "arguments", "parameters", "city"]),
                  st.text(max_size=8)), inner, max_size=4)), max_leaves=12)


@seed(SEED)
@given(st.one_of(st.text(max_size=500), json_ish.map(repr), json_ish.map(json.dumps),
                 st.tuples(st.text(max_size=30), json_ish.map(json.dumps)).map("".join)))
def test_tool_call_parser_returns_a_known_tool_or_nothing(text: str) -> None:
    call = parse_tool_call(text, TOOLS)
    looks_like_tool_call(text)
    is_json_like(text)
    if call is not None:
        assert call.name in TOOLS and isinstance(call.arguments, dict)


# ---------------------------------------------------------------- the gateway over real gRPC
# The tiers are the "instant" backend kind (a fixed answer at once): the target is the gateway's handling of
# messages, so every case costs milliseconds instead of a model's seconds.
def _query(turn_id: str, text: str, intent: str, slot: str, pref: int, tz: str) -> pb.DeviceMessage:
    q = pb.Query(turn_id=turn_id, text=text, language="xx",
                 context=pb.DeviceContext(route_preference=pref, time_zone=tz))
    if intent:
        q.intent.name = intent
        q.intent.slots["city"].text = slot
    return pb.DeviceMessage(query=q)


turn_ids = st.sampled_from(["t1", "t2", "", "t1", "\x00", "x" * 300])
device_messages = st.lists(st.one_of(
    st.builds(_query, turn_ids, st.one_of(st.text(max_size=100), st.just("a" * 5000), st.just("12 times 7")),
              st.sampled_from(["", "weather", "time_in_city", "nope"]), st.text(max_size=30),
              st.sampled_from([0, 1, 2, 99, -5]), st.sampled_from(["", "Europe/Paris", "Not/AZone", "../../etc"])),
    st.builds(lambda t: pb.DeviceMessage(cancel=pb.Cancel(turn_id=t)), turn_ids),
    st.just(pb.DeviceMessage()),
).map(lambda m: m.SerializeToString()) | st.binary(max_size=64), max_size=5)


@pytest.fixture(scope="module")
def fuzz_gateway():
    """A real gateway on loopback, served from its own event loop thread (hypothesis drives sync tests)."""
    from gateway.backends.instant import InstantBackend
    from gateway.server import start_gateway

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    c = Config()
    cfg = replace(c.gateway, rate_per_minute=0, max_text_chars=2000)
    tools = replace(c.tools, geocoding_url="http://127.0.0.1:9/v1/search", forecast_url="http://127.0.0.1:9/v1/forecast",
                    timeout_s=0.5)
    gw = asyncio.run_coroutine_threadsafe(start_gateway(cfg, tools, c.router, port=0, backends={
        "small": InstantBackend("small"), "big": None}), loop).result(60)
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.port}")
    raw = channel.stream_stream("/voxlens.v1.Assistant/Converse", request_serializer=lambda b: b,
                                response_deserializer=pb.GatewayMessage.FromString)
    yield gw, raw
    channel.close()
    asyncio.run_coroutine_threadsafe(gw.stop(0.5), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _converse(raw, messages: list[bytes]) -> list[pb.GatewayMessage]:
    try:
        return list(raw(iter(messages), timeout=20))
    except grpc.RpcError as exc:  # a refused stream is an answer; a hang is DEADLINE_EXCEEDED and fails
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            STATS["hangs"] += 1
        assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "the gateway hung on this stream"
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), exc
        return []


STATS = {"cases": 0, "streams_read_whole": 0, "turns_sent": 0, "turns_ended": 0, "turns_lost": 0, "hangs": 0}


def _turns_sent(messages: list[bytes]) -> Counter | None:
    """Queries per turn id, or None when a message cannot be decoded (the stream is then refused whole)."""
    sent: Counter = Counter()
    for data in messages:
        try:
            message = pb.DeviceMessage.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends: the gateway refuses the stream
            return None
        if message.WhichOneof("payload") == "query":
            sent[message.query.turn_id] += 1
    return sent


@seed(SEED)
@given(device_messages)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_gateway_survives_any_device_messages_and_keeps_serving(fuzz_gateway, messages: list[bytes]) -> None:
    gw, raw = fuzz_gateway
    STATS["cases"] += 1
    replies = _converse(raw, messages)
    sent = _turns_sent(messages)
    if sent is not None:  # every query the gateway read ends in a TurnEnd or an Error of its own turn id
        STATS["streams_read_whole"] += 1
        ended = Counter(m.turn_id for m in replies if m.WhichOneof("payload") in ("end", "error"))
        lost = {t: n - ended[t] for t, n in sent.items() if ended[t] < n}
        STATS["turns_sent"] += sum(sent.values())
        STATS["turns_ended"] += sum(min(n, ended[t]) for t, n in sent.items())
        STATS["turns_lost"] += sum(lost.values())
        assert not lost, f"turns with no TurnEnd or Error: {lost}; replies: {replies}"
    good = _converse(raw, [_query("ok", "What is 6 times 7?", "", "", 0, "UTC").SerializeToString()])
    assert any(m.WhichOneof("payload") == "delta" and "42" in m.delta.text for m in good), good
    assert good[-1].WhichOneof("payload") == "end"
