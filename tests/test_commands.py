"""The local command grammar, table-driven: many phrasings whisper produces, and near-misses that must not match."""
from __future__ import annotations

from pathlib import Path

import pytest

from device import commands
from device.commands import Grammar, GrammarError, clean_transcript
from protos import assistant_pb2 as pb


@pytest.fixture(scope="module")
def grammar() -> Grammar:
    return commands.load_grammar("en")


COMMANDS = [
    # volume
    ("volume up", "volume_up", {}),
    ("Turn the volume up.", "volume_up", {}),
    ("turn up the sound a bit", "volume_up", {}),
    ("Louder, please.", "volume_up", {}),
    ("increase the volume", "volume_up", {}),
    ("Value up.", "volume_up", {}),                 # how tiny.en often hears "volume up"
    ("volume down", "volume_down", {}),
    ("Turn it down.", "volume_down", {}),
    ("make it quieter", "volume_down", {}),
    ("lower the volume", "volume_down", {}),
    ("Set the volume to 25%.", "volume_set", {"level": 25}),
    ("set volume to twenty five percent", "volume_set", {"level": 25}),
    ("Um, set the volume to twenty-five percent, please.", "volume_set", {"level": 25}),
    ("volume 40", "volume_set", {"level": 40}),
    ("Volume at 70 percent", "volume_set", {"level": 70}),
    ("change the volume to 100", "volume_set", {"level": 100}),
    ("set the volume to max", "volume_set", {"level": 100}),
    ("volume to zero", "volume_set", {"level": 0}),
    ("hey, set the volume to 5 %", "volume_set", {"level": 5}),
    ("Turn the volume up to 80%.", "volume_set", {"level": 80}),
    ("Could you turn the volume down to 20 percent?", "volume_set", {"level": 20}),
    ("Could you turn the volume up?", "volume_up", {}),
    ("mute", "mute", {}),
    ("Mute.", "mute", {}),
    ("turn the sound off", "mute", {}),
    ("unmute", "unmute", {}),
    ("turn the sound back on", "unmute", {}),
    # brightness
    ("brightness up", "brightness_up", {}),
    ("make the screen brighter", "brightness_up", {}),
    ("brightness down", "brightness_down", {}),
    ("dim the display", "brightness_down", {}),
    ("Set the brightness to 40 percent.", "brightness_set", {"level": 40}),
    ("brightness to eighty", "brightness_set", {"level": 80}),
    # camera
    ("Take a photo.", "take_photo", {}),
    ("take a picture", "take_photo", {}),
    ("snap a pic", "take_photo", {}),
    ("please take a photo", "take_photo", {}),
    ("Start recording video.", "video_start", {}),
    ("start recording", "video_start", {}),
    ("record a video", "video_start", {}),
    ("Stop recording.", "video_stop", {}),
    ("stop the video", "video_stop", {}),
    # timers
    ("Set a timer for 2 minutes.", "timer_set", {"duration_s": 120}),
    ("set a timer for two minutes", "timer_set", {"duration_s": 120}),
    ("set a timer for 30 seconds", "timer_set", {"duration_s": 30}),
    ("Set a timer for two seconds.", "timer_set", {"duration_s": 2}),
    ("set timer for one minute", "timer_set", {"duration_s": 60}),
    ("set a timer for half a minute", "timer_set", {"duration_s": 30}),
    ("set a timer for one and a half minutes", "timer_set", {"duration_s": 90}),
    ("set a timer for 1.5 minutes", "timer_set", {"duration_s": 90}),
    ("set a timer for a minute and a half", "timer_set", {"duration_s": 90}),
    ("set a timer for 2 minutes and 30 seconds", "timer_set", {"duration_s": 150}),
    ("set a timer for an hour", "timer_set", {"duration_s": 3600}),
    ("set a timer for 1 hour and 15 minutes", "timer_set", {"duration_s": 4500}),
    ("start a 10 minute timer", "timer_set", {"duration_s": 600}),
    ("timer for five minutes", "timer_set", {"duration_s": 300}),
    ("Um, set a timer for twenty five minutes.", "timer_set", {"duration_s": 1500}),
    ("Set a 2-minute timer.", "timer_set", {"duration_s": 120}),
    ("Set a timer for 10 min.", "timer_set", {"duration_s": 600}),
    ("set a timer for 2 mins 30 secs", "timer_set", {"duration_s": 150}),
    ("Wake me up in 10 minutes.", "timer_set", {"duration_s": 600}),
    ("set a pasta timer for ten minutes", "timer_set", {"duration_s": 600, "name": "pasta"}),
    ("Set a timer for 5 minutes called tea.", "timer_set", {"duration_s": 300, "name": "tea"}),
    ("set a timer named eggs for 7 minutes", "timer_set", {"duration_s": 420, "name": "eggs"}),
    ("cancel the timer", "timer_cancel", {}),
    ("Cancel my timers.", "timer_cancel", {}),
    ("stop the timer", "timer_cancel", {}),
    ("cancel the pasta timer", "timer_cancel", {"name": "pasta"}),
    ("How much time is left?", "timer_remaining", {}),
    ("how much time is left on the timer", "timer_remaining", {}),
    ("how long is left", "timer_remaining", {}),
    ("how much time is left on the pasta timer", "timer_remaining", {"name": "pasta"}),
    ("How much time is left on my timer?", "timer_remaining", {}),  # "my" is not a name
    # time, date, battery
    ("What time is it?", "time_now", {}),
    ("what's the time", "time_now", {}),
    ("Tell me the time.", "time_now", {}),
    ("What's the date?", "date_today", {}),
    ("what is today's date", "date_today", {}),
    ("what day is it today", "date_today", {}),
    ("Battery level.", "battery_level", {}),
    ("how much battery do I have left", "battery_level", {}),
    ("what's my battery at", "battery_level", {}),
    # conversation control
    ("Stop.", "stop", {}),
    ("cancel", "stop", {}),
    ("Never mind.", "stop", {}),
    ("forget it", "stop", {}),
    ("Repeat that.", "repeat", {}),
    ("say that again", "repeat", {}),
    ("what did you say", "repeat", {}),
]


