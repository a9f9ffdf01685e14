"""The utterance stage (endpointing + streaming STT) on real recorded speech: the device, `voxlens listen`
and the speech bench all go through it, so what it finds is what each of them finds."""
from __future__ import annotations

import asyncio
import re
import threading

import numpy as np
import pytest

from bench.speech import _paced, voiced_bounds
from device.commands import completion
from device.audio import SAMPLE_RATE_HZ, read_wav, split_frames
from device.utterance import UtteranceStage, utterances
from device.vad import Endpointer, VadEvent
from voxlens.config import VadConfig

CLIPS = ("speechbrain_harvard_spk1_snt1.wav", "speechbrain_harvard_spk1_snt4.wav")


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def recordings(shared_eval):
    rows = dict(line.split("\t")[:3:2] for line in (shared_eval / "speech" / "manifest.tsv").read_text().splitlines()[1:])
    return [(read_wav(shared_eval / "speech" / name), rows[name]) for name in CLIPS]


async def frames_of(pcm: np.ndarray):
    for frame in split_frames(pcm):
        yield frame


async def collect(stage: UtteranceStage, pcm: np.ndarray, streaming: bool):
    return [u async for u in utterances(frames_of(pcm), stage, streaming=streaming)]


@pytest.mark.parametrize("streaming", [True, False])
async def test_two_real_sentences_two_utterances(stt, silero, recordings, streaming):
    gap = np.zeros(SAMPLE_RATE_HZ, np.int16)
    pcm = np.concatenate([gap, recordings[0][0], gap, recordings[1][0], gap])
    silero.reset()
    found = await collect(UtteranceStage(Endpointer(VadConfig(), silero), stt), pcm, streaming)
    assert [u.reason for u in found] == ["silence", "silence"], [u.to_dict() for u in found]
    for u, (_, ref) in zip(found, recordings):
        heard = words(u.text)
        assert len(heard & words(ref)) >= len(words(ref)) - 2, (u.text, ref)   # tiny.en may slip a word
        assert "listen.end_to_text" in u.timings.as_ms()
    first_end = (len(gap) + len(recordings[0][0])) / SAMPLE_RATE_HZ
    assert 0.9 < found[0].start_s < found[0].end_s <= first_end + 0.1 < found[1].start_s < found[1].end_s


