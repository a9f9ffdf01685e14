"""Speech out: Piper, one sentence (or first clause) at a time as the answer's text streams in.

Why sentence by sentence: Piper's first audio costs the synthesis time of the first
piece it is given (~64 ms for 6 words, ~310 ms for 30 here), so the answer starts
playing as soon as its first sentence is complete, and a long first sentence is cut
at its first clause. Sentence boundaries come from `sentencex` (a maintained
segmenter that keeps "Dr.", "3.5" and "U.S." intact), not from a regex. Synthesis
blocks, so it runs in a worker thread while the previous piece plays.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterable, AsyncIterator

import numpy as np

from voxlens.config import TtsConfig
from voxlens.onnx import session as onnx_session
from voxlens.timing import Timings, monotonic

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 5000
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013]\s|\s[-\u2014\u2013]\s")


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


class SentenceChunker:
    """Cuts streamed text into speakable pieces: whole sentences, plus an early first clause.

    A sentence is complete once text follows it (so "3." + "5" or "U.S." + " yesterday"
    is never cut); the last one is released by flush().
    """

    def __init__(self, first_clause_min_words: int = 4, first_clause_max_words: int = 12, language: str = "en") -> None:
        self.min_words = first_clause_min_words
        self.max_words = first_clause_max_words
        self.language = language
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        import sentencex

        self._buffer += delta
        segments = [s for s in sentencex.segment(self.language, self._buffer) if s]
        if not segments:
            return []
        pieces = [s.strip() for s in segments[:-1] if s.strip()]
        consumed = sum(len(s) for s in segments[:-1])
        # sentencex keeps every character (spaces ride on the segment before), so offsets add up.
        if "".join(segments) != self._buffer:  # defensive: never lose text if that ever changes
            return []
        self._buffer = self._buffer[consumed:]
        if self._emitted == 0:
            if pieces:  # a complete but long first sentence: its first clause goes ahead of the rest
                clause = self._first_clause(pieces[0] + " ")
                if clause and clause.strip() != pieces[0]:
                    pieces[:1] = [clause.strip(), pieces[0][len(clause):].strip()]
            else:       # an unfinished long first sentence: send its first clause now
                clause = self._first_clause(self._buffer)
                if clause:
                    self._buffer = self._buffer[len(clause):]
                    pieces = [clause.strip()]
        self._emitted += len(pieces)
        return pieces

    def _first_clause(self, text: str) -> str:
        """Head of a long unfinished first sentence, cut after a clause mark past min_words."""
        if len(text.split()) <= self.max_words:
            return ""
        for m in _CLAUSE_END.finditer(text):
            head = text[: m.end()]
            if len(head.split()) >= self.min_words:
                return head
        words = re.finditer(r"\S+\s", text)
        cut = [m.end() for m in words]
        if len(cut) >= 2 * self.max_words:  # no clause mark at all: cut at a word boundary rather than wait
            return text[: cut[self.max_words - 1]]
        return ""

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        if not rest:
            return []
        pieces = [rest]
        if self._emitted == 0:
            clause = self._first_clause(rest + " ")
            if clause and clause.strip() != rest:
                pieces = [clause.strip(), rest[len(clause):].strip()]
        self._emitted += len(pieces)
        return pieces


@dataclass
class SpeechChunk:
    text: str
    audio: np.ndarray            # int16 mono
    rate_hz: int
    timings: Timings = field(default_factory=Timings)


class TextToSpeech:
    """A loaded Piper voice; `stream()` turns text deltas into audio chunks, `cancel()` stops it."""

    def __init__(self, voice: str = "piper-joe-medium", cfg: TtsConfig | None = None) -> None:
        from models.catalog import ModelError, resolve
        from piper import SynthesisConfig

        self.cfg = cfg or TtsConfig()
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
        self.sample_rate_hz: int = self.voice.config.sample_rate
        self._syn_config = SynthesisConfig(length_scale=self.cfg.length_scale)
        self._generation = 0
        self._lock = threading.Lock()   # shared by with_config() clones: they share the voice
        self.last_timings = Timings()

    def with_config(self, cfg: TtsConfig) -> "TextToSpeech":
        """The same loaded voice with other settings (benchmarks compare options without loading twice)."""
        clone = copy.copy(self)
        clone.cfg = cfg
        clone._syn_config = type(self._syn_config)(length_scale=cfg.length_scale)
        return clone

    def _check(self, text: str) -> None:
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text of {len(text)} characters is too long to speak (limit {MAX_TEXT_CHARS}); shorten it")

    def synthesize_sentences(self, text: str) -> list[np.ndarray]:
        """One int16 array per sentence, as Piper cuts them. Thread-safe: one synthesis at a time per voice,
        because Piper's phonemizer (espeak-ng) keeps global state (several Wyoming clients share one voice)."""
        self._check(text)
        with self._lock:
            return [chunk.audio_int16_array for chunk in self.voice.synthesize(text, self._syn_config)]

    def synthesize(self, text: str) -> np.ndarray:
        pieces = self.synthesize_sentences(text)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    def cancel(self) -> None:
        """Stop every stream in progress: no further chunk is yielded after this returns."""
        self._generation += 1

    async def stream(self, deltas: AsyncIterable[str]) -> AsyncIterator[np.ndarray]:
        async for chunk in self.stream_chunks(deltas):
            yield chunk.audio

    async def stream_chunks(self, deltas: AsyncIterable[str]) -> AsyncIterator[SpeechChunk]:
        """Like stream(), with each chunk's text and timing (tts.first_audio counts from the first delta)."""
        generation = self._generation
        timings = self.last_timings = Timings()
        queue: asyncio.Queue[SpeechChunk | BaseException | None] = asyncio.Queue(maxsize=4)
        chunker = SentenceChunker(self.cfg.first_clause_min_words, self.cfg.first_clause_max_words)
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
                        await self._synth_into(piece, queue, generation)
                for piece in chunker.flush():
                    await self._synth_into(piece, queue, generation)
                await queue.put(None)
            except Exception as exc:  # hand errors to the consumer, which re-raises them
                await queue.put(exc)

        task = asyncio.create_task(produce())
        try:
            first = True
            while True:
                item = await queue.get()
                if item is None or generation != self._generation:
                    return
                if isinstance(item, BaseException):
                    raise item
                if first and first_delta_s:
                    timings.add("tts.first_audio", first_delta_s[0])
                    first = False
                yield item
                if generation != self._generation:
                    return
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _synth_into(self, piece: str, queue: asyncio.Queue, generation: int) -> None:
        if generation != self._generation:
            return
        start = monotonic()
        sentences = await asyncio.to_thread(self.synthesize_sentences, piece)
        end = monotonic()
        for audio in sentences:
            if generation != self._generation:
                return
            t = Timings()
            t.add("tts.synthesize", start, end)
            await queue.put(SpeechChunk(piece, audio, self.sample_rate_hz, t))
