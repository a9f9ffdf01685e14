"""The end-of-turn text rule and its bench (`voxlens bench endpoint`, the "turn 0.7 | text" variants).

The transcripts are whisper-tiny.en's own, seen at pauses in that bench: finished sentences, fragments it
left open ("...", a dash, no stop), and fragments it closed, which the rule cannot tell from a sentence
(why it is paired with Smart Turn, and why the bench finds it cuts more pauses).
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.endpoint import (
    EVAL_DIR,
    Case,
    complete_sentence,
    room_tone,
    run_text_case,
    speech_end,
    text_outcome,
)
from device.audio import SAMPLE_RATE_HZ, read_wav

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
