"""A short transcript that is nearly a device command, heard again with the command vocabulary as Whisper's prompt.

Why: tiny.en hears some short commands in some voices as near words ("Volume up" -> "Volume app", "Unmute" ->
"and mute"); sent to the gateway they cost seconds and answer the wrong thing. Prompted with the command
phrases, Whisper hears them right, but on general speech the prompt hurts (`voxlens bench speech`), so it is
only a second opinion: asked when the words are short and name the command vocabulary (or are a few garbled
letters), and taken only when it is a whole command that reads like what was heard the first time, so a
question is never turned into a command it does not sound like.

The vocabulary and the prompt are per language (the `voxlens:` key of device/grammar/<code>.yaml:
`command_prompt`, `command_words`); a language without them is never rechecked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

from device.commands import CommandMatch, LanguageData

_WORD_RE = re.compile(r"[^\W\d_]+|\d+")
_CLAUSE_RE = re.compile(r"[,.;:!?…]+")
MAX_WORDS = 6          # longer than a command: a question that happens to say "volume"
GARBLED_LETTERS = 10   # this few letters is not a question either ("A N U T"): worth a recheck whatever they are
MIN_SIMILARITY = 0.6   # letters in common (difflib ratio) between what was heard and the command taken


@dataclass(frozen=True)
class Recheck:
    """What the second pass heard and the command taken from it (None: the first transcript stands)."""

    heard: str
    text: str = ""
    command: CommandMatch | None = None
    similarity: float = 0.0


def _letters(text: str) -> str:
    return "".join(_WORD_RE.findall(text.lower()))


def _near(word: str, vocabulary: frozenset[str]) -> bool:
    if word in vocabulary:
        return True
    return len(word) >= 5 and any(abs(len(v) - len(word)) <= 2 and SequenceMatcher(None, word, v).ratio() >= 0.8
                                  for v in vocabulary)


def worth_a_recheck(text: str, words: LanguageData) -> bool:
    """Short, not a command, and naming the command vocabulary (or only a few letters): hear it again."""
    if not words.command_prompt:
        return False
    tokens = _WORD_RE.findall(text.lower())
    if not tokens or len(tokens) > MAX_WORDS:
        return False
    return len(_letters(text)) <= GARBLED_LETTERS or any(_near(t, words.command_words) for t in tokens)


def _without(text: str, skip_words: tuple[str, ...]) -> str:
    """The words the grammar matches: its skip words ("okay", "please", "can you") out."""
    text = text.lower()
    for phrase in skip_words:
        text = re.sub(rf"\b{re.escape(phrase.lower())}\b", " ", text)
    return text


def similarity(a: str, b: str, skip_words: tuple[str, ...] = ()) -> float:
    """Letters in common, skip words left out: "Okay" is not like "Okay, stop", whose command is "stop"."""
    return SequenceMatcher(None, _letters(_without(a, skip_words)), _letters(_without(b, skip_words))).ratio()


def pick(first: str, second: str, parse: Callable[[str], CommandMatch | None],
         skip_words: tuple[str, ...] = ()) -> Recheck:
    """The command in the prompted pass that reads most like the first: the whole text, or one clause of it (a
    prompted Whisper repeats itself, "volume up, volume up", or starts on a prompt word, "Silence, unmute").
    skip_words: the grammar's, which it matches through, so they never make two texts alike."""
    best = Recheck(heard=second)
    clauses = [second] + [c for c in _CLAUSE_RE.split(second) if c.strip()]
    for clause in clauses:
        command = parse(clause)
        score = similarity(first, clause, skip_words)
        if command is not None and score >= MIN_SIMILARITY and score > best.similarity:
            best = Recheck(heard=second, text=clause.strip(" ,"), command=command, similarity=score)
    return best
