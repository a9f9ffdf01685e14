"""How much of a wake phrase's sound is in a transcript: espeak-ng phonemes and a local edit distance.

Why phonemes, not letters: Whisper spells a phrase it has never seen in many
ways ("chatterbox", "chatter box", "Chad a box") that sound alike; letters
differ, phonemes barely do. Why a local alignment: the transcript of the last
two seconds usually starts with the tail of an earlier word, so the phrase is
matched against the best-fitting stretch of it, not the whole.
"""
from __future__ import annotations

import threading
import unicodedata
from functools import lru_cache

_SKIP = set("ˈˌːˑ‿|.,;:!?¡¿-—–'\"()[] ")
_VOWELS = set("aeiouæɑɒɐəɚɛɜɝɞɤɪɨʉʊʌɔøœyɯɵɘɶ")
# Consonants that differ only in voicing ("Chervis" for "Jervis", "s" for "z"): accents, devoicing at the
# end of words and a small ASR model all swap them, so they cost half, like two vowels.
_VOICING_PAIRS = {frozenset(p) for p in ("pb", "td", "kg", "fv", "sz", "ʃʒ", "θð")}
_lock = threading.Lock()   # espeak-ng keeps global state; Piper shares it


@lru_cache(maxsize=1)
def _phonemizer():
    from piper.phonemize_espeak import EspeakPhonemizer

    return EspeakPhonemizer()


def phonemes(text: str, voice: str = "en-us") -> tuple[str, ...]:
    """Text -> phoneme symbols (IPA codepoints, no stress, length, spaces or punctuation).

    American English's stressed r-coloured vowel (NURSE: "her", "Jervis") is written ɜ by espeak-ng
    with its r left implicit, while every other rhotic vowel carries an explicit ɹ (ɑɹ, ɪɹ, ɔɹ): the r is
    written out so that "Jervis" and "Jarvis" differ by one vowel, not by a vowel and a missing ɹ."""
    text = " ".join(text.split())
    if not text:
        return ()
    with _lock:
        sentences = _phonemizer().phonemize(voice, text)
    out: list[str] = []
    for sentence in sentences:
        for ch in sentence:
            if ch in _SKIP or unicodedata.combining(ch):
                continue
            if out and out[-1] == "ɜ" and ch != "ɹ" and voice == "en-us":
                out.append("ɹ")
            out.append(ch)
    if out and out[-1] == "ɜ" and voice == "en-us":
        out.append("ɹ")
    return tuple(out)


def _sub_cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    if a in _VOWELS and b in _VOWELS:
        return 0.5   # vowel quality varies most between speakers, accents and reduction
    if frozenset((a, b)) in _VOICING_PAIRS:
        return 0.5
    return 1.0


FREE_TAIL = 3        # phonemes allowed after the phrase (the fire lands up to ~0.3 s after its end)
TAIL_COST = 0.5      # each further trailing phoneme: the phrase should end the transcript


def local_distance(pattern: tuple[str, ...], text: tuple[str, ...], free_tail: int | None = None,
                   tail_cost: float = TAIL_COST) -> float:
    """Fewest edits turning `pattern` into some contiguous stretch of `text`.

    The stretch may start anywhere (the window opens mid-sentence); with
    `free_tail` set, text after the stretch beyond that many phonemes costs
    `tail_cost` each, because a fire comes at the end of the phrase.
    """
    m = len(pattern)
    if m == 0:
        return 0.0

    def tail(j: int) -> float:
        return 0.0 if free_tail is None else tail_cost * max(0, len(text) - j - free_tail)

    prev = [float(i) for i in range(m + 1)]     # column for text position 0: pattern prefix vs nothing
    best = prev[m] + tail(0)
    for j, t in enumerate(text, start=1):
        cur = [0.0] * (m + 1)                   # a match may start anywhere in text
        for i in range(1, m + 1):
            cur[i] = min(prev[i - 1] + _sub_cost(pattern[i - 1], t), prev[i] + 1.0, cur[i - 1] + 1.0)
        best = min(best, cur[m] + tail(j))
        prev = cur
    return best


def similarity(phrase_phonemes: tuple[str, ...], text: str, free_tail: int | None = FREE_TAIL) -> float:
    """1.0 when the text's phonemes end with the phrase's, 0.0 when nothing of them is there."""
    if not phrase_phonemes:
        return 0.0
    d = local_distance(phrase_phonemes, phonemes(text), free_tail)
    return max(0.0, 1.0 - d / len(phrase_phonemes))
