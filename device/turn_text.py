"""Do the words so far end open? The text half of the end-of-turn decision.

Why: Smart Turn v3 (device/smart_turn.py) hears how the words were spoken, not what they were, and calls
a phrase that stops on a falling pitch complete even when it ends on "for" or "the" ("set a timer for …
ten minutes": p 0.98 at the pause on a synthetic voice). At the pause the device already holds the words
decoded as a final (`StreamingTranscription.settled`), so the utterance stage holds Smart Turn's "complete"
until they exist and lets a transcript that ends open veto it; the silence rule still ends the turn.
Whisper closes fragments with a full stop too ("what's the weather in."), so the stop is no evidence;
the last word is (device/turn_text.toml, per language).
The opposite rule (end a turn Smart Turn doubts when the transcript reads as a finished sentence) was
measured and left out: Whisper closes too many fragments as sentences (`voxlens bench endpoint`).
"""
from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

_OPEN_ENDINGS = ("...", "…", ",", "-", "–", "—", ":", ";")   # Whisper's own marks of a sentence left hanging
_CLOSERS = "\"'»”’)]"
_EDGE = re.compile(r"^[^\w]+|[^\w]+$")


@cache
def open_words(language: str) -> frozenset[str] | None:
    """The words that cannot end a sentence in `language` ("de-AT" -> de); None when it has no list."""
    lang = language.replace("_", "-").split("-")[0].lower() or "en"
    with open(Path(__file__).with_name("turn_text.toml"), "rb") as fh:
        table = tomllib.load(fh).get(lang)
    return None if table is None else frozenset(w.lower() for w in table["words"])


def ends_open(text: str, language: str = "en") -> bool:
    """True when a transcript stops mid-phrase: on a word that cannot end a sentence in `language`, or on
    Whisper's marks of a hanging sentence ("...", a comma, a dash). No words, or no word list: False."""
    body = text.strip().rstrip(_CLOSERS).rstrip()
    tokens = [t for t in (_EDGE.sub("", w) for w in body.split()) if t]
    if not tokens:
        return False
    if body.endswith(_OPEN_ENDINGS):
        return True
    words = open_words(language)
    return words is not None and tokens[-1].lower() in words
