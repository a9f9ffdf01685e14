"""The local command grammar: what the user said -> a device command, a typed gateway intent, or a query.

Why: device commands (volume, photo, timers, time...) must resolve on the device in
milliseconds with no network, and weather/time-in-city questions should reach the
gateway already typed so it can call the tool directly. The templates are data
(device/grammar/<language>.yaml) matched by hassil, so a language is a data file,
not code. Transcripts come from whisper, so matching tolerates digits or number
words, filler words, punctuation and case.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import yaml
from hassil.intents import Intents
from hassil.recognize import RecognizeResult, recognize_best
from hassil.sample import sample_intents

from protos import assistant_pb2 as pb
from protos.enums import PREFERENCES

log = logging.getLogger(__name__)

GRAMMAR_DIR = Path(__file__).resolve().parent / "grammar"
MAX_TEXT_CHARS = 300  # longer than any command; longer text is a question, never parsed

SlotScalar = int | float | str
Kind = Literal["command", "intent", "query", "empty"]

# Words a partial transcript may end on while the user is still saying a number
# ("twenty" -> "twenty five"): such a partial is not yet a complete command.
_OPEN_NUMBER_WORDS = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
                      "hundred", "and", "point", "a"}
_WORD_RE = re.compile(r"[\w%']+")
_INNER_HYPHEN_RE = re.compile(r"(?<=\w)-(?=\w)")
# A free-text timer name that is really a determiner ("my timer") is no name.
_NOT_A_NAME = {"my", "the", "a", "an", "this", "that", "your", "our"}


class GrammarError(ValueError):
    """A grammar file is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class CommandMatch:
    """A device command the grammar recognised, e.g. name="volume_set", slots={"level": 25}."""

    name: str
    slots: Mapping[str, SlotScalar] = field(default_factory=dict)
    text: str = ""  # the transcript it came from


@dataclass(frozen=True)
class GatewayIntent:
    """A typed intent for the gateway (names and slots agreed in INTERFACES.md)."""

    name: str
    slots: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> pb.Intent:
        msg = pb.Intent(name=self.name)
        for key, value in self.slots.items():
            msg.slots[key].text = value
        return msg


@dataclass(frozen=True)
class Understanding:
    """Everything the engine needs from one transcript."""

    text: str                                   # what to send as Query.text (preference phrase stripped)
    command: CommandMatch | None = None         # answered on the device
    intent: GatewayIntent | None = None         # typed intent for the gateway
    route_preference: int = pb.ROUTE_PREFERENCE_AUTO

    @property
    def kind(self) -> Kind:
        if self.command is not None:
            return "command"
        if self.intent is not None:
            return "intent"
        return "query" if self.text else "empty"


def clean_transcript(text: str) -> str:
    """Whisper's habits off: surrounding space, a trailing full stop, doubled spaces."""
    text = " ".join(text.split())
    return text.strip(" .…")


class Grammar:
    """One language's templates, loaded once; recognition is pure and thread-safe."""

    def __init__(self, language: str = "en", path: str | Path | None = None) -> None:
        self.path = Path(path) if path else GRAMMAR_DIR / f"{language}.yaml"
        self.intents = _load_intents(self.path)
        self.language = self.intents.language
        self._warm_number_words()
        self._continuations = _continuations(self.intents)

    def _warm_number_words(self) -> None:
        """Build hassil's number-word tries now (hundreds of ms) instead of on the first command."""
        for sample in ("set the volume to twenty", "set a timer for one minute",
                       "set a timer for two hours", "set a timer for ten seconds"):
            self._recognize(sample)

    def _recognize(self, text: str) -> RecognizeResult | None:
        # "2-minute" -> "2 minute": whisper hyphenates compounds that the templates spell with a space
        return recognize_best(_INNER_HYPHEN_RE.sub(" ", text), self.intents, language=self.language)

    def understand(self, text: str) -> Understanding:
        """Classify one final transcript: device command, gateway intent, or free query."""
        text = clean_transcript(text)
        if not text:
            return Understanding(text="")
        if len(text) > MAX_TEXT_CHARS:
            return Understanding(text=text)
        result = self._recognize(text)
        if result is None:
            return Understanding(text=text)
        kind = _metadata(result).get("kind")
        if kind == "command":
            return Understanding(text=text, command=_command(result, text))
        if kind == "gateway":
            return Understanding(text=text, intent=_gateway_intent(result))
        if kind == "route":
            return self._with_preference(result, text)
        raise GrammarError(f"{self.path}: intent {result.intent.name!r} has metadata.kind={kind!r}; "
                           "use command, gateway or route")

    def _with_preference(self, result: RecognizeResult, text: str) -> Understanding:
        """'ask the big model X' -> X with preference BIG; X may still be a typed gateway intent."""
        preference = PREFERENCES[_metadata(result)["preference"]]
        query_entity = result.entities.get("query")
        rest = clean_transcript(str(query_entity.text if query_entity else "")).strip(" ,")
        if not rest:
            return Understanding(text=text, route_preference=preference)
        inner = self.understand(rest)
        # The user asked for a model explicitly: never answer it with a device command.
        return Understanding(text=inner.text, intent=inner.intent, route_preference=preference)

    def parse(self, text: str) -> CommandMatch | None:
        return self.understand(text).command

    def to_intent(self, text: str) -> GatewayIntent | None:
        return self.understand(text).intent

    def is_complete(self, partial_text: str) -> bool:
        """True when a partial transcript already is a whole device command, so endpointing may end early.

        Conservative: a trailing open number ("set volume to twenty" may become "twenty five")
        or a trailing free-text slot (a timer name still being spoken) is not complete.
        """
        text = clean_transcript(partial_text)
        if not text or len(text) > MAX_TEXT_CHARS:
            return False
        words = _WORD_RE.findall(text.lower())
        if not words or words[-1] in _OPEN_NUMBER_WORDS:
            return False
        if re.fullmatch(r"[1-9]0", words[-1]):
            return False
        result = self._recognize(text)
        if result is None or _metadata(result).get("kind") != "command":
            return False
        if any(e.is_wildcard for e in result.entities_list):
            return False
        # "stop" may become "stop recording", "turn the volume up" "... up to 80": wait for those
        longer = self._continuations.get(_match_words(text, self.intents.skip_words), set())
        return not (longer - {result.intent.name})


