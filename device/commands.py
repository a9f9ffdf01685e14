"""The local command grammar: what the user said -> a device command, a typed gateway intent, or a query.

Why: device commands (volume, photo, timers, time...) must resolve on the device in
milliseconds with no network, and weather/time-in-city questions should reach the
gateway already typed so it can call the tool directly. The templates are data
(device/grammar/<language>.yaml) matched by hassil, so a language is a data file,
not code: Home Assistant's community templates (device/ha_intents.py) for timers, time,
date, weather and volume, and our own file for what HA lacks (photo, video, brightness,
battery, a city's time, route phrases). Transcripts come from whisper, so matching
tolerates digits or number words, filler words, punctuation and case.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from hassil.intents import IntentData, Intents
from hassil.recognize import RecognizeResult, recognize_best
from hassil.sample import sample_intents

from device.ha_intents import ha_grammar, ha_languages
from protos import assistant_pb2 as pb
from protos.enums import PREFERENCES

log = logging.getLogger(__name__)

GRAMMAR_DIR = Path(__file__).resolve().parent / "grammar"
MAX_TEXT_CHARS = 300  # longer than any command; longer text is a question, never parsed

SlotScalar = int | float | str
Kind = Literal["command", "intent", "query", "empty"]
Completion = Literal["", "whole", "closed"]   # Grammar.completion: not a command yet / one that may go on / one that cannot

_WORD_RE = re.compile(r"[\w%']+")
_INNER_HYPHEN_RE = re.compile(r"(?<=\w)-(?=\w)")
_SHAPE_TOKEN_RE = re.compile(r"\{\w+\}|[\w%']+")   # a template's words and its {slot}s


class GrammarError(ValueError):
    """A grammar file is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class CommandMatch:
    """A device command the grammar recognised, e.g. name="volume_set", slots={"level": 25}."""

    name: str
    slots: Mapping[str, SlotScalar] = field(default_factory=dict)
    text: str = ""  # the transcript it came from
    language: str = "en"  # the grammar's: the confirmation is said in it


@dataclass(frozen=True)
class LanguageData:
    """The per-language word lists the matcher needs beside hassil's templates (the `voxlens:` key of a grammar)."""

    open_number_words: frozenset[str] = frozenset()  # a partial ending on one may still grow ("twenty" -> "twenty five")
    not_a_name: frozenset[str] = frozenset()         # a timer "name" that is really a determiner ("my timer")
    warm: tuple[str, ...] = ()                        # sentences matched at load, to build hassil's number tries then
    command_prompt: str = ""   # Whisper's prompt for a second look at a near-miss command (device/command_recheck.py)
    command_words: frozenset[str] = frozenset()       # words that make a short transcript worth that second look

    @classmethod
    def from_dict(cls, data: Mapping) -> LanguageData:
        return cls(frozenset(w.lower() for w in data.get("open_number_words", ())),
                   frozenset(w.lower() for w in data.get("not_a_name", ())), tuple(data.get("warm", ())),
                   str(data.get("command_prompt", "")),
                   frozenset(w.lower() for w in data.get("command_words", ())))


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
        self.intents, self.words = _load_intents(language, self.path)
        self.language = self.intents.language
        self._warm_number_words()
        self._continuations, self._growing = _continuations(self.intents)

    def _warm_number_words(self) -> None:
        """Build hassil's number-word tries now (hundreds of ms) instead of on the first command."""
        for sample in self.words.warm:
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
            return Understanding(text=text, command=_command(result, text, self.language, self.words.not_a_name))
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

    @property
    def skip_words(self) -> tuple[str, ...]:
        """Words hassil matches through ("please", "can you"), longest first."""
        return tuple(sorted(self.intents.skip_words, key=len, reverse=True))

    def to_intent(self, text: str) -> GatewayIntent | None:
        return self.understand(text).intent

    def _ends_open(self, text: str, last_word: str) -> bool:
        return _open_end(text, last_word, self.words.open_number_words)

    def is_complete(self, partial_text: str) -> bool:
        """True when a partial transcript already is a whole device command, so endpointing may end early."""
        return bool(self.completion(partial_text))

    def completion(self, partial_text: str) -> Completion:
        """How whole a partial transcript is as a device command: "" (not one yet), "whole" (one, but the
        templates go on past these words: "cancel the timer | called tea", "mute | the sound") or "closed"
        (nothing in the templates follows: "volume up", "repeat that"). A closed command ends on a shorter
        pause ([vad] closed_command_silence_ms): what the user might add could not change the command.

        Conservative: a trailing open number ("set volume to twenty" may become "twenty five")
        or a trailing free-text slot (a timer name still being spoken) is not complete.
        """
        text = clean_transcript(partial_text)
        if not text or len(text) > MAX_TEXT_CHARS:
            return ""
        words = _WORD_RE.findall(text.lower())
        if not words or self._ends_open(text, words[-1]):
            return ""
        if re.fullmatch(r"[1-9]0", words[-1]):
            return ""
        result = self._recognize(text)
        if result is None or _metadata(result).get("kind") != "command":
            return ""
        if any(e.is_wildcard for e in result.entities_list):
            return ""
        # "stop" may become "stop recording", "turn the volume up" "... up to 80": wait for those
        longer = self._continuations.get(_match_words(text, self.intents.skip_words), set())
        if longer - {result.intent.name}:
            return ""
        if not _own_command(result.intent_data):   # Home Assistant's templates are not in the table: may grow
            return "whole"
        shape = _shape(text, result, self.intents.skip_words)
        return "whole" if shape is None or shape in self._growing else "closed"


