"""What VoxLens says, per language, as data: voxlens/phrases/<lang>.yaml.

Why data: the device's confirmations, the tools' answers and the error lines must exist in every
language the assistant speaks, and a translator should edit a file, not code. English is complete
and the fallback: a phrase missing in another language is said in English (logged once); a key
missing in English is a bug and raises. Two ways to ask:
  say(lang, "timer_set", duration="5 minutes")  - a named template with values
  translate(lang, "Sorry, something went wrong.") - a fixed English line (gettext-style: its English
    text is its key), for lines code already holds as constants.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

PHRASES_DIR = Path(__file__).resolve().parent / "phrases"
FALLBACK = "en"


class PhraseError(ValueError):
    """A phrase file is malformed or a key is unknown; the message names the file or key and the fix."""


def primary(language: str) -> str:
    """'de-AT' -> 'de'; '' -> 'en'."""
    return language.replace("_", "-").split("-")[0].strip().lower() or FALLBACK


def languages() -> list[str]:
    return sorted(p.stem for p in PHRASES_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=32)
def phrasebook(language: str, directory: Path = PHRASES_DIR) -> dict[str, Any]:
    """One language's phrases, read once. {} when the language has no file (English answers)."""
    path = directory / f"{language}.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PhraseError(f"phrase file {path} is malformed: {exc}; fix its YAML") from exc
    if not isinstance(data, dict):
        raise PhraseError(f"phrase file {path} is malformed: it must map phrase keys to text")
    for key, value in data.items():
        if not isinstance(value, (str, list, dict)):
            raise PhraseError(f"phrase file {path}: {key!r} is {type(value).__name__}; "
                              "give text, a list (weekdays) or a mapping (weather codes)")
    return data


@functools.lru_cache(maxsize=256)
def _warn_missing(language: str, key: str) -> None:
    log.warning("no %r phrase in %s.yaml; saying it in English (add it to %s)", key, language,
                PHRASES_DIR / f"{language}.yaml")


def phrase(language: str, key: str) -> Any:
    """The raw entry for key (text, list or mapping) in the language, else English."""
    language = primary(language)
    book = phrasebook(language)
    if key in book:
        return book[key]
    english = phrasebook(FALLBACK)
    if key not in english:
        raise PhraseError(f"unknown phrase {key!r}; add it to {PHRASES_DIR / 'en.yaml'}")
    if language != FALLBACK:
        _warn_missing(language, key)
    return english[key]


def say(language: str, key: str, **values: Any) -> str:
    """A template filled with values; the first letter capitalised (a name may start the sentence)."""
    template = phrase(language, key)
    try:
        text = str(template).format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise PhraseError(f"phrase {key!r} in {primary(language)}.yaml names a value it is not given ({exc}); "
                          f"it may use {sorted(values)}") from exc
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=32)
def _by_english_text(language: str) -> dict[str, str]:
    english = phrasebook(FALLBACK)
    book = phrasebook(language)
    return {text: book[key] for key, text in english.items() if isinstance(text, str) and isinstance(book.get(key), str)}


def translate(language: str, english_line: str) -> str:
    """A fixed English line in the language, by its English text; the line itself if no translation exists."""
    language = primary(language)
    if language == FALLBACK:
        return english_line
    return _by_english_text(language).get(english_line, english_line)


def words(language: str, key: str) -> list[str]:
    """A list phrase, e.g. the weekdays (Monday first) or the months."""
    value = phrase(language, key)
    if not isinstance(value, list):
        raise PhraseError(f"phrase {key!r} in {primary(language)}.yaml must be a list")
    return [str(v) for v in value]


def entry(language: str, key: str, item: Any, default: str) -> str:
    """One item of a mapping phrase (a weather code's words), else English's, else default."""
    for book in (phrase(language, key), phrasebook(FALLBACK).get(key) or {}):
        if isinstance(book, dict) and item in book:
            return str(book[item])
    return default
