"""Multilingual end to end, through the whole device: the wake word, a question spoken in German, Spanish or
French, the multilingual Whisper (language identified among en/de/fr/es), the real small model behind the
real gateway on loopback gRPC, and the answer spoken by that language's voice.

The questions are spoken by espeak-ng: a voice no model here was trained on (and the one the device itself
uses for these languages, there being no Piper voice for them on this machine). The answer's language is
checked on its text by py3langid, a text language identifier, restricted to Llama 3.1's eight languages.
`voxlens bench speech --language de,fr,es` measures how often each step gets the language right.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from device.app import DeviceModels, load_verifiers, run_device
from device.audio import FRAME_S, SAMPLE_RATE_HZ, MemorySink
from tests.test_e2e import Until, UserSource, turns_ended
from voxlens.config import (
    Config,
    DeviceConfig,
    GatewayConfig,
    RouterConfig,
    SttConfig,
    ToolsConfig,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = tomllib.loads((ROOT / "bench" / "multilingual_questions.toml").read_text(encoding="utf-8"))
WAKE = "Hey vox lens."
EIGHT = ["en", "de", "fr", "it", "pt", "hi", "es", "th"]
ASKED = {"de": QUESTIONS["de"][3], "es": QUESTIONS["es"][4], "fr": QUESTIONS["fr"][0], "en": QUESTIONS["en"][0]}


@pytest.fixture(scope="session")
def text_language():
    """text -> its language, by py3langid among the eight languages."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(EIGHT)
    return lambda text: identifier.classify(text)[0]


@pytest.fixture(scope="session")
async def gateway(small_backend):
    from gateway.server import start_gateway

    gw = await start_gateway(GatewayConfig(host="127.0.0.1"), ToolsConfig(), RouterConfig(), port=0,
                             backends={"small": small_backend, "big": None})
    yield gw
    await gw.stop(0.5)


@pytest.fixture(scope="session")
def multilingual_models(stt_multilingual, tts, silero, smart_turn):
    """The device's models for a user who speaks en/de/fr/es: whisper-base, Piper for English, espeak-ng for the rest."""
    from device.voices import Voices
    from device.wakeword import WakeWordDetector

    cfg = Config(stt=SttConfig(languages=("en", "de", "fr", "es")))
    voices = Voices.load(cfg, default=tts)
    assert {lang: v.is_espeak for lang, v in voices.by_language.items()} == {
        "en": False, "de": True, "fr": True, "es": True}
    wake = WakeWordDetector(list(cfg.wakeword.heads), cfg.wakeword.threshold, cfg.wakeword.patience_frames,
                            cfg.wakeword.refractory_s)
    return DeviceModels(stt=stt_multilingual, tts=voices, vad=silero, wake=wake,
                        verifiers=load_verifiers(cfg, wake, stt_multilingual), turn=smart_turn)


def _script(parts, user_speak, espeak_16k) -> list:
    out = []
    for p in parts:
        if isinstance(p, Until):
            out.append(p)
        elif isinstance(p, float):
            out.append(np.zeros(int(p * SAMPLE_RATE_HZ), np.int16))
        elif isinstance(p, tuple):                     # (language, text): espeak-ng speaks it
            out.append(espeak_16k(*p).astype(np.int16))
        else:                                          # the wake word, in the user's (hibari) voice
            out.append(user_speak(p).astype(np.int16))
    return out


async def _run(tmp_path: Path, models: DeviceModels, script: list, port: int):
    cfg = Config(device=DeviceConfig(gateway=f"127.0.0.1:{port}", media_dir=str(tmp_path / "media"), follow_up_s=1.0))
    events: list[dict] = []
    sink = MemorySink(realtime=True)
    models.tts.spoken.clear()
    await run_device(cfg, models, UserSource(script, events), sink, emit=events.append, linger_s=60.0)
    return events, sink


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event"] == kind]


def _spoken(models: DeviceModels, language: str) -> str:
    return " ".join(text for lang, text in models.tts.spoken if lang == language)


