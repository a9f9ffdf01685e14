"""Speech out: Piper, a short first piece and then one sentence at a time as the answer's text streams in.

Why: Piper's first audio costs the synthesis time of the first piece it is given
(15-28 ms per word on a shared 2-core box: `python -m bench.first_piece`), and the
model writes the answer word by word, so the answer starts on its first few words,
cut at a phrase boundary, while the rest is still being written. Sentence boundaries come from `sentencex` (a maintained
segmenter that keeps "Dr.", "3.5" and "U.S." intact), not from a regex. Synthesis
blocks, so it runs in a worker thread while the previous piece plays.

Languages: each TextToSpeech speaks one language, with a Piper voice or, where no neural voice
is configured, espeak-ng (device/espeak_voice.py); device/voices.py picks one per answer's
language. Where a first piece may end is data per language (device/speech_breaks.toml). Thai
writes no sentence punctuation (spaces separate its phrases), so Thai is cut at spaces; Hindi
ends sentences with "।", which sentencex knows.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import threading
import tomllib
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import AsyncIterable, AsyncIterator

import numpy as np

from voxlens.cancel import CancelGroup, CancelToken
from voxlens.config import TtsConfig
from voxlens.stage import StreamStage
from voxlens.onnx import session as onnx_session
from voxlens.timing import Timings, monotonic

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 5000


def load_piper_voice(path: Path, config_path: Path, threads: int = 0):
    """PiperVoice with our own onnxruntime session: every core, but threads that sleep instead of spin.

    Piper's own loader gives onnxruntime spinning threads; next to whisper, the wake word and the
    LLM on a 2-core device that made a short sentence take 280 ms instead of 195 ms (idle: 108 ms
    for "It's 5:02 PM." on two threads, 169 ms on one).
    """
    import json

    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.voice import ESPEAK_DATA_DIR

    session = onnx_session(path, threads=threads or os.cpu_count() or 1, gpu=True)
    with open(config_path, encoding="utf-8") as fh:
        config = PiperConfig.from_dict(json.load(fh))
    return PiperVoice(config=config, session=session, espeak_data_dir=Path(ESPEAK_DATA_DIR), download_dir=Path.cwd())


# A first piece may end before one of these words (a phrase or the verb starts there) or after a clause mark.
_BREAK_BEFORE = frozenset({
    "and", "but", "or", "so", "because", "while", "although", "though", "whereas", "unless", "until", "since",
    "if", "when", "where", "which", "who", "with", "without", "in", "on", "at", "for", "from", "to", "by", "about",
    "into", "onto", "over", "under", "after", "before", "during", "around", "through", "between", "near", "across",
    "against", "is", "are", "was", "were", "has", "have", "had", "will", "would", "can", "could", "should", "may",
    "might", "must",
})
_NUMBER_WORDS = frozenset({
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty",
    "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion", "half",
    "quarter",
})
_GLUE_WORDS = frozenset({
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that", "these", "those", "very",
    "i", "you", "he", "she", "it", "we", "they", "there", "here", "what",
})   # no cut right after these: "says it | is" sounds broken
_CLINGING = _GLUE_WORDS | _BREAK_BEFORE | {"of", "as", "than"}



@dataclass(frozen=True)
class BreakWords:
    """One language's word lists for first_piece_end."""
    break_before: frozenset[str]
    glue: frozenset[str]
    numbers: frozenset[str]

    @property
    def clinging(self) -> frozenset[str]:
        return self.glue | self.break_before


ENGLISH = BreakWords(_BREAK_BEFORE, _GLUE_WORDS, _NUMBER_WORDS)
NO_WORDS = BreakWords(frozenset(), frozenset(), frozenset())


@cache
def break_words(language: str) -> BreakWords:
    """The language's lists from device/speech_breaks.toml ("de-AT" -> de); none known: clause marks only."""
    lang = language.replace("_", "-").split("-")[0].lower()
    if lang in ("", "en"):
        return ENGLISH
    with open(Path(__file__).with_name("speech_breaks.toml"), "rb") as fh:
        table = tomllib.load(fh).get(lang)
    if table is None:
        return NO_WORDS
    return BreakWords(*(frozenset(w.lower() for w in table.get(k, ())) for k in ("break_before", "glue", "numbers")))


def _bare(word: str) -> str:
    """Lower case without punctuation; letters, combining marks (Devanagari, Thai vowels) and digits stay."""
    return "".join(c for c in word.lower() if c == "'" or unicodedata.category(c)[0] in "LMN")