@pytest.mark.parametrize(("text", "name", "slots"), COMMANDS)
def test_device_command_phrasings(grammar: Grammar, text: str, name: str, slots: dict) -> None:
    match = grammar.parse(text)
    assert match is not None, f"{text!r} should be the command {name}"
    assert (match.name, dict(match.slots)) == (name, slots)
    assert grammar.understand(text).kind == "command"


INTENTS = [
    ("What's the weather?", "weather", {}),
    ("what's the weather in Paris", "weather", {"city": "Paris"}),
    ("What's the weather in New York tomorrow?", "weather", {"city": "New York", "day": "tomorrow"}),
    ("what is the weather like in london today", "weather", {"city": "london", "day": "today"}),
    ("What is the weather in Paris like?", "weather", {"city": "Paris"}),
    ("What's the weather in São Paulo?", "weather", {"city": "São Paulo"}),
    ("how's the weather tomorrow", "weather", {"day": "tomorrow"}),
    ("what's the weather tomorrow in Berlin", "weather", {"city": "Berlin", "day": "tomorrow"}),
    ("Will it rain tomorrow?", "weather", {"day": "tomorrow"}),
    ("is it going to rain in Seattle today", "weather", {"city": "Seattle", "day": "today"}),
    ("Do I need an umbrella?", "weather", {}),
    ("do I need an umbrella tomorrow", "weather", {"day": "tomorrow"}),
    ("what's the weather right now", "weather", {"day": "now"}),
    ("how cold is it outside", "weather", {}),
    ("What time is it in Tokyo?", "time_in_city", {"city": "Tokyo"}),
    ("what's the time in Buenos Aires", "time_in_city", {"city": "Buenos Aires"}),
    ("um what time is it in los angeles", "time_in_city", {"city": "los angeles"}),
]


@pytest.mark.parametrize(("text", "name", "slots"), INTENTS)
def test_gateway_intents(grammar: Grammar, text: str, name: str, slots: dict) -> None:
    understanding = grammar.understand(text)
    assert understanding.kind == "intent", understanding
    assert understanding.intent is not None
    assert (understanding.intent.name, dict(understanding.intent.slots)) == (name, slots)
    assert understanding.command is None
    assert understanding.route_preference == pb.ROUTE_PREFERENCE_AUTO


def test_intent_to_proto_carries_text_slots() -> None:
    intent = commands.to_intent("What's the weather in Paris tomorrow?")
    assert intent is not None
    msg = intent.to_proto()
    assert msg.name == "weather"
    assert msg.slots["city"].text == "Paris"
    assert msg.slots["day"].text == "tomorrow"
    assert msg.slots["city"].WhichOneof("value") == "text"


QUERIES = [
    "what's the volume of the moon",       # 'volume' but not a volume command
    "what is the value of pi",
    "why is the sky blue",
    "tell me a story about a timer",
    "how bright is the sun",
    "turn up the heat",
    "set the table for two",
    "take a walk with me",
    "what time does the store open",
    "who wrote the date of the doomsday",
    "what's the battery life of a tesla",
    "stop the war in my head is a song by whom",
    "how many minutes are in a day",
    "Set an alarm for 7 am.",               # alarms at a clock time are not timers (the model can explain)
    "What is two plus two?",
    "record the history of rome",
    "explain how timers work in javascript",
    "set a timer",                          # no duration: not a complete command, the model may ask back
    "what's the weather in",                # empty city
]


@pytest.mark.parametrize("text", QUERIES)
def test_everything_else_is_a_query(grammar: Grammar, text: str) -> None:
    understanding = grammar.understand(text)
    if text == "what's the weather in":
        # the grammar may take it as weather without a city, never as a device command
        assert understanding.command is None
        return
    assert understanding.kind == "query", understanding
    assert understanding.text == clean_transcript(text)  # the raw words go to the gateway, less whisper's final "."
    assert grammar.parse(text) is None


