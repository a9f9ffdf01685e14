"""A voice per language: the answer is spoken in the voice of its language, chosen from the turn's language.

Why a separate layer: VoiceOutput speaks through one synthesiser; this one holds a TextToSpeech
per language (Piper where a voice is configured, espeak-ng where none is on this machine) and
switches on `language`, set by the engine for each turn. Every voice's audio leaves at the
default voice's rate, so the sink and the cached lines need not know which voice spoke.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from device.tts import ESPEAK_PREFIX, SpeechChunk, TextToSpeech
from voxlens.cancel import CancelToken
from voxlens.config import Config

log = logging.getLogger(__name__)


def primary(language: str) -> str:
    """ "de-AT" -> "de"."""
    return language.replace("_", "-").split("-")[0].strip().lower()


def configured_voices(entries: tuple[str, ...]) -> dict[str, str]:
    """[tts] voices = ["de=/path/de.onnx", ...] -> {"de": "/path/de.onnx"}; a malformed entry names the fix."""
    from voxlens.config import ConfigError

    out: dict[str, str] = {}
    for entry in entries:
        lang, sep, voice = entry.partition("=")
        if not sep or not primary(lang) or not voice.strip():
            raise ConfigError(f"[tts] voices entry {entry!r} is not LANGUAGE=VOICE; fix: e.g. "
                              "voices = [\"de=/voices/de_DE-thorsten-medium.onnx\"]")
        out[primary(lang)] = voice.strip()
    return out


@dataclass
class VoicePlan:
    """Which voice speaks each language, and what is missing (start-up messages naming the fix)."""
    voices: dict[str, str] = field(default_factory=dict)    # language -> catalog name, .onnx path or espeak:xx
    messages: list[str] = field(default_factory=list)


def plan(cfg: Config, languages: list[str] | None = None) -> VoicePlan:
    """Voices for the enabled languages ([stt] languages, the device's language): [models] tts for English
    (unless [tts] voices names another), a configured Piper voice, else espeak-ng."""
    from device.espeak_voice import has_voice

    wanted = languages if languages is not None else list(dict.fromkeys(
        [primary(cfg.device.language), *(primary(x) for x in cfg.stt.languages),
         *([primary(cfg.stt.language)] if cfg.stt.language else [])]))
    by_path = configured_voices(cfg.tts.voices)
    out = VoicePlan()
    for lang in wanted:
        if lang in by_path:
            out.voices[lang] = by_path[lang]
        elif lang == "en":
            out.voices[lang] = cfg.models.tts
        elif has_voice(lang):
            out.voices[lang] = ESPEAK_PREFIX + lang
            out.messages.append(f"no Piper voice for {lang!r}: answers in it are spoken by espeak-ng (robotic); "
                                f"for a natural voice set [tts] voices = [\"{lang}=/path/to/{lang}-voice.onnx\"]")
        else:
            out.messages.append(f"no voice for {lang!r} (no Piper voice configured, none in espeak-ng): answers in "
                                f"it are spoken by the default voice; fix: set [tts] voices = "
                                f"[\"{lang}=/path/to/{lang}-voice.onnx\"] or remove {lang!r} from [stt] languages")
    return out


class Voices:
    """TextToSpeech per language behind the one interface VoiceOutput uses; `language` picks the voice."""

    def __init__(self, default: TextToSpeech, by_language: dict[str, TextToSpeech] | None = None) -> None:
        self.default = default
        self.by_language = {primary(default.language): default, **(by_language or {})}
        self.sample_rate_hz = default.sample_rate_hz
        self._language = primary(default.language)
        self.messages: list[str] = []
        self.spoken: deque[tuple[str, str]] = deque(maxlen=64)   # (language, piece) recently said, for tests and logs

    @classmethod
    def load(cls, cfg: Config, default: TextToSpeech | None = None, languages: list[str] | None = None) -> Voices:
        """Every planned voice, loaded once; what cannot load is a logged start-up message, not a dead device."""
        from models.catalog import ModelError

        voice_plan = plan(cfg, languages)
        default = default or TextToSpeech(voice_plan.voices.get("en", cfg.models.tts), cfg.tts)
        loaded: dict[str, TextToSpeech] = {}
        for lang, name in voice_plan.voices.items():
            if lang == primary(default.language) and name == default.voice_name:
                continue
            try:
                loaded[lang] = TextToSpeech(name, cfg.tts, language=lang)
            except ModelError as exc:
                voice_plan.messages.append(f"the voice for {lang!r} cannot load ({exc}); answers in it are spoken "
                                           "by the default voice")
        for message in voice_plan.messages:
            log.warning("%s", message)
        voices = cls(default, loaded)
        voices.messages.extend(voice_plan.messages)
        return voices

    @property
    def language(self) -> str:
        return self._language

    @language.setter
    def language(self, language: str) -> None:
        lang = primary(language) or primary(self.default.language)
        if lang not in self.by_language:
            log.info("no voice for %r; speaking with the %r voice", lang, self.default.language)
        self._language = lang

    @property
    def current(self) -> TextToSpeech:
        return self.by_language.get(self._language, self.default)

    @property
    def syntheses(self) -> int:
        return sum(v.syntheses for v in self.by_language.values())

    @property
    def last_timings(self):
        return self.current.last_timings

    def _at_rate(self, audio: np.ndarray, rate_hz: int) -> np.ndarray:
        if rate_hz == self.sample_rate_hz:
            return audio
        from device.audio import resample

        return resample(audio, rate_hz, self.sample_rate_hz)

    def synthesize(self, text: str) -> np.ndarray:
        voice = self.current
        self.spoken.append((primary(voice.language), text))
        return self._at_rate(voice.synthesize(text), voice.sample_rate_hz)

    def cancel(self) -> None:
        for voice in self.by_language.values():
            voice.cancel()

    async def stream(self, deltas: AsyncIterable[str], cancel: CancelToken | None = None) -> AsyncIterator[np.ndarray]:
        async for chunk in self.stream_chunks(deltas, cancel):
            yield chunk.audio

    async def stream_chunks(self, deltas: AsyncIterable[str],
                            cancel: CancelToken | None = None) -> AsyncIterator[SpeechChunk]:
        voice = self.current
        async for chunk in voice.stream_chunks(deltas, cancel):
            self.spoken.append((primary(voice.language), chunk.text))
            yield SpeechChunk(chunk.text, self._at_rate(chunk.audio, chunk.rate_hz), self.sample_rate_hz, chunk.timings)