def _match_words(text: str, skip_words: list[str]) -> str:
    """Lower-case words without punctuation or skip words, as the continuation table keys them."""
    words = " ".join(_WORD_RE.findall(_INNER_HYPHEN_RE.sub(" ", text.lower())))
    for skip in sorted(skip_words, key=len, reverse=True):
        words = re.sub(rf"(?:^|(?<= )){re.escape(skip)}(?= |$)", "", words)
    return " ".join(words.split())


def _continuations(intents: Intents) -> dict[str, set[str]]:
    """Every word-prefix of every device-command sentence -> the commands whose sentences go on past it.

    Built once from hassil's own sampler (ranges and wildcards left as placeholders), so the
    early-endpoint check follows the templates instead of a hand-kept list. Gateway intents are
    left out on purpose: "what time is it" may grow into "... in Tokyo", but people say that
    fluently, and waiting for it would slow down the commonest command.
    """
    commands = {name for name, intent in intents.intents.items()
                if any((d.metadata or {}).get("kind") == "command" for d in intent.data)}
    table: dict[str, set[str]] = {}
    heads = {(name, *sentence.partition("{")[:2])
             for name, sentence in sample_intents(intents, expand_ranges=False, exclude_sentences_with_wildcards=False,
                                                  intent_names=commands)}
    for name, literal, brace in heads:
        words = _match_words(literal, []).split()
        # every prefix shorter than the sentence; a prefix ending right before a slot is one too
        for end in range(1, len(words) + (1 if brace else 0)):
            table.setdefault(" ".join(words[:end]), set()).add(name)
    return table


def _load_intents(path: Path) -> Intents:
    if not path.is_file():
        available = sorted(p.stem for p in GRAMMAR_DIR.glob("*.yaml"))
        raise GrammarError(f"grammar file {path} does not exist; languages available: {available} "
                           f"(add {path.name} to {GRAMMAR_DIR} to support it)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        intents = Intents.from_dict(data)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise GrammarError(f"grammar file {path} is malformed: {exc}") from exc
    for intent in intents.intents.values():
        for data_block in intent.data:
            if (data_block.metadata or {}).get("kind") not in ("command", "gateway", "route"):
                raise GrammarError(f"{path}: intent {intent.name!r} needs metadata.kind: command|gateway|route")
    return intents


def _metadata(result: RecognizeResult) -> dict:
    return dict(result.intent_metadata or {})


def _number(value: object) -> int | float:
    number = float(value)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else number


def _command(result: RecognizeResult, text: str) -> CommandMatch:
    raw = {name: entity.value for name, entity in result.entities.items()}
    slots: dict[str, SlotScalar] = {}
    if "level" in raw:
        slots["level"] = max(0, min(100, _number(raw["level"])))
    if "timer_name" in raw:
        name = clean_transcript(str(raw["timer_name"])).strip(" ,").lower()
        if name and name not in _NOT_A_NAME:
            slots["name"] = name
    if result.intent.name == "timer_set":
        slots["duration_s"] = _duration_s(raw)
    return CommandMatch(name=result.intent.name, slots=slots, text=text)


def _duration_s(raw: Mapping[str, object]) -> int | float:
    """hours/minutes/seconds (+ "and a half", or fixed phrases like "half a minute") -> seconds."""
    hours = _number(raw.get("hours", 0)) + _number(raw.get("hours_half", 0))
    minutes = _number(raw.get("minutes", 0)) + _number(raw.get("minutes_half", 0))
    total = hours * 3600 + minutes * 60 + _number(raw.get("seconds", 0)) + _number(raw.get("fixed_s", 0))
    return _number(total)


def _gateway_intent(result: RecognizeResult) -> GatewayIntent:
    slots: dict[str, str] = {}
    for name, entity in result.entities.items():
        value = clean_transcript(str(entity.value)).strip(" ,?!")
        if value:
            slots[name] = value
    return GatewayIntent(name=result.intent.name, slots=slots)


@functools.lru_cache(maxsize=8)
def load_grammar(language: str = "en") -> Grammar:
    """The shared, loaded-once grammar for a language."""
    return Grammar(language)


def understand(text: str, language: str = "en") -> Understanding:
    return load_grammar(language).understand(text)


def parse(text: str, language: str = "en") -> CommandMatch | None:
    """A device command, or None (INTERFACES.md)."""
    return load_grammar(language).parse(text)


def to_intent(text: str, language: str = "en") -> GatewayIntent | None:
    """A typed gateway intent, or None (INTERFACES.md)."""
    return load_grammar(language).to_intent(text)


def is_complete(partial_text: str, language: str = "en") -> bool:
    return load_grammar(language).is_complete(partial_text)
