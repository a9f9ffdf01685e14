"""When a transcript earns a recheck, and what is taken from it. The texts are what tiny.en wrote for the
user's voice (first pass, then prompted with the grammar's command_prompt); the engine test with real audio is
in test_engine.py."""
from __future__ import annotations

import pytest

from device import commands
from device.command_recheck import pick, worth_a_recheck


@pytest.fixture(scope="module")
def en():
    return commands.load_grammar("en")


@pytest.mark.parametrize("heard", ["Volume app.", "and mute.", "New the sound", "A N U T", "Set a timer."])
def test_short_near_misses_are_worth_a_recheck(en, heard: str) -> None:
    assert worth_a_recheck(heard, en.words)


@pytest.mark.parametrize("heard", ["Why is the sky blue?", "Who painted the Mona Lisa?",
                                   "What is the volume of a sphere with radius three?",   # long: a question
                                   "How many legs does a spider have?", ""])
def test_questions_without_the_vocabulary_are_not(en, heard: str) -> None:
    assert not worth_a_recheck(heard, en.words)


def test_a_language_without_a_command_prompt_is_never_rechecked(en) -> None:
    assert not worth_a_recheck("Volume app.", commands.LanguageData(command_words=frozenset({"volume"})))


@pytest.mark.parametrize(("first", "second", "name", "taken"), [
    ("Volume app.", "Volume up, volume up.", "volume_up", "Volume up"),   # a prompted Whisper repeats itself
    ("and mute.", "Silence, unmute.", "unmute", "unmute"),   # "Silence" is a command too, but not what was heard
    ("New the sound", "mute the sound, mute the sound,", "mute", "mute the sound"),
    ("step", "Stop,", "stop", "Stop"),   # real speakers saying "stop" (Speech Commands), heard as "step"
])
def test_the_command_that_reads_like_the_first_pass_is_taken(en, first, second, name, taken) -> None:
    found = pick(first, second, en.parse, en.skip_words)
    assert found.command is not None and found.command.name == name, found
    assert found.text == taken and found.similarity >= 0.6


@pytest.mark.parametrize(("first", "second"), [
    ("What is volume?", "What is volume?"),        # heard the same: no command
    ("Who invented the video camera?", "Record a video."),   # a command, but nothing like what was said
    ("and mute.", "Silence."),                     # the opposite command does not read like "and mute"
    ("Okay.", "Okay, stop."),   # a real "on": the prompt added a command to a skip word the grammar matches through
])
def test_nothing_is_taken_unless_a_command_reads_like_it(en, first, second) -> None:
    assert pick(first, second, en.parse, en.skip_words).command is None


def test_real_isolated_words_become_only_the_command_that_was_said(en, stt) -> None:
    """Real speakers (Speech Commands, words_en: "up", "down", "off", "on", "stop", names, numbers...) heard after
    the wake word: many earn a recheck (a few letters), and a command it finds is the word the speaker said."""
    from bench.recheck import SETS, _clips, _labels, measure

    files = _clips(SETS["isolated words"], quick=False)[::16]
    result = measure(stt, en, files, _labels())
    assert result["rechecked"] >= len(files) // 2, result["rechecked"]   # the rule did run on them
    wrong = [t for t in result["taken"] if t["command"] not in t["said"]]
    assert not wrong, wrong