PREFERENCES = [
    ("Ask the big model why the sky is blue.", pb.ROUTE_PREFERENCE_BIG, "why the sky is blue", None),
    ("use the large model to write a haiku about rain", pb.ROUTE_PREFERENCE_BIG, "write a haiku about rain", None),
    ("ask the small model what a prime number is", pb.ROUTE_PREFERENCE_SMALL, "what a prime number is", None),
    ("ask the local model, how far is the moon", pb.ROUTE_PREFERENCE_SMALL, "how far is the moon", None),
    ("explain black holes using the big model", pb.ROUTE_PREFERENCE_BIG, "explain black holes", None),
    ("ask the big model what's the weather in Paris", pb.ROUTE_PREFERENCE_BIG, "what's the weather in Paris", "weather"),
]


@pytest.mark.parametrize(("text", "preference", "rest", "intent"), PREFERENCES)
def test_route_preference_is_stripped(grammar: Grammar, text: str, preference: int, rest: str, intent: str | None) -> None:
    understanding = grammar.understand(text)
    assert understanding.route_preference == preference
    assert understanding.text == rest
    assert understanding.command is None
    assert (understanding.intent.name if understanding.intent else None) == intent


def test_explicit_model_request_is_never_a_device_command(grammar: Grammar) -> None:
    understanding = grammar.understand("ask the small model to set a timer for five minutes")
    assert understanding.kind == "query"
    assert understanding.text == "set a timer for five minutes"
    assert understanding.route_preference == pb.ROUTE_PREFERENCE_SMALL


@pytest.mark.parametrize(("partial", "complete"), [
    ("What time is it?", True),
    ("stop", False),                       # may become "stop recording": a different command
    ("cancel", False),                     # "cancel the timer"
    ("turn the volume up", False),         # "turn the volume up to 80 percent"
    ("start recording video", True),
    ("never mind", True),
    ("set a timer for two minutes", True),
    ("take a photo", True),                # "take a photo of this" is the same command
    ("set the volume to 25", True),
    ("set the volume to twenty", False),   # may continue: "twenty five"
    ("set the volume to 20", False),
    ("set a timer for", False),
    ("set a timer for two minutes and", False),
    ("what's the weather in Paris", False),  # a gateway question: normal endpointing
    ("why is the", False),
    ("set a timer for 5 minutes called pas", False),  # a free-text name may still be growing
    ("", False),
])
def test_is_complete(grammar: Grammar, partial: str, complete: bool) -> None:
    assert grammar.is_complete(partial) is complete


@pytest.mark.parametrize(("partial", "completion"), [
    ("Volume up.", "closed"),
    ("Repeat that.", "closed"),
    ("What's the battery level?", "closed"),
    ("please start recording a video", "closed"),      # skip words aside
    ("Set the brightness to fifty percent.", "closed"),  # a slot, then nothing may follow
    ("set a timer for ten minutes called pasta", ""),    # the name may still be growing
    ("Set a timer for five minutes.", "whole"),        # "... called pasta" may follow the filled slot
    ("set a timer for 5 minutes", "whole"),
    ("Cancel the timer.", "whole"),                    # "... called tea"
    ("Mute.", "whole"),                                # "mute the sound": the same command, said longer
    ("What time is it?", "whole"),                     # "... right now"
    ("Take a photo.", "whole"),                        # "... of this"
    ("stop", ""),
])
def test_completion_knows_which_commands_nothing_can_follow(grammar: Grammar, partial: str, completion: str) -> None:
    """A closed command ends on a shorter pause; one the templates go on past (past a filled slot too) is only
    whole. The table is the templates' own, so a template that grows a command makes it whole again."""
    assert grammar.completion(partial) == completion


def test_empty_and_oversized_text(grammar: Grammar) -> None:
    assert grammar.understand("  .  ").kind == "empty"
    long_text = "set a timer for two minutes " * 40
    understanding = grammar.understand(long_text)
    assert understanding.kind == "query"
    assert not grammar.is_complete(long_text)


def test_clean_transcript() -> None:
    assert clean_transcript("  Set a timer for 2 minutes.  ") == "Set a timer for 2 minutes"
    assert clean_transcript("what   time is it…") == "what time is it"


def test_missing_language_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(GrammarError, match=r"xx\.yaml does not exist and Home Assistant's templates lack it; "
                                           r"languages available: \[.*'en'"):
        Grammar("xx")


def test_malformed_grammar_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("language: en\nintents:\n  x:\n    data:\n      - sentences: ['hello']\n", encoding="utf-8")
    with pytest.raises(GrammarError, match="needs metadata.kind"):
        Grammar(path=bad)
    bad.write_text("language: [", encoding="utf-8")
    with pytest.raises(GrammarError, match="malformed"):
        Grammar(path=bad)
