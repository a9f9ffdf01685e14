"""Local commands in the eight languages of Llama 3.1, at the text level (issue 14).

Each language's "set a timer for five minutes", "what time is it" and a question (the weather in a city),
as a native speaker would say them, several phrasings each, with number words and digits: the right
intent and slots. Home Assistant's templates (home-assistant-intents) give timers, time, date, weather and
volume; device/grammar/<lang>.yaml the rest (photo, video, brightness, battery). Load and match times per
language are printed (pytest -s), never asserted.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from device.commands import (
    Grammar,
    GrammarError,
    available_languages,
    grammar_for,
    grammar_gaps,
    load_grammar,
    missing_grammar,
)

LANGUAGES = ("en", "de", "fr", "it", "pt", "hi", "es", "th")

TIMER_5_MIN = {
    "en": ["Set a timer for five minutes", "set a 5 minute timer", "timer for 5 minutes"],
    "de": ["Stell einen Timer für fünf Minuten", "Stelle einen Timer auf fünf Minuten", "Timer für 5 Minuten",
           "fünf Minuten Timer"],
    "fr": ["Mets un minuteur de cinq minutes", "Règle un minuteur de 5 minutes", "minuteur de cinq minutes"],
    "it": ["Imposta un timer di cinque minuti", "Metti un timer per 5 minuti", "timer di cinque minuti"],
    "pt": ["Define um temporizador de cinco minutos", "Coloca um temporizador para 5 minutos",
           "temporizador de cinco minutos"],
    "hi": ["पांच मिनट का टाइमर लगाओ", "पाँच मिनट का टाइमर लगा दो", "5 मिनट का टाइमर लगाओ",
           "पांच मिनट के लिए टाइमर सेट करो"],
    "es": ["Pon un temporizador de cinco minutos", "Pon un temporizador para 5 minutos", "temporizador de cinco minutos"],
    "th": ["ตั้งเวลาห้านาที", "ตั้งเวลา 5 นาที", "จับเวลาห้านาที", "ตั้งนาฬิกาจับเวลา 5 นาที"],
}
WHAT_TIME = {
    "en": ["What time is it?", "what's the time"],
    "de": ["Wie spät ist es?", "Wie viel Uhr ist es"],
    "fr": ["Quelle heure est-il ?", "Il est quelle heure"],
    "it": ["Che ore sono?", "Che ora è"],
    "pt": ["Que horas são?", "Que horas são"],
    "hi": ["कितने बजे हैं", "समय क्या हुआ है", "अभी क्या टाइम हो रहा है"],
    "es": ["¿Qué hora es?", "Qué hora es"],
    "th": ["กี่โมงแล้ว", "ตอนนี้กี่โมง"],
}
# The question: the weather in a city, a typed intent for the gateway with the city as its slot.
WEATHER_IN = {
    "en": [("What's the weather in Berlin?", "Berlin")],
    "de": [("Wie ist das Wetter in Berlin?", "Berlin"), ("Wie wird das Wetter morgen in Hamburg", "Hamburg")],
    "fr": [("Quel temps fait-il à Paris ?", "Paris"), ("Quelle est la météo à Lyon", "Lyon")],
    "it": [("Che tempo fa a Roma?", "Roma")],
    "pt": [("Como está o tempo em Lisboa?", "Lisboa")],
    "hi": [("दिल्ली का मौसम कैसा है", "दिल्ली")],
    "es": [("¿Qué tiempo hace en Madrid?", "Madrid")],
    "th": [("อากาศที่กรุงเทพเป็นยังไง", "กรุงเทพ")],
}
# What Home Assistant lacks, from our own templates: one per language.
OWN = {
    "de": [("Mach ein Foto", "take_photo"), ("Helligkeit auf 40 Prozent", "brightness_set"), ("Brich den Timer ab", "timer_cancel")],
    "fr": [("Prends une photo", "take_photo"), ("Arrête l'enregistrement", "video_stop")],
    "it": [("Scatta una foto", "take_photo"), ("quanta batteria mi resta", "battery_level")],
    "pt": [("Tira uma foto", "take_photo"), ("Aumenta o volume", "volume_up")],
    "hi": [("फ़ोटो खींचो", "take_photo"), ("आवाज़ बढ़ाओ", "volume_up")],
    "es": [("Haz una foto", "take_photo"), ("Empieza a grabar", "video_start")],
    "th": [("ถ่ายรูป", "take_photo"), ("ยกเลิกการจับเวลา", "timer_cancel")],
}


def _cases(table: dict) -> list:
    return [(lang, item) for lang, items in table.items() for item in items]


@pytest.mark.parametrize("language,text", _cases(TIMER_5_MIN))
def test_a_five_minute_timer(language: str, text: str) -> None:
    command = load_grammar(language).understand(text).command
    assert command is not None and command.name == "timer_set", text
    assert command.slots["duration_s"] == 300 and command.language == language


@pytest.mark.parametrize("language,text", _cases(WHAT_TIME))
def test_what_time_is_it(language: str, text: str) -> None:
    command = load_grammar(language).understand(text).command
    assert command is not None and command.name == "time_now", text


@pytest.mark.parametrize("language,case", _cases(WEATHER_IN))
def test_a_weather_question_is_a_typed_intent_with_its_city(language: str, case: tuple[str, str]) -> None:
    text, city = case
    understanding = load_grammar(language).understand(text)
    assert understanding.intent is not None and understanding.intent.name == "weather", text
    assert understanding.intent.slots["city"] == city


@pytest.mark.parametrize("language,case", _cases(OWN))
def test_what_home_assistant_lacks_comes_from_our_templates(language: str, case: tuple[str, str]) -> None:
    text, name = case
    command = load_grammar(language).understand(text).command
    assert command is not None and command.name == name, text


@pytest.mark.parametrize("language", ["de", "es", "fr"])
def test_volume_up_and_down_from_one_home_assistant_intent(language: str) -> None:
    louder, quieter = {"de": ("lauter", "leiser"), "es": ("sube el volumen", "baja el volumen"),
                       "fr": ("monte le son", "baisse le son")}[language]
    grammar = load_grammar(language)
    assert grammar.parse(louder).name == "volume_up"
    assert grammar.parse(quieter).name == "volume_down"


def test_a_free_question_stays_a_query_in_every_language() -> None:
    questions = {"en": "Who wrote Faust?", "de": "Wer hat den Faust geschrieben?", "fr": "Qui a écrit Les Misérables ?",
                 "it": "Chi ha scritto la Divina Commedia?", "pt": "Quem escreveu Os Lusíadas?",
                 "hi": "गीतांजलि किसने लिखी?", "es": "¿Quién escribió el Quijote?", "th": "ใครเขียนพระอภัยมณี"}
    for language, text in questions.items():
        understanding = load_grammar(language).understand(text)
        assert understanding.kind == "query" and understanding.text, (language, text)


def test_the_engine_picks_the_grammar_of_the_utterance_language() -> None:
    english = load_grammar("en")
    assert grammar_for("de", english).language == "de"
    assert grammar_for("de-AT", english).language == "de"
    assert grammar_for("", english) is english
    assert grammar_for("xx", english) is english  # no grammar: the default, logged


def test_early_endpointing_per_language() -> None:
    german = load_grammar("de")
    assert german.is_complete("Mach ein Foto")
    assert not german.is_complete("Stell die Lautstärke auf zwanzig")  # may become "...zwanzig Prozent"? still open
    assert not german.is_complete("Wie ist das Wetter in Berlin")       # a gateway intent, not a device command
    french = load_grammar("fr")
    assert not french.is_complete("Règle le volume à vingt")            # "vingt" -> "vingt-cinq"
    assert german.is_complete("Timer für zwei Stunden und zehn Minuten")
    assert not german.is_complete("Timer für zwei Stunden")              # "... und zehn Minuten" may follow
    thai = load_grammar("th")                                            # no spaces: the end of the run counts
    assert thai.is_complete("ตั้งเวลาห้านาที")
    assert thai.understand("ตั้งเวลาสองชั่วโมง").command.slots["duration_s"] == 7200
    assert not thai.is_complete("ตั้งเวลาสองชั่วโมง")


def test_missing_languages_name_the_gap_and_the_fix() -> None:
    assert all(missing_grammar(lang) is None for lang in LANGUAGES)
    partial = missing_grammar("nl")  # Home Assistant has Dutch; our photo/video/brightness/battery file does not exist
    assert partial and "nl.yaml" in partial and "photo" in partial
    none = missing_grammar("xx")
    assert none and "xx.yaml" in none and "en" in none
    assert {"de", "th", "nl"} <= set(available_languages())


def test_a_grammar_file_naming_a_home_assistant_rule_is_an_error(tmp_path: Path) -> None:
    clash = tmp_path / "de.yaml"
    clash.write_text("language: de\nexpansion_rules:\n  hier: 'hier'\nintents: {}\n", encoding="utf-8")
    with pytest.raises(GrammarError, match=r"\['hier'\] are also Home Assistant's; rename them"):
        Grammar("de", path=clash)


def test_load_and_match_times_per_language() -> None:
    """Printed, not asserted: each language's grammar loads once, lazily, on its first utterance."""
    rows = []
    for language in LANGUAGES:
        start = time.perf_counter()
        grammar = Grammar(language)
        load_ms = (time.perf_counter() - start) * 1000
        texts = TIMER_5_MIN[language] + WHAT_TIME[language] + [t for t, _ in WEATHER_IN[language]]
        start = time.perf_counter()
        for text in texts:
            grammar.understand(text)
        match_ms = (time.perf_counter() - start) * 1000 / len(texts)
        rows.append(f"{language}: load {load_ms:6.0f} ms, match {match_ms:5.2f} ms/utterance ({len(texts)})")
    print("\n" + "\n".join(rows))
    assert len(rows) == len(LANGUAGES)


