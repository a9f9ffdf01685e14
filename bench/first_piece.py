"""What a spoken piece costs Piper, by its length in words: the numbers behind the first piece's size.

Why: the first audio of an answer waits for the whole first piece to be synthesised, so its size is
a trade between latency (cost per word) and prosody (a piece too short sounds chopped). This fits
cost = fixed + per_word * words on prefixes of real answer shapes, and times the spoken confirmations
the device plays: whole, and as a cached head plus a synthesised tail.

    .venv/bin/python -m bench.first_piece
"""
from __future__ import annotations

import os
import statistics

from voxlens.timing import Timings

SENTENCES = (
    "The forecast for Paris tomorrow is mostly sunny in the morning with clouds building in the afternoon.",
    "The James Webb Space Telescope captured detailed infrared images of distant galaxies formed long ago.",
)
TAILS = ("60 percent.", "4:43 PM.", "10 minutes.")
HEADS = ("Volume", "It's", "Timer set for")


def _cost_ms(tts, text: str, repeats: int = 5) -> float:
    vals = []
    for _ in range(repeats):
        t = Timings()
        with t.measure("tts.synthesize"):
            tts.synthesize(text)
        vals.append(t.get("tts.synthesize").duration_ms)
    return statistics.median(vals)


def main() -> None:
    from device.tts import TextToSpeech

    tts = TextToSpeech()
    tts.synthesize("Warm up.")
    xs, ys = [], []
    for sentence in SENTENCES:
        words = sentence.rstrip(".").split()
        for n in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16):
            xs.append(n)
            ys.append(_cost_ms(tts, " ".join(words[:n])))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    per_word = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    fixed = my - per_word * mx
    print(f"Piper cost by words (median of 5, load avg {os.getloadavg()[0]:.1f}):")
    for n in sorted(set(xs)):
        print(f"  {n:2d} words  {statistics.fmean(y for x, y in zip(xs, ys) if x == n):6.1f} ms")
    print(f"fit: {fixed:.1f} ms fixed + {per_word:.1f} ms per word")
    for head in HEADS:
        audio = tts.synthesize(head)
        print(f"head {head!r}: plays {len(audio) / tts.sample_rate_hz * 1000:.0f} ms")
    for tail in TAILS:
        print(f"tail {tail!r}: synthesised in {_cost_ms(tts, tail):.0f} ms")
    print(f"whole 'Volume 60 percent.': {_cost_ms(tts, 'Volume 60 percent.'):.0f} ms")
    _first_audio_ab(tts)


def _first_audio_ab(tts, repeats: int = 15) -> None:
    """tts.first_audio (first delta -> first chunk) with the short first piece and with the whole first sentence,
    interleaved so both see the same load (on a shared 2-core machine Piper's times swing twofold)."""
    import asyncio

    from bench.speech import LONG_ANSWER, SHORT_ANSWER
    from voxlens.config import TtsConfig

    async def first_audio_ms(voice, text: str) -> tuple[str, float]:
        async def once():
            yield text
        async for chunk in voice.stream_chunks(once()):
            return chunk.text, voice.last_timings.get("tts.first_audio").duration_ms
        return "", float("nan")

    whole = tts.with_config(TtsConfig(first_clause_min_words=10_000, first_clause_max_words=10_000))
    for text in (SHORT_ANSWER, LONG_ANSWER):
        runs: dict[str, list[float]] = {"first piece": [], "whole first sentence": []}
        pieces = {}
        for _ in range(repeats):
            for label, voice in (("first piece", tts), ("whole first sentence", whole)):
                pieces[label], ms = asyncio.run(first_audio_ms(voice, text))
                runs[label].append(ms)
        for label, vals in runs.items():
            print(f"tts.first_audio {label:22s} p50 {statistics.median(vals):5.0f} ms  ({pieces[label]!r})")
    print(f"load avg {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
