"""Speech to text: faster-whisper (CTranslate2, int8 on CPU), transcribing while the user speaks.

Why not plain `WhisperModel.transcribe`: it pads every utterance to 30 s, so one
tiny.en pass costs ~0.28 s here whatever the length. Whisper's encoder accepts a
shorter window; for device utterances (a few seconds) we encode a window of
`encoder_window_s` (audio + margin, at least 10 s), which costs a third and gives the
same words on the eval set (see `voxlens bench speech`). Below that the decoder
starts to loop, so the window never gets shorter than the floor and the token
budget is tied to the audio length. Longer audio goes through the stock path.

While the user speaks, `StreamingTranscription` re-transcribes the growing buffer
in a background thread, and once more as soon as a silent frame follows speech.
By the time the endpointer's silence window has elapsed, the last partial usually
already covers all the speech, so `finish()` returns it without another pass.
That pass, the one that can become the final, decodes with `final_beam_size`: the head
start transcribing while speaking gives is spent on accuracy there, not on the partials.

Languages: `[stt] languages` (default ["en"]) picks the model. English alone keeps the fast
English-only tiny.en; any other language needs a multilingual Whisper (whisper-base from the
catalog), which identifies the language of each utterance from the same encoder pass, restricted
to the enabled languages: an utterance identified as a language that is not enabled is
transcribed in the enabled one Whisper ranks highest for it (its closest), and logged.
`[stt] language` fixes one language instead.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import math
import re
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from device.audio import SAMPLE_RATE_HZ
from voxlens.config import SttConfig
from voxlens.stage import StreamStage
from voxlens.timing import Timings, monotonic

log = logging.getLogger(__name__)

MAX_AUDIO_S = 120.0
STOCK_WINDOW_S = 30.0
ENGLISH_ONLY_DEFAULT = "whisper-tiny.en"
MULTILINGUAL_DEFAULT = "whisper-base"


def model_for(stt_model: str, cfg: SttConfig) -> str:
    """The Whisper to load: the default English-only model becomes the multilingual one once another
    language is enabled (or fixed); an explicitly configured model is kept as it is."""
    wanted = set(cfg.languages) | ({cfg.language} if cfg.language else set())
    if stt_model == ENGLISH_ONLY_DEFAULT and (wanted - {"en"} or not cfg.languages):   # (): any language
        return MULTILINGUAL_DEFAULT
    return stt_model


def pick_language(ranked: list[tuple[str, float]], enabled: tuple[str, ...]) -> tuple[str, float]:
    """Whisper's ranked (language, probability) list -> the enabled language to transcribe in.

    The top language when it is enabled; otherwise the enabled language Whisper ranks highest for
    this audio, i.e. the closest one it sounds like (logged). No enabled list: the top language."""
    top, top_p = ranked[0]
    if not enabled or top in enabled:
        return top, top_p
    for language, prob in ranked:
        if language in enabled:
            log.info("utterance identified as %r (p=%.2f), which is not enabled; handled in %r, the closest "
                     "enabled language (p=%.2f)", top, top_p, language, prob)
            return language, prob
    return enabled[0], 0.0


@dataclass
class Transcript:
    text: str
    language: str
    timings: Timings = field(default_factory=Timings)
    partial: bool = False
    audio_s: float = 0.0
    language_prob: float = 1.0
    reused_partial: bool = False   # final taken from the last background pass (audio after it was silence)
    detected_language: str = ""    # Whisper's own top language when it is not enabled (handled in `language`)

    def to_dict(self) -> dict:
        extra = {"detected_language": self.detected_language} if self.detected_language else {}
        return {"text": self.text, "language": self.language, "language_prob": round(self.language_prob, 3), **extra,
                "audio_s": round(self.audio_s, 3), "partial": self.partial, "reused_partial": self.reused_partial,
                "timings": self.timings.as_ms()}


def _as_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32, copy=False)


class SpeechToText:
    """A loaded Whisper model. `transcribe()` is thread-safe (one pass at a time) and blocking."""

    def __init__(self, model: str = "whisper-tiny.en", cfg: SttConfig | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from models.catalog import ModelError, resolve

        self.cfg = cfg or SttConfig()
        path = Path(model) if ("/" in model or Path(model).is_dir()) else Path(resolve(model))
        if not (path / "model.bin").is_file():
            raise ModelError(f"Whisper model folder {path} has no model.bin; fix: voxlens models verify {model}")
        try:
            self.model = WhisperModel(str(path), device="cpu", compute_type=self.cfg.compute_type,
                                      cpu_threads=self.cfg.cpu_threads)
        except Exception as exc:
            raise ModelError(f"Whisper model {path} cannot be loaded ({exc}); fix: voxlens models verify {model}") from None
        self.name = model
        self.multilingual: bool = self.model.model.is_multilingual
        self._tokenizer_cls = Tokenizer
        self._lock = threading.Lock()
        self._counts = {"fallbacks": 0}   # shared with with_config() clones
        self._detected = ""               # set under the lock by each pass

    @property
    def fallbacks(self) -> int:
        """Short-window decodes that looped and were redone with the 30 s window."""
        return self._counts["fallbacks"]

    def with_config(self, cfg: SttConfig) -> "SpeechToText":
        """The same loaded model with other settings (benchmarks compare options without loading twice)."""
        clone = copy.copy(self)
        clone.cfg = cfg
        return clone

    def _tokenizer(self, language: str):
        return self._tokenizer_cls(self.model.hf_tokenizer, self.multilingual, task="transcribe",
                                   language=language if self.multilingual else "en")

    def window_s(self, audio_s: float) -> float:
        """Encoder window for this much audio: audio + 2 s, at least cfg.encoder_window_s, at most 30 s.

        A multilingual Whisper's floor is at least cfg.multilingual_window_s: whisper-base at 10 s ended two
        short eval clips early ("men" for "mend the coat before you go out"; English WER 12.0 % vs 8.4 % at
        12 s, 15 % more time, identification unchanged: `voxlens bench speech --language en,de,fr,es`)."""
        if self.cfg.encoder_window_s <= 0:
            return STOCK_WINDOW_S
        floor = max(self.cfg.encoder_window_s, self.cfg.multilingual_window_s if self.multilingual else 0.0)
        return min(STOCK_WINDOW_S, max(floor, math.ceil(audio_s + 2.0)))

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None, refit_loops: bool = True) -> Transcript:
        """16 kHz mono audio (int16 or float) -> text. `prompt` (or cfg.initial_prompt) biases the vocabulary.

        refit_loops=False keeps a short-window decode that looped ("unmute, unmute, unmute") instead of decoding
        again with the 30 s window: for a caller that only wants the first clause (device/command_recheck.py)."""
        audio = _as_float(audio)
        audio_s = len(audio) / SAMPLE_RATE_HZ
        if audio_s > MAX_AUDIO_S:
            raise ValueError(f"audio of {audio_s:.0f} s is too long to transcribe at once (limit {MAX_AUDIO_S:.0f} s); "
                             "split it, e.g. with `voxlens listen`")
        prompt = prompt if prompt is not None else (self.cfg.initial_prompt or None)
        timings = Timings()
        self._detected = ""
        with self._lock, timings.measure("stt.transcribe"):
            if audio_s + 2.0 > STOCK_WINDOW_S or self.cfg.encoder_window_s <= 0:
                text, language, prob = self._transcribe_stock(audio, prompt)
            else:
                text, language, prob = self._transcribe_window(audio, audio_s, prompt, refit_loops)
            detected = self._detected
        return Transcript(text.strip(), language, timings, audio_s=audio_s, language_prob=prob,
                          detected_language=detected)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages this model hears with this config: English only for an .en model; a code Whisper
        does not know is left out (missing_languages names it), so the others keep working."""
        if not self.multilingual:
            return ("en",)
        known = set(self.model.supported_languages)
        if self.cfg.language in known:
            return (self.cfg.language,)
        return tuple(lang for lang in self.cfg.languages if lang in known)

    def missing_languages(self) -> list[str]:
        """Enabled languages this model cannot hear: all but English for an English-only model
        ([stt] languages = ["de"] with tiny.en), codes Whisper does not know ("ge", "german") for any."""
        wanted = list(self.cfg.languages) + ([self.cfg.language] if self.cfg.language else [])
        known = set(self.model.supported_languages) if self.multilingual else {"en"}
        return sorted(set(wanted) - known)

    def _language_of(self, encoder_output) -> tuple[str, float]:
        """The utterance's language and its probability: fixed, or identified among the enabled languages."""
        if not self.multilingual:
            return "en", 1.0
        if self.cfg.language and self.languages == (self.cfg.language,):
            return self.cfg.language, 1.0
        ranked = [(token[2:-2], prob) for token, prob in self.model.model.detect_language(encoder_output)[0]]
        language, prob = pick_language(ranked, self.languages)
        self._detected = ranked[0][0] if ranked[0][0] != language else ""
        return language, prob

    def _transcribe_stock(self, audio: np.ndarray, prompt: str | None) -> tuple[str, str, float]:
        language, prob = "en", 1.0
        if self.multilingual:   # identify on the first 30 s window, restricted to the enabled languages
            features = self.model.feature_extractor(audio[: int(STOCK_WINDOW_S * SAMPLE_RATE_HZ)])
            frames = self.model.feature_extractor.nb_max_frames
            features = np.pad(features[:, :frames], ((0, 0), (0, max(0, frames - features.shape[1]))))
            language, prob = self._language_of(self.model.encode(np.ascontiguousarray(features)))
        segments, _info = self.model.transcribe(
            audio, language=language, beam_size=self.cfg.beam_size, without_timestamps=True, vad_filter=False,
            condition_on_previous_text=False, initial_prompt=prompt)
        text = "".join(s.text for s in segments)
        return text, language, prob

    def _transcribe_window(self, audio: np.ndarray, audio_s: float, prompt: str | None,
                           refit_loops: bool = True) -> tuple[str, str, float]:
        fe = self.model.feature_extractor
        frames = int(self.window_s(audio_s) * SAMPLE_RATE_HZ) // fe.hop_length
        features = fe(audio)[:, :frames]
        if features.shape[1] < frames:
            # Zero-padded features, exactly as faster-whisper's own pad_or_trim does up to 30 s.
            features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        encoder_output = self.model.encode(np.ascontiguousarray(features))
        language, prob = self._language_of(encoder_output)
        tokenizer = self._tokenizer(language)
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        tokens = self.model.get_prompt(tokenizer, previous, without_timestamps=True)
        # A token budget tied to the audio stops the rare loop on short windows (~3 tokens/s of speech).
        max_new = int(12 + 8 * audio_s)
        result = self.model.model.generate(
            encoder_output, [tokens], beam_size=self.cfg.beam_size, max_length=min(448, len(tokens) + max_new),
            suppress_blank=True, suppress_tokens=[-1], return_scores=False, return_no_speech_prob=True,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        if result.no_speech_prob > 0.8 and not ids:
            return "", language, prob
        text = tokenizer.decode(ids)
        if refit_loops and (len(ids) >= max_new - 1 or looks_looped(text)):
            # The short window's failure mode is a decoder loop ("Repeat that. Repeat that. ..."):
            # decode this one again with Whisper's full 30 s window, like Whisper's own fallback.
            log.debug("short-window decode looped (%r); falling back to the 30 s window", text)
            self._counts["fallbacks"] += 1
            return self._transcribe_stock(audio, prompt)
        return text, language, prob


_LOOP = re.compile(r"\b(\w+(?:\W+\w+){3,11})\W+\1\b|\b(\w+(?:\W+\w+){1,2})(?:\W+\2\b){2,}|\b(\w+)(?:\W+\3\b){4,}"
                   r"|\b((\w+)(?:\W+\w+){1,2})\W+\4\W+\5\b", re.IGNORECASE)


def looks_looped(text: str) -> bool:
    """A phrase of 4+ words said twice running, of 2-3 words three times (or twice and starting again:
    "Brightness up. Brightness up. Brightness"), or one word five times: a decoder loop, not speech."""
    return bool(_LOOP.search(text))


class StreamingTranscription:
    """Transcribe while the user speaks: push frames, read partials, `await finish()` for the final.

    `push(frame, is_speech)`: is_speech is the VAD's verdict for that frame; a silent frame after
    speech triggers a pass at once, so the partial covers all the speech before the endpointer
    has even decided the utterance is over.
    """

    def __init__(self, stt: SpeechToText, *, interval_ms: int | None = None, prompt: str | None = None,
                 background: bool = True, on_pass: Callable[[], None] | None = None) -> None:
        self.stt = stt
        self.on_pass = on_pass        # called from the worker thread after each pass (the caller need not poll)
        # the pass after a pause (and after the endpoint) may be the final: decoded with the final beam
        self.final_stt = (stt if stt.cfg.final_beam_size == stt.cfg.beam_size
                          else stt.with_config(replace(stt.cfg, beam_size=stt.cfg.final_beam_size)))
        self.interval_samples = int((interval_ms or stt.cfg.partial_interval_ms) * SAMPLE_RATE_HZ / 1000)
        self.prompt = prompt
        self.background = background
        self.passes = 0
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._voiced_end = 0          # samples up to the last frame pushed as speech
        self._pause = False           # silence just followed speech: transcribe now
        self._started_at = 0          # samples covered by the pass in flight / last started
        self._latest: Transcript | None = None
        self._latest_samples = 0
        self._latest_final = False    # the latest partial was decoded as a final would be
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def push(self, frame: np.ndarray, is_speech: bool = True) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("push() after finish(): start a new StreamingTranscription per utterance")
            was_speech = self._voiced_end == self._samples and self._samples > 0
            self._chunks.append(np.asarray(frame, dtype=np.int16))
            self._samples += len(frame)
            if is_speech:
                self._voiced_end = self._samples
            elif was_speech:
                self._pause = True
            self._cond.notify()
        if self.background and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stt-partials", daemon=True)
            self._thread.start()

    def partial(self) -> Transcript | None:
        return self._latest

    def settled(self) -> Transcript | None:
        """The latest partial when it was decoded as a final at a pause: it covers every voiced frame so far
        and a silent one after them. What `finish()` would return if the endpoint fired now (the device's
        preemptive query, a whole command's end, the words that may veto Smart Turn).

        Why the silent frame: a pass that happened to start on the last voiced frame hears the voice cut off
        mid-word, and Whisper closes such audio as a sentence ("Eight of spades, four of course." where the
        pass at the pause heard "four of..."), which would end the turn on words nobody said."""
        with self._cond:
            latest = self._latest
            if latest is not None and self._latest_final and self._latest_samples > self._voiced_end:
                return latest
        return None

    @property
    def audio(self) -> np.ndarray:
        """Every sample pushed so far (pre-roll included): the utterance, for an asker that takes speech."""
        return self._audio().copy()

    def _audio(self) -> np.ndarray:
        with self._cond:
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (   # no pass over silence alone: it would hear nothing new
                    (self._samples - self._started_at >= self.interval_samples and self._voiced_end > self._started_at)
                    or (self._pause and self._samples > self._started_at)
                ):
                    self._cond.wait()
                if self._closed:
                    return
                final = self._pause or self.final_stt is self.stt
                self._pause = False
                self._started_at = self._samples
            audio = self._audio()[: self._started_at]
            try:
                t = (self.final_stt if final else self.stt).transcribe(audio, prompt=self.prompt)
            except BaseException as exc:  # surfaced by finish()
                self._error = exc
                return
            t.partial = True
            self.passes += 1
            with self._cond:
                self._latest, self._latest_samples, self._latest_final = t, len(audio), final
            if self.on_pass is not None:
                self.on_pass()

    async def finish(self) -> Transcript:
        """The final transcript: the last partial if it already covers all the speech, else one more pass."""
        start = monotonic()
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error
        latest = self._latest
        if latest is not None and self._latest_final and self._latest_samples >= self._voiced_end:
            final = Transcript(latest.text, latest.language, Timings(), False, latest.audio_s,
                               latest.language_prob, reused_partial=True, detected_language=latest.detected_language)
            final.timings.records.extend(latest.timings.records)
        else:
            final = await asyncio.to_thread(self.final_stt.transcribe, self._audio(), prompt=self.prompt)
            self.passes += 1
        final.timings.add("stt.final", start)
        return final

    async def aclose(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def __aenter__(self) -> "StreamingTranscription":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def transcription_stage(stt: SpeechToText, *, prompt: str | None = None) -> StreamStage[tuple[np.ndarray, bool], Transcript]:
    """One utterance's streaming transcription in the one stage shape (voxlens/stage.py): push
    `(frame, is_speech)`, `async for` transcripts: each new partial (`partial=True`) as it is decoded, then
    the final once the input has ended. `aclose` stops the decoding thread."""
    return StreamStage(lambda frames: _transcripts(stt, frames, prompt))


async def _transcripts(stt: SpeechToText, frames: AsyncIterable[tuple[np.ndarray, bool]],
                       prompt: str | None) -> AsyncIterator[Transcript]:
    stream = StreamingTranscription(stt, prompt=prompt)
    last: Transcript | None = None
    try:
        async for frame, is_speech in frames:
            stream.push(frame, is_speech)
            partial = stream.partial()
            if partial is not None and partial is not last:
                last = partial
                yield partial
        yield await stream.finish()
    finally:
        await stream.aclose()