def _open_end(text: str, last_word: str, open_words: frozenset[str]) -> bool:
    """The partial ends on a word that may grow ("twenty" -> "twenty five", "two hours" -> "... and ten minutes").
    Thai writes no spaces between words: there the end of the run is compared."""
    if last_word in open_words:
        return True
    run = text.strip().lower()  # not the last \w+ word: Thai's vowel marks are not \w and would split it
    return " " not in run and any(run.endswith(w) for w in open_words if len(w) > 1)


def _match_words(text: str, skip_words: list[str]) -> str:
    """Lower-case words without punctuation or skip words, as the continuation table keys them."""
    return _drop_skip_words(" ".join(_WORD_RE.findall(_INNER_HYPHEN_RE.sub(" ", text.lower()))), skip_words)


def _drop_skip_words(words: str, skip_words: Iterable[str]) -> str:
    for skip in sorted(skip_words, key=len, reverse=True):
        words = re.sub(rf"(?:^|(?<= )){re.escape(skip)}(?= |$)", "", words)
    return " ".join(words.split())


def _shape(text: str, result: RecognizeResult, skip_words: list[str]) -> str | None:
    """The matched words with each slot's words as its {name} ("set a timer for {minutes} minutes"), as the
    growing-shape table keys them; None when a slot's words cannot be found in the text (then: may grow)."""
    words = _match_words(text, skip_words).split()
    shape: list[str] = []
    at = 0
    for entity in result.entities_list:
        value = _match_words(str(entity.text), []).split()
        start = next((i for i in range(at, len(words) - len(value) + 1) if value and words[i:i + len(value)] == value),
                     None)
        if start is None:
            return None
        shape += [*words[at:start], f"{{{entity.name}}}"]
        at = start + len(value)
    return " ".join(shape + words[at:])


def _continuations(intents: Intents) -> tuple[dict[str, set[str]], frozenset[str]]:
    """Every word-prefix of every device-command sentence -> the commands whose sentences go on past it; and
    every proper prefix with its slots as {name} ("set a timer for {minutes} minutes", which "called
    {timer_name}" may follow), for `completion`'s "closed".

    Built once from hassil's own sampler (ranges and wildcards left as placeholders), so the
    early-endpoint check follows the templates instead of a hand-kept list. Gateway intents are
    left out on purpose: "what time is it" may grow into "... in Tokyo", but people say that
    fluently, and waiting for it would slow down the commonest command.
    """
    # Our own templates only: Home Assistant's expand to hundreds of thousands of sentences (seconds to sample);
    # its commands are whole when they match, and ours still hold one back that may grow into one of ours.
    own = {name: dataclasses.replace(intent, data=[d for d in intent.data if _own_command(d)])
           for name, intent in intents.intents.items()}
    own = {name: intent for name, intent in own.items() if intent.data}
    table: dict[str, set[str]] = {}
    growing: set[str] = set()
    sentences = list(sample_intents(dataclasses.replace(intents, intents=own), expand_ranges=False,
                                    exclude_sentences_with_wildcards=False))
    for name, literal, brace in {(name, *sentence.partition("{")[:2]) for name, sentence in sentences}:
        words = _match_words(literal, []).split()
        # every prefix shorter than the sentence; a prefix ending right before a slot is one too
        for end in range(1, len(words) + (1 if brace else 0)):
            table.setdefault(" ".join(words[:end]), set()).add(name)
    for _name, sentence in sentences:
        tokens = _drop_skip_words(" ".join(_SHAPE_TOKEN_RE.findall(_INNER_HYPHEN_RE.sub(" ", sentence.lower()))),
                                  intents.skip_words).split()
        growing.update(" ".join(tokens[:end]) for end in range(1, len(tokens)))
    return table, frozenset(growing)


def available_languages() -> list[str]:
    """Languages with our own grammar file or Home Assistant's templates."""
    own = {p.stem for p in GRAMMAR_DIR.glob("*.yaml") if p.stem != "home_assistant"}
    return sorted(own | ha_languages())


