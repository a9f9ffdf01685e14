"""Home Assistant's sentence templates (PyPI home-assistant-intents) as VoxLens grammar data.

Why: a community keeps timers, time, date, weather and volume sentences for dozens of languages,
with their number words and phrasings; writing eight grammars by hand would be worse and would rot.
device/grammar/home_assistant.yaml says which HA intents mean what ours mean and which of their
data blocks need no house (no {name} or {area} of an entity); this module turns those blocks into a
hassil dict with VoxLens's intent and slot names, which device/commands.py merges with our own
device/grammar/<lang>.yaml for what HA lacks (photo, video, brightness, battery...).
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml

MAP_PATH = Path(__file__).resolve().parent / "grammar" / "home_assistant.yaml"
_SLOT_RE = re.compile(r"\{(\w+)(?::(\w+))?\}")


@functools.lru_cache(maxsize=1)
def _mapping(path: Path = MAP_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def ha_languages() -> frozenset[str]:
    """Languages home-assistant-intents carries templates for."""
    from home_assistant_intents import get_languages
    return frozenset(get_languages())


def _rename(sentence: str, renames: dict[str, str], lists: set[str]) -> str:
    """{timer_name:name} -> {timer_name:timer_name}; {name} -> {city} when city is a list, else {name:city}."""
    def sub(match: re.Match) -> str:
        list_name, slot = match.group(1), match.group(2) or match.group(1)
        new = renames.get(slot)
        if new is None:
            return match.group(0)
        if match.group(2) is None and new in lists:
            return "{" + new + "}"
        return "{" + list_name + ":" + new + "}"
    return _SLOT_RE.sub(sub, sentence)


def _blocks(ha_name: str, spec: dict[str, Any], intent: dict[str, Any], lists: set[str]):
    """(VoxLens intent name, hassil data block) for every kept block of one HA intent."""
    renames = spec.get("slots") or {}
    for block in intent.get("data", []):
        if (block.get("metadata") or {}).get("slot_combination", "default") not in spec["keep"]:
            continue
        target, metadata = spec["intent"], {"kind": spec["kind"], "home_assistant": ha_name}
        fixed = {renames.get(k, k): v for k, v in (block.get("slots") or {}).items()}
        for slot, choices in (spec.get("by_slot") or {}).items():
            if slot in fixed:  # a block HA already fixed to one direction ("louder" = up)
                target = choices[fixed.pop(slot)]
            else:
                metadata["choose"] = {"slot": slot, "intents": dict(choices)}
        new: dict[str, Any] = {"sentences": [_rename(s, renames, lists) for s in block["sentences"]],
                               "metadata": metadata}
        if fixed:
            new["slots"] = fixed
        for key in ("expansion_rules", "lists", "settings"):
            if key in block:
                new[key] = copy.deepcopy(block[key])
        yield target, new


@functools.lru_cache(maxsize=16)
def _ha_grammar(language: str) -> dict[str, Any] | None:
    from home_assistant_intents import get_intents
    data = get_intents(language)
    if data is None:
        return None
    mapping = _mapping()
    lists = copy.deepcopy(data.get("lists") or {})
    for name, body in mapping["lists"].items():
        lists.setdefault(name, body)
    intents: dict[str, dict[str, list]] = {}
    for ha_name, spec in mapping["intents"].items():
        if ha_name in data["intents"]:
            for target, block in _blocks(ha_name, spec, data["intents"][ha_name], set(lists)):
                intents.setdefault(target, {"data": []})["data"].append(block)
    return {"language": language, "settings": copy.deepcopy(data.get("settings") or {}),
            "skip_words": list(data.get("skip_words") or []), "lists": lists,
            "expansion_rules": copy.deepcopy(data.get("expansion_rules") or {}), "intents": intents}


def ha_grammar(language: str) -> dict[str, Any] | None:
    """HA's kept templates for a language as a hassil dict with VoxLens names, or None if HA has none for it.
    A fresh copy each call: the caller merges into it."""
    grammar = _ha_grammar(language)
    return copy.deepcopy(grammar) if grammar is not None else None