def _is_number(word: str, words: BreakWords = ENGLISH) -> bool:
    w = _bare(word)
    return bool(re.search(r"\d", w)) or w in words.numbers


_THAI = re.compile(r"[\u0E00-\u0E7F]")


def thai_segments(text: str) -> list[str]:
    """Thai text -> its phrases, which is what Thai writes instead of sentences: a space between two Thai
    phrases is a boundary. No cut beside a number or a Latin word ("iPhone 15", "10 ล้าน") nor after the
    repetition mark "ๆ" (written with a space inside a phrase). Like sentencex, every character is kept:
    the spaces ride on the segment before."""
    parts = re.split(r"(?<=\S)(\s+)(?=\S)", text)
    segments: list[str] = []
    current = parts[0]
    for i in range(1, len(parts), 2):
        space, nxt = parts[i], parts[i + 1]
        before = current.rstrip().split()[-1] if current.strip() else ""
        boundary = (bool(_THAI.search(before[-1:])) and bool(_THAI.match(nxt)) and not before.endswith("ๆ"))
        if boundary:
            segments.append(current + space)
            current = nxt
        else:
            current += space + nxt
    segments.append(current)
    return [s for s in segments if s]


def segment(language: str, text: str) -> list[str]:
    """Sentences (Thai: phrases) of `text`, every character kept."""
    if language.split("-")[0].lower() == "th":
        return thai_segments(text)
    import sentencex

    return [s for s in sentencex.segment(language or "en", text) if s]


def first_piece_end(text: str, min_words: int, max_words: int, complete: bool, language: str = "en") -> int:
    """Where the first spoken piece of `text` ends (a character offset), or 0 when it is not known yet.

    The piece has min_words..max_words words and ends at a clause mark (",", ";", ":", a dash) or before a
    conjunction, preposition or auxiliary verb ("The capital of France | is Paris."), but not right after a
    number ("ten | to six", "three | and a half"), an article or another such word, nor before a one-word
    tail ("turn it | on."). `complete`: text is the whole first sentence; otherwise it
    is still streaming, so only words followed by a space count. A sentence with no boundary in its first
    max_words words is cut there anyway (stepping back past small words) rather than waiting for its end.
    """
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    if not complete and spans and spans[-1][1] == len(text):
        spans = spans[:-1]                      # the last word may still grow ("an" -> "and")
    words = [text[a:b] for a, b in spans]
    lists = break_words(language)
    for i in range(min_words, min(max_words, len(words) - 1) + 1):   # cut after words[i - 1]
        prev, nxt, tail = words[i - 1], words[i], len(words) - i
        if prev[-1] in ",;:\u060c\u3001" or nxt in ("-", "\u2013", "\u2014"):
            return spans[i - 1][1]
        if (_bare(nxt) in lists.break_before and tail >= 2     # "turn it | on." or a one-word tail sounds chopped
                and not _is_number(prev, lists) and _bare(prev) not in lists.glue
                and _bare(prev) not in lists.break_before):
            return spans[i - 1][1]
    if len(words) - max_words >= (2 if complete else 1):   # no boundary: cut anyway, not after a small word
        i = max_words
        clinging = _CLINGING if lists is ENGLISH else lists.clinging
        while i > min_words and (_is_number(words[i - 1], lists) or _bare(words[i - 1]) in clinging):
            i -= 1
        return spans[i - 1][1]
    return 0


