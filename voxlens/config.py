"""One place for configuration: a TOML file plus environment variables.

Why: every stage reads its settings from here, so the defaults run with no file
at all, one file changes anything, and an operator can override a single value
with an environment variable (``VOXLENS_<SECTION>__<KEY>``, e.g.
``VOXLENS_GATEWAY__PORT=50052``) without editing files.

Lookup order for the file: ``--config`` argument, ``$VOXLENS_CONFIG``, then
``~/.config/voxlens/voxlens.toml`` if it exists.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "VOXLENS_"
DEFAULT_PATH = Path("~/.config/voxlens/voxlens.toml").expanduser()


class ConfigError(ValueError):
    """A configuration file or variable is malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class ModelsConfig:
    cache_dir: str = ""           # empty: $VOXLENS_CACHE or ~/.cache/voxlens
    stt: str = "whisper-tiny.en"  # catalog name, or a path to a CTranslate2 model folder
    tts: str = "piper-joe-medium" # catalog name, or a path to a Piper .onnx voice
    vad: str = "silero-vad"
    small_llm: str = "qwen2.5-coder-0.5b-q4km"  # catalog name, or a path to a GGUF


@dataclass(frozen=True)
class AudioConfig:
    sample_rate_hz: int = 16000
    # The microphone's block: how often audio arrives. The wake word works on 80 ms frames whatever it is;
    # a shorter block lets the endpointer see a pause sooner (up to a block earlier), for more wake-ups a second.
    block_ms: int = 32

    @property
    def block_samples(self) -> int:
        return self.block_ms * self.sample_rate_hz // 1000
    input_device: str = ""   # sounddevice name or index; empty: system default
    output_device: str = ""


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    start_ms: int = 160          # voiced run that starts an utterance
    silence_ms: int = 400        # silence that ends an utterance mid-sentence
    short_silence_ms: int = 180  # silence that ends one the grammar already found complete
    preroll_ms: int = 320
    max_utterance_s: float = 15.0
    smart_turn: bool = True          # ask Smart Turn v3 after a short pause (device/smart_turn.py)
    smart_turn_model: str = "smart-turn-v3"   # a catalog name or a path
    smart_turn_threshold: float = 0.7         # P(turn complete) at or above which the turn ends at the pause
    smart_turn_silence_ms: int = 120          # the pause after which Smart Turn is asked
    smart_turn_max_silence_ms: int = 1000     # how long a turn it judged unfinished waits for more speech
    text_veto: bool = True           # a "complete" waits for the words at the pause; ending open vetoes it (device/turn_text.py)
    settled_command_end: bool = True  # a whole device command ends the turn once the words at the pause are decoded
    command_silence_ms: int = 176     # ... and the pause has lasted this long (shorter gaps are mid-command)
    closed_command_silence_ms: int = 64   # ... for a command nothing in the grammar can follow ("volume up")


@dataclass(frozen=True)
class SttConfig:
    compute_type: str = "int8"
    beam_size: int = 1        # the passes while the user speaks (partials for the grammar's early end)
    final_beam_size: int = 1  # the pass that can become the final (after a pause, or after the endpoint)
    language: str = ""        # a fixed language ("de"); empty: identified per utterance among `languages`
    languages: tuple[str, ...] = ("en",)  # languages heard; more than English: [models] stt whisper-tiny.en -> whisper-base
    partial_interval_ms: int = 480
    cpu_threads: int = 0      # 0: let CTranslate2 choose
    encoder_window_s: float = 10.0  # encode audio + 2 s, at least this long (Whisper pads to 30 s); 0: stock 30 s
    multilingual_window_s: float = 12.0  # the floor for a multilingual Whisper: base stops early on short clips at 10 s
    initial_prompt: str = ""  # vocabulary bias; off by default (see `voxlens bench speech`)