def test_grammar_gaps_are_the_start_up_messages_for_configured_languages() -> None:
    assert grammar_gaps(["en", "de", "", "th"]) == []
    gaps = grammar_gaps(["de", "xx", "nl"])
    assert len(gaps) == 2 and "'nl'" in gaps[0] and "'xx'" in gaps[1] and "xx.yaml" in gaps[1]


async def test_the_engine_understands_and_answers_in_the_utterance_language(tmp_path: Path, tts, stt) -> None:
    """Through the real engine, voice output and client: a German command by the German grammar, confirmed in
    German; a German question with the gateway unreachable hears the offline line in German; English still English."""
    from tests.test_engine import Rig

    async with Rig(tmp_path, tts, stt, None) as rig:
        for text, language in (("Stell einen Timer für fünf Minuten", "de"), ("Wer hat den Faust geschrieben?", "de"),
                               ("what time is it", "en")):
            await rig.engine.wake()
            await rig.engine.speech_started()
            await asyncio.wait_for(rig.engine.utterance(text, language=language), 20.0)
        timer, question, english = [e for e in rig.events if e["event"] == "turn"][-3:]
        assert (timer["language"], timer["name"], timer["answer"]) == ("de", "timer_set", "Timer für 5 Minuten gestellt.")
        assert question["outcome"] == "offline" and question["answer"].startswith("Ich erreiche den Assistenten")
        assert english["name"] == "time_now" and english["answer"].startswith("It's ")