class SentenceChunker:
    """Cuts streamed text into speakable pieces: a short first piece, then whole sentences.

    Why a short first piece: Piper speaks nothing until a whole piece is synthesised, and the model is
    still writing the rest, so the answer starts on its first few words (cut at a phrase boundary by
    first_piece_end) instead of its first sentence. A sentence is complete once text follows it (so
    "3." + "5" or "U.S." + " yesterday" is never cut); the last one is released by flush().
    """

    def __init__(self, first_clause_min_words: int = TtsConfig.first_clause_min_words,
                 first_clause_max_words: int = TtsConfig.first_clause_max_words, language: str = "en") -> None:
        self.min_words = first_clause_min_words
        self.max_words = first_clause_max_words
        self.language = language
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        segments = segment(self.language, self._buffer)
        if not segments:
            return []
        # sentencex keeps every character (spaces ride on the segment before), so offsets add up.
        if "".join(segments) != self._buffer:  # defensive: never lose text if that ever changes
            return []
        pieces = [s.strip() for s in segments[:-1] if s.strip()]
        self._buffer = self._buffer[sum(len(s) for s in segments[:-1]):]
        if self._emitted == 0:
            if pieces:      # the first sentence is complete: send its head ahead of the rest
                pieces[:1] = self._split_first(pieces[0])
            else:           # the first sentence is still streaming: send its head as soon as it is known
                cut = first_piece_end(self._buffer, self.min_words, self.max_words, complete=False,
                                      language=self.language)
                if cut:
                    pieces, self._buffer = [self._buffer[:cut].strip()], self._buffer[cut:].lstrip()
        self._emitted += len(pieces)
        return pieces

    def _split_first(self, sentence: str) -> list[str]:
        cut = first_piece_end(sentence, self.min_words, self.max_words, complete=True, language=self.language)
        return [sentence[:cut].strip(), sentence[cut:].strip()] if cut else [sentence]

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        if not rest:
            return []
        pieces = self._split_first(rest) if self._emitted == 0 else [rest]
        self._emitted += len(pieces)
        return pieces


@dataclass
class SpeechChunk:
    text: str
    audio: np.ndarray            # int16 mono
    rate_hz: int
    timings: Timings = field(default_factory=Timings)


ESPEAK_PREFIX = "espeak:"


class _EspeakSynthesis:
    """Stands in for Piper's SynthesisConfig on an espeak-ng voice (length_scale is Piper's)."""

    def __init__(self, length_scale: float = 1.0) -> None:
        self.length_scale = length_scale


def _piper_synthesis(cfg: TtsConfig):
    """Piper's settings; a negative noise keeps the voice's own (its .onnx.json), 0 makes the audio repeatable."""
    from piper import SynthesisConfig

    return SynthesisConfig(length_scale=cfg.length_scale,
                           noise_scale=cfg.noise_scale if cfg.noise_scale >= 0 else None,
                           noise_w_scale=cfg.noise_w_scale if cfg.noise_w_scale >= 0 else None)