def _read_own(path: Path, language: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise GrammarError(f"grammar file {path} is malformed: {exc}") from exc
    if not isinstance(data, dict) or data.get("language") != language:
        raise GrammarError(f"grammar file {path} is malformed: it needs `language: {language}` and `intents:`")
    return data


def _merge(base: dict, own: dict, path: Path) -> dict:
    """Our templates on top of HA's: intents add data blocks; a rule or list both define is an error, not a
    silent override (HA's templates name their own rules, and ours would change what they match)."""
    for key in ("lists", "expansion_rules"):
        both = sorted(set(base.get(key) or {}) & set(own.get(key) or {}))
        if both:
            raise GrammarError(f"{path}: {key} {both} are also Home Assistant's; rename them in {path.name}")
        base[key] = {**(base.get(key) or {}), **(own.get(key) or {})}
    base["skip_words"] = list(dict.fromkeys([*(base.get("skip_words") or []), *(own.get("skip_words") or [])]))
    for name, intent in (own.get("intents") or {}).items():
        base["intents"].setdefault(name, {"data": []})["data"].extend(intent.get("data", []))
    return base


def _own_command(data: IntentData) -> bool:
    metadata = data.metadata or {}
    return metadata.get("kind") == "command" and "home_assistant" not in metadata


def _load_intents(language: str, path: Path) -> tuple[Intents, LanguageData]:
    own = _read_own(path, language)
    words = LanguageData.from_dict((own or {}).pop("voxlens", None) or {})
    use_ha = (own or {}).pop("home_assistant", True)
    base = ha_grammar(language) if use_ha else None
    if own is None and base is None:
        raise GrammarError(f"no grammar for language {language!r}: {path} does not exist and Home Assistant's "
                           f"templates lack it; languages available: {available_languages()} "
                           f"(add {path.name} to {GRAMMAR_DIR} to support it)")
    data = own if base is None else _merge(base, own or {}, path)
    try:
        intents = Intents.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise GrammarError(f"grammar file {path} is malformed: {exc}") from exc
    for intent in intents.intents.values():
        for data_block in intent.data:
            if (data_block.metadata or {}).get("kind") not in ("command", "gateway", "route"):
                raise GrammarError(f"{path}: intent {intent.name!r} needs metadata.kind: command|gateway|route")
    return intents, words


def _metadata(result: RecognizeResult) -> dict:
    return dict(result.intent_metadata or {})


def _number(value: object) -> int | float:
    number = float(value)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else number


def _command(result: RecognizeResult, text: str, language: str, not_a_name: frozenset[str]) -> CommandMatch:
    raw = {name: entity.value for name, entity in result.entities.items()}
    name = result.intent.name
    choose = _metadata(result).get("choose")
    if choose:  # one HA intent that is two of ours: "louder" and "quieter" are HassSetVolumeRelative's up/down
        name = choose["intents"].get(str(raw.get(choose["slot"])), name)
    slots: dict[str, SlotScalar] = {}
    if "level" in raw:
        slots["level"] = max(0, min(100, _number(raw["level"])))
    if "timer_name" in raw:
        timer_name = clean_transcript(str(raw["timer_name"])).strip(" ,").lower()
        if timer_name and timer_name not in not_a_name:
            slots["name"] = timer_name
    if name == "timer_set":
        slots["duration_s"] = _duration_s(raw)
    return CommandMatch(name=name, slots=slots, text=text, language=language)


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


@functools.lru_cache(maxsize=16)
def load_grammar(language: str = "en") -> Grammar:
    """The shared, loaded-once grammar for a language."""
    return Grammar(language)


def grammar_for(language: str, default: Grammar) -> Grammar:
    """The grammar of an utterance's language (loaded on first use), else `default` (a language without one
    was named at start-up by `missing_grammar`)."""
    language = language.replace("_", "-").split("-")[0].lower()
    if not language or language == default.language or language in _NO_GRAMMAR:
        return default
    try:
        return load_grammar(language)
    except GrammarError as exc:
        _NO_GRAMMAR.add(language)  # said once, not on every utterance
        log.warning("%s; understanding it with the %s grammar", exc, default.language)
        return default


_NO_GRAMMAR: set[str] = set()


def grammar_gaps(languages: Iterable[str]) -> list[str]:
    """The start-up messages for configured languages whose command grammar is missing or partial."""
    return [gap for language in sorted({lang for lang in languages if lang}) if (gap := missing_grammar(language))]


def missing_grammar(language: str) -> str | None:
    """What is missing for a configured language, with the fix; None when it has a full grammar."""
    own = GRAMMAR_DIR / f"{language}.yaml"
    if own.is_file():
        return None
    if language in ha_languages():
        return (f"language {language!r}: timers, time, weather and volume come from Home Assistant's templates, "
                f"but photo, video, brightness and battery commands have no grammar; add {own}")
    return (f"language {language!r} has no command grammar (neither {own} nor Home Assistant's templates); "
            f"its commands go to the gateway as questions; add {own} (languages with one: {available_languages()})")


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


def completion(partial_text: str, language: str = "en") -> Completion:
    return load_grammar(language).completion(partial_text)
