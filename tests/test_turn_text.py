"""The end-of-turn text rules and their bench (`voxlens bench endpoint`: "turn 0.7 | text", "turn 0.7 + veto").

The transcripts are whisper-tiny.en's own, seen at pauses in that bench: finished sentences, fragments it
left open ("...", a dash, no stop), and fragments it closed, which the rescue rule cannot tell from a sentence
(why it is paired with Smart Turn, and why the bench finds it cuts more pauses). The veto
(device/turn_text.py `ends_open`) reads the same words the other way: open ones overrule Smart Turn's "complete".
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.endpoint import (
    EVAL_DIR,
    Case,
    Pass,
    Pause,
    StreamSim,
    complete_sentence,
    room_tone,
    run_text_case,
    speech_end,
    text_outcome,
    veto_outcome,
)
from device.audio import SAMPLE_RATE_HZ, read_wav
from device.turn_text import ends_open

MS = SAMPLE_RATE_HZ // 1000


@pytest.mark.parametrize("text", [
    "The child almost hurt the small dog.",
    "What joy there is in living?",
    "Eight of spades, four of close, seven of hearts.",
    "Lord, but I am glad to see you again, Phil.",
    "Unless to be rather cold-hearted and rather selfish, is to be ill-disposed.",
    "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power to do for them.",
    # fragments Whisper closed: the text alone calls them complete (at 0.97 s and 1.21 s into a sentence)
    "Not at this person.",
    "will we ever forget?",
])
def test_whole_sentences_read_complete(text: str) -> None:
    assert complete_sentence(text)


@pytest.mark.parametrize("text", [
    "The child almost...",             # Whisper's ellipsis at a pause
    "Author of the...",
    "Eight of spades, four of-",       # a cut word
    "We are sure that one",            # no stop
    "Sunday is the best part of the",
    "he might even if.",               # closed, but on a word that cannot end a sentence
    "and Mr.",
    "God bless.",                      # too short to trust
    "10 of close",
    "",
])
def test_fragments_do_not(text: str) -> None:
    assert not complete_sentence(text)


def test_the_rule_reads_the_last_word_and_quotes() -> None:
    assert not complete_sentence("What's the weather in.")
    assert not complete_sentence("Set a timer for the.")
    assert complete_sentence('"Turn the lights on."')      # a particle, not a preposition: a command can end on it
    assert not complete_sentence("Turn it on.", min_words=4)


# whisper-tiny.en at pauses in `voxlens bench endpoint`, where Smart Turn said complete (p 0.79-0.97) in the
# middle of a sentence: the words the device's veto (device/turn_text.py) reads there
@pytest.mark.parametrize("text", [
    "10 of",                          # "10 of | clubs", Smart Turn p 0.97
    "Eight of spades, four of-",      # p 0.97: Whisper's dash on a cut word
    "and Mr.",                        # p 0.94: the full stop of an abbreviation
    "We are sh-",                     # p 0.79
    "Author of the...",
    "A thin stripe runs...",
    "Sunday is the best part of the",
    "he might even if.",              # closed with a stop, on a word that cannot end a sentence
])
def test_whisper_fragments_end_open(text: str) -> None:
    assert ends_open(text, "en")


@pytest.mark.parametrize("text", [
    "Eight of spades, four of close, seven of hearts.",
    "What joy there is in living?",
    "Author of the Danger Trail, Philip Steels, etc.",
    "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power to do for them.",
    "God bless.",
    # fragments at pauses Smart Turn called complete that end on a word a sentence can end on: the veto
    # cannot hear these (p 0.98, 0.95, 0.97), Smart Turn decides them alone as before
    "7 of course",
    "Tera thin sheet from the yellow",
    "Unless to be rather up.",
    "",
])
def test_whisper_sentences_and_unmarked_fragments_do_not(text: str) -> None:
    assert not ends_open(text, "en")


@pytest.fixture(scope="module")
def models():
    from device.smart_turn import SmartTurn
    from device.stt import SpeechToText
    from device.vad import SileroVad

    return SileroVad(), SmartTurn(threshold=0.7), SpeechToText("whisper-tiny.en")


def test_a_text_end_waits_for_both_answers_and_the_bar(models) -> None:
    """A finished sentence Smart Turn calls unfinished (p ~0.05): the text variant ends it once the device's
    transcript of the pause exists, before the 1 s silence; a bar above its p leaves it to the silence."""
    vad, turn, stt = models
    clip = read_wav(EVAL_DIR / "arctic_axb_a0004.wav")
    rng = np.random.default_rng(2)
    lead, tail = room_tone(clip, SAMPLE_RATE_HZ // 2, rng), room_tone(clip, 3 * SAMPLE_RATE_HZ // 2, rng)
    case = Case("axb_a0004", np.concatenate([lead, clip, tail]), len(lead) + speech_end(clip))

    plain, pauses, sim = run_text_case(case, vad, turn, stt)
    assert plain["reason"] == "silence" and len(pauses) == 1 and pauses[0].p < 0.2
    for before, after in zip(sim.passes, sim.passes[1:]):
        assert after.start >= before.ready            # one decoding thread: a pass waits for the one in flight
    for p in sim.passes:
        assert p.start >= p.covers and p.ready == p.start + p.cost_ms * MS   # no transcript before its audio
    done = sim.settled(pauses[0].voiced_end)
    assert complete_sentence(done.text) and done.ready > pauses[0].voiced_end

    ended = text_outcome(case, plain, pauses, sim, 0.0)
    decided = case.true_end + ended["delay_ms"] * MS
    assert ended["reason"] == "text" and not ended["cut"]
    assert decided >= max(done.ready, pauses[0].asked_at + pauses[0].cost_ms * MS) - 0.1 * MS   # delay_ms is rounded
    assert ended["delay_ms"] < text_outcome(case, plain, pauses, sim, 0.2)["delay_ms"]
    assert text_outcome(case, plain, pauses, sim, 0.2)["reason"] == "silence"


def _held_case(open_words: str, ready_ms: float, returned_ms: float | None = None) -> tuple:
    """A spliced case with one pause Smart Turn calls complete (p 0.9, asked 120 ms after the last voice at
    1.0 s, 40 ms to answer) whose settled transcript is `open_words`, ready `ready_ms` after the last voice."""
    voiced_end = SAMPLE_RATE_HZ
    case = Case("held", np.zeros(4 * SAMPLE_RATE_HZ, np.int16), 2 * SAMPLE_RATE_HZ, (voiced_end, voiced_end + 600 * MS))
    returned = None if returned_ms is None else voiced_end + int(returned_ms * MS)
    pause = Pause(voiced_end + 120 * MS, 40.0, 0.9, voiced_end, returned)
    sim = object.__new__(StreamSim)   # only its passes: veto_outcome reads `settled`
    sim.passes = [Pass(voiced_end, voiced_end, voiced_end + ready_ms * MS, True, open_words, ready_ms)]
    silence = {"reason": "silence", "at": 3 * SAMPLE_RATE_HZ, "cut": False}
    return case, silence, [pause], sim


def test_the_veto_decides_at_the_later_answer_and_the_bound() -> None:
    """The veto variant's timing, as the device orders it: a "complete" ends at the later of Smart Turn's verdict
    (160 ms here) and the transcript; open words leave the turn to the silence rule; no transcript by 400 ms of
    silence ends on the verdict there; voice back before the words makes the pause moot."""
    def at_ms(out: dict) -> float:
        return out["delay_ms"] + 1000   # the true end is 1 s after the pause's last voice

    case, silence, pauses, sim = _held_case("Set a timer.", ready_ms=250)
    out = veto_outcome(case, silence, pauses, sim)
    assert (out["reason"], out["cut"], at_ms(out), out["text"]) == ("smart_turn", True, 250, "Set a timer.")
    assert at_ms(veto_outcome(*_held_case("Set a timer.", ready_ms=100))) == 160   # the words came first

    out = veto_outcome(*_held_case("Set a timer for", ready_ms=250))
    assert (out["reason"], out["cut"], out["delay_ms"]) == ("silence", False, 1000.0)
    assert out["vetoed"] == [{"p": 0.9, "text": "Set a timer for", "cut_here": True}]

    out = veto_outcome(*_held_case("Set a timer for", ready_ms=450))   # too late: the verdict stands at 400 ms
    assert (out["reason"], at_ms(out), out["text"], out["cut"]) == ("smart_turn", 400, None, True)

    out = veto_outcome(*_held_case("Set a timer.", ready_ms=250, returned_ms=200))
    assert out["reason"] == "silence"                                  # voice came back before the words
    out = veto_outcome(*_held_case("Set a timer.", ready_ms=100, returned_ms=140))
    assert (out["reason"], at_ms(out)) == ("smart_turn", 160)         # the verdict found them: ends on its frame


def test_the_veto_with_the_rescue_ends_a_doubted_sentence_on_its_words() -> None:
    case, silence, pauses, sim = _held_case("Set a timer for ten minutes.", ready_ms=250)
    pauses[0].p = 0.3    # Smart Turn doubts it: only the rescue (p >= bar, a whole sentence) ends it
    assert veto_outcome(case, silence, pauses, sim)["reason"] == "silence"
    out = veto_outcome(case, silence, pauses, sim, 0.05)
    assert (out["reason"], out["delay_ms"]) == ("text", -750.0)
    assert veto_outcome(case, silence, pauses, sim, 0.5)["reason"] == "silence"


def test_the_veto_saves_a_pause_smart_turn_calls_complete(models) -> None:
    """'10 of | close' (a real recording) with 600 ms of room tone after 'of': Smart Turn calls that pause
    complete and cuts the sentence; the device's transcript of the pause ends open, so the veto holds the turn
    through it and the sentence ends whole, after the pause."""
    vad, turn, stt = models
    clip = read_wav(EVAL_DIR / "pocketsphinx_cards_001.wav")
    rng = np.random.default_rng(5)
    lead, gap, tail = (room_tone(clip, n, rng) for n in (SAMPLE_RATE_HZ // 2, 600 * MS, 3 * SAMPLE_RATE_HZ // 2))
    cut = int(0.56 * SAMPLE_RATE_HZ)
    start = len(lead) + cut
    case = Case("cards_001@0.56s", np.concatenate([lead, clip[:cut], gap, clip[cut:], tail]),
                start + len(gap) + speech_end(clip[cut:]), (start, start + len(gap)))

    plain, _, _ = run_text_case(case, vad, turn, stt)
    assert plain["reason"] == "smart_turn" and plain["cut"]          # Smart Turn alone ends at the pause
    silence, pauses, sim = run_text_case(case, vad, turn, stt, through=True)
    assert silence["reason"] == "silence" and not silence["cut"]     # every "complete" vetoed: the silence rule
    held = pauses[0]
    words = sim.settled(held.voiced_end)
    assert held.p >= 0.7 and held.voiced_end < case.pause[1] and ends_open(words.text), words.text

    out = veto_outcome(case, silence, pauses, sim)
    assert not out["cut"] and out["vetoed"][0]["text"] == words.text and out["vetoed"][0]["cut_here"]
    assert out["delay_ms"] <= round((silence["at"] - case.true_end) / MS, 1)   # never later than the silence