@pytest.mark.parametrize("language", ["de", "es", "fr"])
async def test_a_spoken_question_is_heard_answered_and_spoken_in_its_language(
        tmp_path, multilingual_models, gateway, user_speak, espeak_16k, text_language, language):
    script = _script([0.5, WAKE, 0.3, (language, ASKED[language]), turns_ended(1), 0.3],
                     user_speak, espeak_16k)
    events, sink = await _run(tmp_path, multilingual_models, script, gateway.port)
    story = [{k: e.get(k) for k in ("event", "text", "language", "language_prob", "answer")} for e in events
             if e["event"] in ("wake", "transcript_final", "turn")]
    assert len(_of(events, "wake")) == 1, story
    (final,) = _of(events, "transcript_final")
    assert final["language"] == language and 0.0 < final["language_prob"] <= 1.0, story     # heard in it
    (turn,) = _of(events, "turn")
    assert (turn["kind"], turn["outcome"], turn["language"]) == ("query", "ok", language), story
    assert text_language(turn["answer"]) == language, f"answered in another language: {turn['answer']!r}"
    spoken = _spoken(multilingual_models, language)                      # said by that language's voice
    assert spoken and text_language(spoken) == language, list(multilingual_models.tts.spoken)
    assert sink.rate_hz == multilingual_models.tts.sample_rate_hz == 22050
    speech = sink.audio[-int(len(spoken.split()) * 0.2 * sink.rate_hz):]   # the answer's tail is not silence
    assert float(np.sqrt(np.mean(speech.astype(np.float64) ** 2))) > 300
    seconds = sink.samples_written / sink.rate_hz
    assert 0.15 * len(spoken.split()) < seconds < 60, seconds            # speech at a plausible rate, not clicks


async def test_the_language_switches_between_two_turns(tmp_path, multilingual_models, gateway, user_speak,
                                                       espeak_16k, text_language):
    script = _script([0.5, WAKE, 0.3, ASKED["en"], turns_ended(1), 1.5,
                      WAKE, 0.3, ("de", ASKED["de"]), turns_ended(2), 0.3], user_speak, espeak_16k)
    events, sink = await _run(tmp_path, multilingual_models, script, gateway.port)
    turns = _of(events, "turn")
    assert [(t["language"], t["kind"], t["outcome"]) for t in turns] == [("en", "query", "ok"), ("de", "query", "ok")], turns
    assert [f["language"] for f in _of(events, "transcript_final")] == ["en", "de"]
    assert [text_language(t["answer"]) for t in turns] == ["en", "de"], [t["answer"] for t in turns]
    said = [lang for lang, _ in multilingual_models.tts.spoken]
    assert "en" in said and "de" in said and said.index("en") < said.index("de")   # Piper, then espeak-ng's German
    assert text_language(_spoken(multilingual_models, "de")) == "de"
    assert sink.samples_written > 2 * FRAME_S * sink.rate_hz


async def test_ask_language_reaches_the_gateway(small_backend, capsys):
    """`voxlens ask --language de` puts de on the Query: a gateway whose only tier declares English refuses it."""
    import json

    from gateway.backends.llama_cpp_backend import LlamaCppBackend
    from gateway.cli import _ask
    from gateway.server import start_gateway
    from voxlens.config import BackendConfig

    english_only = LlamaCppBackend(BackendConfig(model=str(small_backend.path), max_tokens=8, temperature=0.0,
                                                 languages=("en",)), llm=small_backend._llm)
    gw = await start_gateway(GatewayConfig(host="127.0.0.1"), ToolsConfig(), RouterConfig(), port=0,
                             backends={"small": english_only, "big": None})
    try:
        assert await _ask("Wie spät ist es?", f"127.0.0.1:{gw.port}", "", DeviceConfig(), "auto", True, "de") == 1
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        (error,) = [r for r in rows if r["event"] == "Error"]
        assert "'de'" in error["message"] and not [r for r in rows if r["event"] == "TextEvent"], rows
        assert await _ask("Say hi.", f"127.0.0.1:{gw.port}", "", DeviceConfig(), "auto", True, "en") == 0
        events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
        assert "TextEvent" in events and events[-1] == "TurnEndEvent"
    finally:
        await gw.stop(0.5)