async def test_input_that_ends_mid_sentence_still_gives_its_words(stt, silero, recordings):
    """A file (or a stream) that stops while someone is talking: the words so far are not lost."""
    pcm, ref = recordings[0]
    silero.reset()
    cut = np.concatenate([np.zeros(SAMPLE_RATE_HZ // 2, np.int16), pcm[: int(0.8 * len(pcm))]])
    found = await collect(UtteranceStage(Endpointer(VadConfig(), silero), stt), cut, streaming=True)
    assert len(found) == 1 and found[0].reason == "end_now"
    assert len(words(found[0].text) & words(ref)) >= 3, (found[0].text, ref)


async def test_the_stream_hears_the_endpointers_own_verdict(stt, silero, shared_eval):
    """Inside an utterance a frame is voice down to threshold - 0.15 (the endpointer's hysteresis), so the
    streaming STT's early pass and the endpointer's silence count start at the same place."""
    gap = np.zeros(SAMPLE_RATE_HZ // 2, np.int16)
    pcm = np.concatenate([x for f in sorted((shared_eval / "speech").glob("pocketsphinx_*.wav")) for x in (gap, read_wav(f))])
    silero.reset()
    stage = UtteranceStage(Endpointer(VadConfig(), silero), stt)
    verdicts, in_speech = [], []
    for frame in split_frames(np.concatenate([pcm, np.zeros(SAMPLE_RATE_HZ, np.int16)])):
        was = stage.in_speech
        for ev in stage.push(frame):
            if ev.kind == "speech_start":
                stage.begin(ev)
        verdicts.append((was, stage.endpointer.last_prob, stage.endpointer.voiced))
        in_speech.append(stage.in_speech)
    stream = stage.end()
    if stream is not None:
        await stream.aclose()
    thr = VadConfig().threshold
    assert any(in_speech) and not in_speech[-1]
    # every frame whose best window clears the start threshold is voice, in speech or not
    assert all(voiced for _, p, voiced in verdicts if p >= thr)
    # inside speech, frames between threshold - 0.15 and threshold still count as voice (not a pause)
    between = [voiced for was, p, voiced in verdicts if was and thr - 0.15 <= p < thr]
    assert between and all(between)


@pytest.mark.parametrize("veto", [True, False])
async def test_words_that_end_open_veto_smart_turns_complete_at_a_pause(stt, silero, smart_turn, user_speak, veto):
    """"Set a timer for" spoken whole sounds finished (Smart Turn p ~0.98 at the pause); the words at the pause
    end on "for", so the turn goes on to "ten minutes". Without the veto the same audio is cut in two."""
    pause = np.zeros(int(0.6 * SAMPLE_RATE_HZ), np.int16)
    lead = np.zeros(SAMPLE_RATE_HZ // 2, np.int16)
    pcm = np.concatenate([lead, user_speak("Set a timer for"), pause, user_speak("ten minutes."), lead, lead, lead])
    silero.reset()
    endpointer = Endpointer(VadConfig(text_veto=veto), silero, smart_turn)
    # at a microphone's pace: the transcription decodes while the pause goes on, as on the device
    found = [u async for u in utterances(_paced(pcm), UtteranceStage(endpointer, stt))]
    if veto:
        assert len(found) == 1, [u.to_dict() for u in found]
        heard = set(re.findall(r"[a-z0-9]+", found[0].text.lower()))
        assert {"timer", "minutes"} <= heard and heard & {"ten", "10"}, found[0].text
        assert endpointer.text_vetoes == 1
    else:
        assert len(found) == 2 and found[0].reason == "smart_turn", [u.to_dict() for u in found]
        assert endpointer.text_vetoes == 0


async def _command_turn(stage: UtteranceStage, pcm: np.ndarray, passes: threading.Event) -> list[VadEvent]:
    """Feed `pcm` as the device does, with the grammar's verdict on each new partial; at a pause, wait for the
    pass it started (the device looks at a pass the moment it ends) before the next frame."""
    ended: list[VadEvent] = []
    for frame in split_frames(pcm):
        events = stage.push(frame)
        for ev in events:
            if ev.kind == "speech_start":
                stage.begin(ev)
        if stage.transcribing and stage.in_speech and not stage.endpointer.voiced_for_stt:
            while stage.settled() is None:   # the pause's pass, decoded as the final will be
                assert await asyncio.to_thread(passes.wait, 60), "no transcription pass within 60 s"
                passes.clear()
        text = stage.new_partial()
        if text is not None:
            stage.hint_complete(text, completion(text))
        events += stage.end_on_command()
        for ev in events:
            if ev.kind == "speech_end":
                ended.append(ev)
                stream = stage.end()
                if stream is not None:
                    await stream.aclose()
    return ended


@pytest.mark.parametrize("settled_end", [True, False])
async def test_a_whole_command_ends_on_its_words_at_the_pause(stt, silero, user_speak, settled_end):
    """"Take a photo." at a pause: once the pass that pause started reads as that whole command (the final, since
    it covers every voiced frame), the turn ends there, after command_silence_ms rather than short_silence_ms.
    Off ([vad] settled_command_end = false), the same audio waits for the short silence."""
    cfg = VadConfig(settled_command_end=settled_end, command_silence_ms=128, short_silence_ms=400)  # far apart
    lead = np.zeros(SAMPLE_RATE_HZ // 2, np.int16)
    pcm = np.concatenate([lead, user_speak("Take a photo."), lead, lead])
    silero.reset()
    passes = threading.Event()
    stage = UtteranceStage(Endpointer(cfg, silero), stt, on_pass=passes.set)
    ended = await _command_turn(stage, pcm, passes)
    assert len(ended) == 1, ended
    waited_ms = (ended[0].detected_sample - ended[0].sample) * 1000 / SAMPLE_RATE_HZ   # the silence it ended on
    if settled_end:
        assert ended[0].reason == "command"
        assert cfg.command_silence_ms <= waited_ms < cfg.short_silence_ms, waited_ms
    else:
        assert ended[0].reason == "silence" and waited_ms >= cfg.short_silence_ms, waited_ms


@pytest.mark.parametrize(("said", "closed"), [("Repeat that.", True), ("Take a photo.", False)])
async def test_a_closed_command_ends_on_the_shorter_pause(stt, silero, user_speak, said, closed):
    """Nothing in the grammar can follow "Repeat that", so its pause need only last closed_command_silence_ms;
    "Take a photo" may go on ("... of this") and waits command_silence_ms. The two bounds are set far apart so
    the frame and window sizes cannot blur which one ended the turn."""
    cfg = VadConfig(short_silence_ms=900, command_silence_ms=600, closed_command_silence_ms=64)
    lead = np.zeros(SAMPLE_RATE_HZ // 2, np.int16)
    pcm = np.concatenate([lead, user_speak(said), lead, lead, lead])
    silero.reset()
    passes = threading.Event()
    stage = UtteranceStage(Endpointer(cfg, silero), stt, on_pass=passes.set)
    ended = await _command_turn(stage, pcm, passes)
    assert len(ended) == 1 and ended[0].reason == "command", ended
    waited_ms = (ended[0].detected_sample - ended[0].sample) * 1000 / SAMPLE_RATE_HZ
    if closed:
        assert cfg.closed_command_silence_ms <= waited_ms < cfg.command_silence_ms, waited_ms
    else:
        assert cfg.command_silence_ms <= waited_ms < cfg.short_silence_ms, waited_ms


async def test_a_gap_inside_a_command_does_not_end_it(stt, silero, user_speak):
    """"Cancel the timer" is a whole command, but the user goes on after a 100 ms gap, a breath between words
    ("… called tea"): the words at that gap never end the turn; the whole of it is one utterance."""
    first, rest = user_speak("Cancel the timer"), user_speak("called tea.")
    first = first[: voiced_bounds(first)[1]]
    rest = rest[voiced_bounds(rest)[0]:]
    lead = np.zeros(SAMPLE_RATE_HZ // 2, np.int16)
    pcm = np.concatenate([lead, first, np.zeros(int(0.1 * SAMPLE_RATE_HZ), np.int16), rest, lead, lead])
    silero.reset()
    passes = threading.Event()
    stage = UtteranceStage(Endpointer(VadConfig(), silero), stt, on_pass=passes.set)
    ended = await _command_turn(stage, pcm, passes)
    assert len(ended) == 1 and ended[0].sample / SAMPLE_RATE_HZ > (len(lead) + len(first)) / SAMPLE_RATE_HZ + 0.3, ended
