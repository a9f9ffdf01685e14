"""What to say: the phrase's own variants, confusable negatives made from it, and ordinary speech.

Why generate confusables from the phrase: a head trained only against random
speech fires on anything that shares the phrase's vowels and rhythm ("a
cheddar block" for "hey chatterbox"). Editing the phrase's phonemes (one vowel,
one consonant, a dropped or swapped word, a partial phrase) makes those
near-misses for any phrase without a hand-written list.
"""
from __future__ import annotations

import gzip
import json
import os
import re
from functools import lru_cache

import numpy as np

# misaki (Kokoro) phoneme alphabet, as used by hibari's G2P.
VOWELS = list("AIOWYiuɪʊɛæəʌɑɔɜɚᵊɐ")
CONSONANTS = list("bdfhklmnpstvwzɡŋɹʃʒðθʧʤjT")
STRESS = "ˈˌ"

SENTENCES = [
    "What's the weather like tomorrow?", "Set a timer for ten minutes.", "Turn the volume down a little.",
    "I think we should leave at six.", "Can you call my mother later?", "The meeting moved to Thursday afternoon.",
    "Take a photo of this.", "How long is left on the timer?", "Play some music in the kitchen.",
    "We went to the market on Saturday.", "She said the train was late again.", "Let me check my calendar first.",
    "The coffee here is really good.", "Do you know where my keys are?", "It's going to rain all week.",
    "He parked the car behind the house.", "Open the window, it's too warm.", "That was a great movie.",
    "Remind me to buy milk.", "What time is it in Tokyo?", "My brother lives in Chicago now.",
    "The kids are playing outside.", "Could you read that again?", "I'll be there in five minutes.",
    "Hey, how are you doing today?", "Okay, let's get started.", "Hello everyone, thanks for coming.",
    "Hey there, long time no see.", "Say that one more time.", "They bought a new couch yesterday.",
    "Check the box on the left.", "The cat jumped onto the table.", "A better idea would be to wait.",
    "Let's talk about it after lunch.", "Chat with you later.", "He was chatting about his vacation.",
    "Put it back in the box.", "The dog chased the ball across the yard.", "We need more batteries.",
    "Hey, can you help me with this?", "Stop the music.", "Cancel that.", "Never mind.",
    "Good morning, what's on my schedule?", "Lenses for the camera are expensive.", "Vote for the best box.",
]


@lru_cache(maxsize=1)
def common_words() -> list[str]:
    """Lower-case English words from hibari's gold lexicon (tens of thousands), for random word sequences."""
    import hibari

    path = os.path.join(os.path.dirname(hibari.__file__), "assets", "lexicon_us_gold.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lexicon = json.load(fh)
    return sorted(w for w, p in lexicon.items() if isinstance(p, str) and re.fullmatch(r"[a-z]{2,12}", w))


def random_word_text(rng: np.random.Generator, banned: set[str], n_min: int = 2, n_max: int = 6) -> str:
    words = common_words()
    out: list[str] = []
    while len(out) < int(rng.integers(n_min, n_max + 1)):
        w = words[int(rng.integers(len(words)))]
        if w not in banned:
            out.append(w)
    return " ".join(out)


def phrase_words(phrase: str) -> list[str]:
    return re.findall(r"[a-z']+", phrase.lower())


def partial_texts(phrase: str) -> list[str]:
    """Each word alone and every proper contiguous part of the phrase ("hey", "vox lens", "hey vox")."""
    words = phrase_words(phrase)
    parts = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
    parts.discard(" ".join(words))
    return sorted(parts)


def mutate_phonemes(phonemes: str, rng: np.random.Generator) -> str:
    """One clear edit to a misaki phoneme string: a stressed vowel or a consonant replaced.

    Unstressed vowels and deletions are left alone: real speakers reduce and
    drop those in the phrase itself, so such "negatives" teach the head to
    reject real people (measured: they cost ~40 points of real FRR).
    """
    chars = list(phonemes)
    stressed = [i for i, c in enumerate(chars) if c in VOWELS and i > 0 and chars[i - 1] in STRESS]
    cons_at = [i for i, c in enumerate(chars) if c in CONSONANTS]
    if stressed and (not cons_at or rng.random() < 0.5):
        i = int(rng.choice(stressed))
        chars[i] = str(rng.choice([v for v in VOWELS if v != chars[i] and v not in "ᵊəɐ"]))
    elif cons_at:
        i = int(rng.choice(cons_at))
        chars[i] = str(rng.choice([c for c in CONSONANTS if c != chars[i]]))
    return "".join(chars)


def confusable_phonemes(phrase_ps: str, rng: np.random.Generator, n: int) -> list[str]:
    """n distinct near-misses of the phrase: mostly one edit, some two, some with a word swapped in."""
    words = phrase_ps.split(" ")
    out: set[str] = set()
    tries = 0
    while len(out) < n and tries < n * 20:
        tries += 1
        p = mutate_phonemes(mutate_phonemes(phrase_ps, rng), rng)   # two clear edits: a near miss, not a variant
        if len(words) > 1 and rng.random() < 0.2:  # a different first word, same rest ("say vox lens")
            w = list(p.split(" "))
            w[0] = str(rng.choice(["sˈA", "ðˈA", "hˈI", "ə", "ˈOkˈA", "wˈA", "hˈɛ", "dˈA"]))
            p = " ".join(w)
        if p != phrase_ps:
            out.add(p)
    return sorted(out)
