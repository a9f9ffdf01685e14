"""Answers in the user's language (issue 14): phrase files per language, the prompt, the tools, the device.

The phrasing is data (voxlens/phrases/<lang>.yaml); English is complete and the fallback. The gateway
turn runs the real gateway over real gRPC with the Open-Meteo stand-in and no model tier, so the tool's
own template (the German one) is what is said.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device.actions import DeviceActions, spoken_date, spoken_duration, spoken_time
from device.commands import load_grammar
from device.platform import LocalPlatform
from gateway import prompts
from gateway.backends.instant import InstantBackend
from gateway.server import start_gateway
from tests.gateway_support import one_turn, query
from voxlens import phrases
from voxlens.config import Config, replace

LANGUAGES = ("en", "de", "fr", "it", "pt", "hi", "es", "th")
ROOTS = [Path(__file__).resolve().parent.parent / d for d in ("device", "gateway")]
_CALL = re.compile(r"""\b(?:say|_say|phrase|words)\(\s*(?:[\w.]+,\s*|"[a-z]+",\s*)?["']([a-z_]+)["']""")


def test_every_language_has_a_phrase_file_that_loads() -> None:
    assert set(LANGUAGES) <= set(phrases.languages())
    for language in LANGUAGES:
        book = phrases.phrasebook(language)
        assert book, language
        assert len(phrases.words(language, "weekdays")) == 7 and len(phrases.words(language, "months")) == 12


def test_every_key_the_code_uses_exists_in_english() -> None:
    english = phrases.phrasebook("en")
    used = {key for root in ROOTS for path in root.rglob("*.py") for key in _CALL.findall(path.read_text("utf-8"))}
    used -= set(phrases.languages())  # say("en", key): the scan also sees the language
    assert {"volume", "timer_set", "time_in_place", "weather_now", "place_not_found"} <= used  # the scan sees them
    assert used - set(english) == set()


def test_translations_keep_every_value_english_fills_in() -> None:
    english = phrases.phrasebook("en")
    for language in LANGUAGES:
        for key, text in phrases.phrasebook(language).items():
            if isinstance(text, str) and isinstance(english.get(key), str) and key != "clock":  # clock: hour or hour12
                wanted = set(re.findall(r"\{(\w+)", english[key]))
                assert set(re.findall(r"\{(\w+)", text)) <= wanted, (language, key)


def test_a_missing_phrase_falls_back_to_english_and_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    assert phrases.say("xx", "photo_taken") == "Photo taken."
    assert phrases.say("de", "photo_taken") == "Foto gemacht."
    assert phrases.say("de-AT", "photo_taken") == "Foto gemacht."
    assert phrases.translate("fr", "Sorry, something went wrong.") == "Désolé, quelque chose s'est mal passé."
    assert phrases.translate("fr", "a line nobody wrote") == "a line nobody wrote"
    with pytest.raises(phrases.PhraseError, match="unknown phrase 'nope'; add it to .*en.yaml"):
        phrases.say("de", "nope")


def test_a_malformed_phrase_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "zz.yaml").write_text("photo_taken: [unclosed\n", encoding="utf-8")
    with pytest.raises(phrases.PhraseError, match=r"(?s)zz\.yaml is malformed.*fix its YAML"):
        phrases.phrasebook("zz", tmp_path)
    (tmp_path / "yy.yaml").write_text("photo_taken: 3\n", encoding="utf-8")
    with pytest.raises(phrases.PhraseError, match="'photo_taken' is int"):
        phrases.phrasebook("yy", tmp_path)


def test_times_dates_and_durations_in_each_language() -> None:
    at = datetime(2026, 3, 2, 15, 5)
    assert spoken_time(at) == "3:05 PM" and spoken_date(at) == "Monday, March 2, 2026"
    assert spoken_time(at, "de") == "15:05 Uhr" and spoken_date(at, "de") == "Montag, der 2. März 2026"
    assert spoken_date(at, "es") == "lunes, 2 de marzo de 2026"
    assert spoken_duration(90, "fr") == "1 minute 30 secondes" and spoken_duration(7200, "it") == "2 ore"
    for language in LANGUAGES:
        assert "15" in spoken_time(at, language) or "3" in spoken_time(at, language)


@pytest.mark.parametrize("language,expected", [("de", "Timer für 5 Minuten gestellt."),
                                               ("fr", "Minuteur réglé sur 5 minutes."),
                                               ("es", "Temporizador de 5 minutos en marcha."),
                                               ("th", "ตั้งเวลา 5 นาที แล้ว"),
                                               ("en", "Timer set for 5 minutes.")])
@pytest.mark.asyncio(loop_scope="session")
async def test_a_device_command_is_confirmed_in_the_language_it_was_said_in(tmp_path: Path, language: str,
                                                                            expected: str) -> None:
    said = {"de": "Stell einen Timer für fünf Minuten", "fr": "Mets un minuteur de cinq minutes",
            "es": "Pon un temporizador de cinco minutos", "th": "ตั้งเวลาห้านาที", "en": "set a timer for five minutes"}
    platform = LocalPlatform(tmp_path)
    try:
        actions = DeviceActions(platform, "Europe/Berlin", now=lambda tz: datetime(2026, 3, 2, 15, 5, tzinfo=tz))
        command = load_grammar(language).understand(said[language]).command
        assert actions.run(command).speech == expected
        time_now = load_grammar(language).understand({"de": "Wie spät ist es", "fr": "Quelle heure est-il",
                                                      "es": "Qué hora es", "th": "กี่โมงแล้ว",
                                                      "en": "what time is it"}[language]).command
        assert re.search(r"(15|3)\D{1,3}05", actions.run(time_now).speech)
    finally:
        platform.close()


def test_the_prompt_tells_the_model_the_language() -> None:
    german = prompts.system_prompt("Berlin", "Europe/Berlin", "de")
    assert german.startswith(prompts.SYSTEM) and german.endswith("Always answer in German, whatever the language "
                                                                 "of the tool data.")
    assert "Thai" in prompts.system_prompt("", "", "th-TH")
    assert prompts.system_prompt("Paris", "Europe/Paris", "en") == prompts.system_prompt("Paris", "Europe/Paris")
    assert "always answer in" not in prompts.system_prompt("Paris", "Europe/Paris", "").lower()


@pytest.fixture(scope="module")
async def templated_gateway(open_meteo):
    """The real gateway; its small tier (instant) answers "It is sunny today.", which keeps no number of the facts,
    so the gateway says its tool's template: the words the test checks are the gateway's own."""
    c = Config()
    tools = replace(c.tools, geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url, timeout_s=2)
    small = InstantBackend("small")
    gw = await start_gateway(c.gateway, tools, c.router, port=0, backends={"small": small, "big": None})
    gw.small = small
    yield gw
    await gw.stop(0.5)


def _german(message):
    message.query.language = "de"
    return message


@pytest.mark.asyncio(loop_scope="session")
async def test_a_german_turn_through_the_gateway_gets_the_german_tool_phrasing(templated_gateway) -> None:
    turn = await one_turn(templated_gateway.port, _german(query("de-time", "Wie spät ist es in Tokio?",
                                                                intent="time_in_city", slots={"city": "Tokyo"})))
    hour = datetime.now(ZoneInfo("Asia/Tokyo")).strftime("%H")
    assert turn.text.startswith("Es ist ") and " Uhr am " in turn.text and "Tokyo" in turn.text, turn.text
    assert hour in turn.text
    assert turn.of("tool")[0].status == "Ich schaue nach der Uhrzeit"  # the device may say it while it waits
    system = templated_gateway.small.requests[-1].messages[0]["content"]  # the model was asked to phrase it
    assert system.endswith("Always answer in German, whatever the language of the tool data.")
    weather = await one_turn(templated_gateway.port, _german(query("de-w", "Wie ist das Wetter in Paris?",
                                                                   intent="weather", slots={"city": "Paris"})))
    assert weather.text == "In Paris sind es jetzt 21 Grad, überwiegend klar.", weather.text
    unknown = await one_turn(templated_gateway.port, _german(query("de-x", "Wetter in Atlantis", intent="weather",
                                                                   slots={"city": "Atlantis"})))
    assert unknown.text == "Ich habe keinen Ort namens Atlantis gefunden."
    english = await one_turn(templated_gateway.port, query("en-w", "weather in Paris", intent="weather",
                                                           slots={"city": "Paris"}))
    assert english.text == "In Paris it is 21 degrees now, with mainly clear."
