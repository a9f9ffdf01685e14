"""Shared fixtures. Models load once per session; tests that need them ask for these fixtures."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FUZZ_SEED = int(os.environ.setdefault("VOXLENS_FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
# Piper samples noise on every synthesis, so the same line sounds a little different each time and Whisper,
# reading back what was spoken, misheard one line in a few hundred ("hymers" for "timers"). The suite speaks
# without that noise: the same text gives the same audio, so a test either always hears it or never does.
# (Subprocesses read it through the config's environment overrides; the product keeps the voice's own noise.)
PIPER_NOISE = {"VOXLENS_TTS__NOISE_SCALE": "0", "VOXLENS_TTS__NOISE_W_SCALE": "0"}
for _key, _value in PIPER_NOISE.items():
    os.environ.setdefault(_key, _value)


def pytest_report_header(config) -> str:
    profile = os.environ.get("VOXLENS_FUZZ", "ci")
    return f"fuzz: profile {profile}, seed {FUZZ_SEED} (rerun with VOXLENS_FUZZ_SEED={FUZZ_SEED})"


def pytest_terminal_summary(terminalreporter) -> None:
    """The gateway fuzz target's counts (issue 12 asks for them printed): cases, turns lost, hangs."""
    import sys

    fuzz = sys.modules.get("tests.test_fuzz")
    stats = getattr(fuzz, "STATS", None)
    if stats and stats["cases"]:
        terminalreporter.write_line("gateway fuzz: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items()))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_eval() -> Path:
    """Real recorded speech (read-only, beside the checkout). Tests that need it fail loudly if absent."""
    path = SHARED / "eval"
    assert path.is_dir(), f"{path} is missing: the eval recordings live in ../shared/eval beside the checkout"
    return path


# ---------------------------------------------------------------- speech models (one load per session)

@pytest.fixture(scope="session")
def tts():
    """The default Piper voice (22,050 Hz)."""
    from device.tts import TextToSpeech
    from voxlens.config import TtsConfig

    return TextToSpeech(cfg=TtsConfig(noise_scale=0.0, noise_w_scale=0.0))


@pytest.fixture(scope="session")
def stt():
    """Whisper tiny.en, int8 on CPU."""
    from device.stt import SpeechToText

    return SpeechToText()


@pytest.fixture(scope="session")
def stt_multilingual():
    """Whisper base (multilingual, from the catalog), identifying en/de/fr/es per utterance."""
    from device.stt import SpeechToText
    from voxlens.config import SttConfig

    return SpeechToText("whisper-base", SttConfig(languages=("en", "de", "fr", "es")))


@pytest.fixture(scope="session")
def espeak_16k():
    """(language, text) -> 16 kHz int16 espeak-ng speech: a voice no model here was trained on."""
    from device.audio import SAMPLE_RATE_HZ, resample
    from device.espeak_voice import EspeakVoice

    def speak(language: str, text: str):
        voice = EspeakVoice(language)
        return resample(voice.synthesize(text), voice.sample_rate_hz, SAMPLE_RATE_HZ)

    return speak


@pytest.fixture(scope="session")
def silero():
    """The Silero VAD model; call .reset() before use (it carries state)."""
    from device.vad import SileroVad

    return SileroVad()


@pytest.fixture(scope="session")
def smart_turn():
    """Smart Turn v3 (the default threshold); stateless, shared by every test."""
    from device.smart_turn import SmartTurn
    from voxlens.config import VadConfig

    return SmartTurn(threshold=VadConfig().smart_turn_threshold)


@pytest.fixture(scope="session")
def speak_16k(tts):
    """text -> 16 kHz int16 speech, cached per session, for building test WAVs from Piper output."""
    from device.audio import SAMPLE_RATE_HZ, resample

    cache: dict[str, "object"] = {}

    def speak(text: str):
        if text not in cache:
            cache[text] = resample(tts.synthesize(text), tts.sample_rate_hz, SAMPLE_RATE_HZ)
        return cache[text]

    return speak
@pytest.fixture(scope="session")
def device_models(stt, tts, silero, smart_turn):
    """The whole device's models as run_device takes them: the shipped wake-word heads, each with its verifier."""
    from device.app import DeviceModels, load_verifiers
    from device.wakeword import WakeWordDetector
    from voxlens.config import load

    cfg = load()
    wake = WakeWordDetector(list(cfg.wakeword.heads), cfg.wakeword.threshold, cfg.wakeword.patience_frames,
                            cfg.wakeword.refractory_s)
    verifiers = load_verifiers(cfg, wake, stt)
    assert set(verifiers) == set(wake.names)   # the shipped defaults: every head confirmed by its verifier
    return DeviceModels(stt=stt, tts=tts, vad=silero, wake=wake, verifiers=verifiers, turn=smart_turn)


@pytest.fixture(scope="session")
def user_speak():
    """The user's voice (hibari), not the assistant's (Piper): text -> 16 kHz int16, cached per session."""
    from device.demo import user_voice

    cache: dict[str, "object"] = {}
    speak = user_voice()

    def say(text: str):
        if text not in cache:
            cache[text] = speak(text)
        return cache[text]

    return say


# ---------------------------------------------------------------- gateway (issue 4)
@pytest.fixture(scope="session")
def small_gguf() -> Path:
    from models.catalog import resolve

    return Path(resolve("qwen2.5-coder-0.5b-q4km"))


@pytest.fixture(scope="session")
async def small_backend(small_gguf):
    """The in-process small tier, loaded once per session; answers kept short so the suite stays fast."""
    from gateway.backends.llama_cpp_backend import LlamaCppBackend
    from voxlens.config import BackendConfig

    backend = LlamaCppBackend(BackendConfig(model=str(small_gguf), max_tokens=24, temperature=0.0, context_tokens=1024))
    await backend.load()
    yield backend
    await backend.close()


@pytest.fixture(scope="session")
def open_meteo():
    """A local HTTP server speaking Open-Meteo's geocoding and forecast JSON."""
    from tests.gateway_support import start_open_meteo

    stand_in = start_open_meteo()
    yield stand_in
    stand_in.server.shutdown()


@pytest.fixture(scope="session")
def big_server(small_gguf):
    """A real `python -m llama_cpp.server` on loopback: the big tier, reached over the OpenAI API."""
    from tests.gateway_support import LlamaServer

    server = LlamaServer(small_gguf)
    server.start()
    yield server
    server.close()