class TextToSpeech:
    """A loaded voice for one language; `stream()` turns text deltas into audio chunks until its `cancel`
    token (the turn's) trips; `cancel()` stops every stream.

    voice: a catalog name or a path to a Piper .onnx, or "espeak:<language>" for espeak-ng's voice
    (the fallback where no Piper voice for a language is on this machine)."""

    def __init__(self, voice: str = "piper-joe-medium", cfg: TtsConfig | None = None, language: str = "en") -> None:
        self.cfg = cfg or TtsConfig()
        self.language = language
        self.voice_name = voice
        self._streams = CancelGroup()   # the streams in progress: cancel() trips each one's token
        self._lock = threading.Lock()   # shared by with_config() clones: they share the voice
        self.last_timings = Timings()
        self.syntheses = 0              # calls to the synthesiser (tests count them: a prepared line costs none)
        if voice.startswith(ESPEAK_PREFIX):
            from device.espeak_voice import EspeakUnavailable, EspeakVoice
            from models.catalog import ModelError

            try:
                self.voice = EspeakVoice(voice[len(ESPEAK_PREFIX):] or language, self.cfg.espeak_words_per_minute)
            except EspeakUnavailable as exc:
                raise ModelError(str(exc)) from None
            self.sample_rate_hz: int = self.voice.sample_rate_hz
            self._syn_config = _EspeakSynthesis(self.cfg.length_scale)
            return
        self._load_piper(voice)

    def _load_piper(self, voice: str) -> None:
        from models.catalog import ModelError, resolve
        path = Path(voice) if voice.endswith(".onnx") or "/" in voice else Path(resolve(voice))
        config_path = Path(str(path) + ".json")
        for p in (path, config_path):
            if not p.is_file():
                raise ModelError(f"Piper voice file {p} is missing; a voice needs both X.onnx and X.onnx.json; "
                                 f"fix: voxlens models verify {voice}")
        try:
            self.voice = load_piper_voice(path, config_path, self.cfg.threads)
        except Exception as exc:
            raise ModelError(f"Piper voice {path} cannot be loaded ({exc}); fix: voxlens models verify {voice}") from None
        self.sample_rate_hz = self.voice.config.sample_rate
        self._syn_config = _piper_synthesis(self.cfg)

    @property
    def is_espeak(self) -> bool:
        return isinstance(self._syn_config, _EspeakSynthesis)

    def with_config(self, cfg: TtsConfig) -> "TextToSpeech":
        """The same loaded voice with other settings (benchmarks compare options without loading twice)."""
        clone = copy.copy(self)
        clone.cfg = cfg
        clone._syn_config = (_EspeakSynthesis(cfg.length_scale) if self.is_espeak else _piper_synthesis(cfg))
        return clone

    def _check(self, text: str) -> None:
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text of {len(text)} characters is too long to speak (limit {MAX_TEXT_CHARS}); shorten it")

    def synthesize_sentences(self, text: str, cancel: CancelToken | None = None) -> list[np.ndarray]:
        """One int16 array per sentence, as Piper cuts them. Thread-safe: one synthesis at a time per voice,
        because Piper's phonemizer (espeak-ng) keeps global state (several Wyoming clients share one voice).
        A tripped `cancel` (read from this worker thread) stops before the next sentence: nothing more is made."""
        self._check(text)
        with self._lock:
            if cancel is not None and cancel.cancelled:
                return []
            self.syntheses += 1
            if self.is_espeak:   # espeak-ng pauses at punctuation itself; the chunker already cut sentences
                return [self.voice.synthesize(text)]
            out: list[np.ndarray] = []
            for chunk in self.voice.synthesize(text, self._syn_config):
                if cancel is not None and cancel.cancelled:
                    break
                out.append(chunk.audio_int16_array)
            return out

    def synthesize(self, text: str) -> np.ndarray:
        pieces = self.synthesize_sentences(text)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    def cancel(self) -> None:
        """Stop every stream in progress: no further chunk is yielded after this returns."""
        self._streams.cancel_all()

    async def stream(self, deltas: AsyncIterable[str], cancel: CancelToken | None = None) -> AsyncIterator[np.ndarray]:
        async for chunk in self.stream_chunks(deltas, cancel):
            yield chunk.audio

    def stage(self, cancel: CancelToken | None = None) -> StreamStage[str, SpeechChunk]:
        """The stream in the one stage shape (voxlens/stage.py): push text deltas, end_input, `async for` chunks."""
        return StreamStage(lambda deltas: self.stream_chunks(deltas, cancel))

    async def stream_chunks(self, deltas: AsyncIterable[str],
                            cancel: CancelToken | None = None) -> AsyncIterator[SpeechChunk]:
        """Like stream(), with each chunk's text and timing (tts.first_audio counts from the first delta)."""
        with self._streams.scope(cancel) as token:
            async for chunk in self._stream_chunks(deltas, token):
                yield chunk

    async def _stream_chunks(self, deltas: AsyncIterable[str], token: CancelToken) -> AsyncIterator[SpeechChunk]:
        timings = self.last_timings = Timings()
        queue: asyncio.Queue[SpeechChunk | BaseException | None] = asyncio.Queue(maxsize=4)
        chunker = SentenceChunker(self.cfg.first_clause_min_words, self.cfg.first_clause_max_words, self.language)
        first_delta_s: list[float] = []

        async def produce() -> None:
            try:
                total = 0
                async for delta in deltas:
                    if not first_delta_s:
                        first_delta_s.append(monotonic())
                    total += len(delta)
                    if total > MAX_TEXT_CHARS:
                        raise ValueError(f"streamed text passed {MAX_TEXT_CHARS} characters; the answer is too long to speak")
                    for piece in chunker.push(delta):
                        await self._synth_into(piece, queue, token)
                for piece in chunker.flush():
                    await self._synth_into(piece, queue, token)
                await queue.put(None)
            except Exception as exc:  # hand errors to the consumer, which re-raises them
                await queue.put(exc)

        task = asyncio.create_task(produce())
        try:
            first = True
            while True:
                item = await token.guard(queue.get())   # a trip ends the stream while a piece is synthesised
                if item is None or token.cancelled:
                    return
                if isinstance(item, BaseException):
                    raise item
                if first and first_delta_s:
                    timings.add("tts.first_audio", first_delta_s[0])
                    first = False
                yield item
                if token.cancelled:
                    return
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _synth_into(self, piece: str, queue: asyncio.Queue, token: CancelToken) -> None:
        if token.cancelled:
            return
        start = monotonic()
        sentences = await asyncio.to_thread(self.synthesize_sentences, piece, token)
        end = monotonic()
        for audio in sentences:
            if token.cancelled:
                return
            t = Timings()
            t.add("tts.synthesize", start, end)
            await queue.put(SpeechChunk(piece, audio, self.sample_rate_hz, t))