@dataclass(frozen=True)
class TtsConfig:
    length_scale: float = 1.0
    first_clause_min_words: int = 3   # the first spoken piece: 3..10 words cut at a phrase boundary (device/tts.py)
    first_clause_max_words: int = 10
    threads: int = 0          # onnxruntime threads for Piper; 0: every core (they sleep, never spin)
    voices: tuple[str, ...] = ()  # "de=/path/de_DE-thorsten-medium.onnx": a Piper voice per language; others: espeak-ng
    espeak_words_per_minute: int = 165  # the espeak-ng fallback voice's speed
    noise_scale: float = -1.0    # Piper's sampling noise; < 0: the voice's own (0.667 for joe). 0: the same audio
    noise_w_scale: float = -1.0  # every time for the same text (the tests use 0 for both: no random mishearings)


@dataclass(frozen=True)
class WakewordConfig:
    heads: tuple[str, ...] = ("hey-vox-lens",)  # catalog names or paths to openWakeWord-format heads
    threshold: float = 0.1   # low: the STT verifier, not this, keeps false wakes out (DET curve, models/wakeword/README.md)
    patience_frames: int = 1
    refractory_s: float = 2.0
    verifier: str = "stt"    # confirm each fire before waking: stt (Whisper + phoneme match), head (<head>.verifier.onnx), none
    verifier_min_similarity: float = 0.75  # stt: share of the phrase's phonemes the transcript must hold
    verifier_window_s: float = 3.0         # stt: seconds of audio before the fire it transcribes (2 s cut slow speakers)
    second_look_s: float = 0.4             # a rejected fire is verified again once the first stage's score falls, within this
    verifier_threshold: float = 0.5        # head: the second head's score to accept


@dataclass(frozen=True)
class DeviceConfig:
    gateway: str = "127.0.0.1:50051"
    token: str = ""
    tls_ca: str = ""
    conversation_ttl_s: float = 300.0
    follow_up_s: float = 5.0
    listen_timeout_s: float = 6.0  # after the wake word, back to idle if nobody speaks
    turn_timeout_s: float = 20.0
    latitude: float = 0.0  # the location is unset until place_name or coordinates are configured
    longitude: float = 0.0
    place_name: str = ""   # e.g. "Lisbon, Portugal": said back in answers ("in Lisbon")
    time_zone: str = ""    # IANA name; empty: the system's (TZ, /etc/localtime), UTC when it has none
    locale: str = "en-US"
    language: str = "en"
    media_dir: str = ""   # photos/videos placeholders; empty: ~/.local/share/voxlens/media
    barge_in_on_speech: bool = True  # user speech over an answer stops it (needs echo cancellation on open speakers)
    preemptive: bool = True  # a question leaves on the settled partial, before the endpoint; spoken only if the final matches
    command_recheck: bool = True  # a short near-miss command ("Volume app") is heard again with the command prompt

    @property
    def zone(self) -> str:
        """The time zone the device answers in: the configured one, else the system's."""
        return self.time_zone or system_time_zone()

    @property
    def has_location(self) -> bool:
        """Only a configured location is sent: a guessed city would answer the weather for the wrong place."""
        return bool(self.place_name) or (self.latitude, self.longitude) != (0.0, 0.0)


@dataclass(frozen=True)
class BackendConfig:
    """One model tier. kind: "llama_cpp" (GGUF in process) or "openai" (any OpenAI-compatible server)."""
    kind: str = "llama_cpp"
    model: str = ""        # GGUF path/catalog name (llama_cpp) or served model name (openai)
    base_url: str = ""     # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = ""  # name of the env var holding the API key; never the key itself
    context_tokens: int = 2048
    max_tokens: int = 256
    temperature: float = 0.3
    timeout_s: float = 30.0
    connect_timeout_s: float = 2.0
    local: bool = False    # openai: the server runs on your own machine or LAN, so it may see private turns (llama_cpp: always)
    languages: tuple[str, ...] = ()  # languages it answers in ("en", "fr"); empty: any. A turn in another goes elsewhere
    threads: int = 0       # llama_cpp: 0 = half the cores (OpenMP spins; two busy pools on 2 cores ran 10x slower)
    slots: int = 0         # turns generating at once; 0 = what the kind serves (llama_cpp in process: 1, openai: 64)
    max_waiting: int = 16  # turns that may wait for a slot; beyond: "I'm busy" (RESOURCE_EXHAUSTED) or the other tier
    max_wait_s: float = 4.0  # longest a turn waits for a slot before it is refused the same way


@dataclass(frozen=True)
class RouterConfig:
    private_keywords: tuple[str, ...] = ("password", "bank", "medical", "diagnosis", "my address")
    complex_min_words: int = 18
    complex_cues: tuple[str, ...] = ("explain", "why", "compare", "step by step", "plan", "summarize", "write")
    breaker_failures: int = 3
    breaker_reset_s: float = 15.0
    latency_budget_ms: int = 1500


@dataclass(frozen=True)
class ToolsConfig:
    geocoding_url: str = "https://geocoding-api.open-meteo.com/v1/search"
    forecast_url: str = "https://api.open-meteo.com/v1/forecast"
    searxng_url: str = ""  # empty: web search off
    timeout_s: float = 3.0


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 0            # 0: metrics off
    token_sha256: tuple[str, ...] = ()  # hex sha256 of accepted device tokens; empty: auth off
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""          # set: mutual TLS
    max_message_bytes: int = 64 * 1024
    max_text_chars: int = 2000
    max_turns_per_device: int = 2
    rate_per_minute: int = 60        # per device, token bucket; 0: no rate limit
    rate_burst: int = 10             # turns a device may send back to back before the rate applies
    turn_deadline_s: float = 30.0
    max_outbound_messages: int = 256  # per stream, waiting to be sent; a device that stops reading is dropped
    send_stall_s: float = 10.0       # how long a full outbound queue may wait for the device before the stream ends
    history_turns: int = 8
    history_ttl_s: float = 600.0
    small: BackendConfig = field(default_factory=BackendConfig)
    big: BackendConfig = field(default_factory=lambda: BackendConfig(kind="openai", model="llama-3.1-405b-instruct"))


@dataclass(frozen=True)
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    stt: SttConfig = field(default_factory=SttConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    wakeword: WakewordConfig = field(default_factory=WakewordConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)


def system_time_zone() -> str:
    """The system's IANA time zone (tzlocal reads TZ, /etc/localtime, /etc/timezone); UTC when there is none."""
    import tzlocal

    try:
        tzlocal.reload_localzone()  # read now, not tzlocal's first answer: a headset travels across zones
        return tzlocal.get_localzone_name() or "UTC"
    except Exception:  # noqa: BLE001 - an unreadable or odd /etc/localtime: the device still runs, on UTC
        return "UTC"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Turn a TOML or environment value into the field's type, or say exactly what is wrong."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build(hint, value, where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, where) for v in value)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known keys: {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """VOXLENS_GATEWAY__PORT=1 -> {"gateway": {"port": "1"}}; VOXLENS_GATEWAY__SMALL__MODEL nests deeper."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        parts = key[len(ENV_PREFIX):].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_path(explicit: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser()
    if environ.get("VOXLENS_CONFIG"):
        return Path(environ["VOXLENS_CONFIG"]).expanduser()
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (if any), then environment variables."""
    environ = dict(os.environ) if environ is None else environ
    data: dict[str, Any] = {}
    resolved = config_path(path, environ)
    if resolved is not None:
        if not resolved.is_file():
            raise ConfigError(f"config file {resolved} does not exist; create it or drop --config / VOXLENS_CONFIG")
        try:
            data = tomllib.loads(resolved.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {resolved} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(environ))
    where = str(resolved) if resolved else "config"
    try:
        cfg = _build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not 10 <= cfg.audio.block_ms <= 80:
        raise ConfigError(f"{where}: [audio] block_ms = {cfg.audio.block_ms} is out of range; use 10-80 "
                          "(80: the wake word's frame; 32: Silero's window, a pause seen sooner)")
    from models.catalog import configure_cache_dir

    configure_cache_dir(cfg.models.cache_dir)  # every loader resolves catalog names in the configured folder
    return cfg


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-exported so callers do not mutate configs in place."""
    return dataclasses.replace(cfg, **changes)
