"""VoiceOutput joins TTS and a sink. The real Piper TTS and the real sinks are the speech stream's
(another branch); here a tone synthesizer and a real-time sink of the same shape stand in, and the
lead's end-to-end tests join the real ones."""
from __future__ import annotations

import asyncio

import numpy as np

from device.earcons import earcon
from device.voice_output import VoiceOutput

RATE = 22050


class ToneTts:
    """The TextToSpeech shape: 100 ms of tone per word, one chunk per word; cancel() ends every stream."""

    sample_rate_hz = RATE

    def __init__(self) -> None:
        self._generation = 0
        self.cancels = 0

    async def stream(self, deltas, cancel=None):
        generation = self._generation
        async for delta in deltas:
            for _ in delta.split():
                await asyncio.sleep(0)
                if generation != self._generation:
                    return
                yield (np.sin(np.arange(RATE // 10) * 0.1) * 8000).astype(np.int16)

    def cancel(self) -> None:
        self._generation += 1
        self.cancels += 1


class RealtimeSink:
    """play() takes as long as the audio, in 20 ms slices; stop() cuts within one slice."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.rates: set[int] = set()
        self._generation = 0

    async def play(self, pcm: np.ndarray, rate_hz: int, cancel=None) -> None:
        self.rates.add(rate_hz)
        generation, step = self._generation, rate_hz // 50
        for i in range(0, len(pcm), step):
            if generation != self._generation or (cancel is not None and cancel.cancelled):
                return
            self.chunks.append(pcm[i:i + step])
            await asyncio.sleep(step / rate_hz)

    def stop(self) -> None:
        self._generation += 1

    @property
    def samples(self) -> int:
        return sum(len(c) for c in self.chunks)


async def test_earcon_then_speech_in_order_at_the_voice_rate() -> None:
    sink = RealtimeSink()
    out = VoiceOutput(ToneTts(), sink)
    firsts: list[int] = []
    await out.earcon("done")
    await out.speak("two words", on_first_audio=lambda: firsts.append(sink.samples))
    assert sink.rates == {RATE}
    assert np.array_equal(np.concatenate(sink.chunks)[: len(earcon("done", RATE))], earcon("done", RATE))
    assert sink.samples == len(earcon("done", RATE)) + 2 * (RATE // 10)
    assert firsts == [len(earcon("done", RATE))]  # called once, before the first speech chunk played


async def test_stop_cuts_speech_and_everything_queued() -> None:
    tts, sink = ToneTts(), RealtimeSink()
    out = VoiceOutput(tts, sink)

    async def deltas():
        for word in ("one two three four five six seven eight nine ten").split():
            yield word + " "

    speaking = asyncio.create_task(out.speak(deltas()))
    queued = asyncio.create_task(out.speak("a timer notice"))  # waits its turn
    await asyncio.sleep(0.15)
    out.stop()
    await asyncio.wait_for(asyncio.gather(speaking, queued), 0.5)
    assert tts.cancels == 1
    assert 0 < sink.samples < 4 * (RATE // 10)  # well short of ten words; the queued notice never played


async def test_prepared_lines_play_from_memory_exactly_as_synthesized(tts):
    """The offline/error lines are synthesized once at start-up; saying one later costs no synthesis."""
    from device.audio import MemorySink
    from device.client_events import OFFLINE_SPOKEN

    sink, prepared = MemorySink(), {}
    out = VoiceOutput(tts, sink, prepared=prepared)
    await out.prepare([OFFLINE_SPOKEN, ""])
    assert list(prepared) == [OFFLINE_SPOKEN]
    expected = prepared[OFFLINE_SPOKEN]
    assert len(expected) > tts.sample_rate_hz  # a real utterance, over a second of speech
    first = []
    await out.speak(OFFLINE_SPOKEN, on_first_audio=lambda: first.append(sink.samples_written))
    assert first == [0]
    # Piper samples noise, so a fresh synthesis never repeats sample for sample: equal means played from memory
    assert np.array_equal(sink.audio, expected)
    await out.speak("Something else.")   # anything not prepared is synthesized as before
    assert sink.samples_written > len(expected)


class GatedPiper:
    """The real Piper voice, held in its worker thread once it has synthesised a piece starting with `hold_at`,
    until the test has tripped the turn's token: the trip lands mid-synthesis, deterministically."""

    def __init__(self, voice, hold_at: str) -> None:
        import threading

        self.voice, self.hold_at = voice, hold_at
        self.holding, self.release = threading.Event(), threading.Event()
        self.texts: list[str] = []

    def synthesize(self, text, config):
        self.texts.append(text)
        for chunk in self.voice.synthesize(text, config):
            if text.startswith(self.hold_at):
                self.holding.set()
                self.release.wait(60)   # only a hang reaches the limit
            yield chunk


async def test_a_token_tripped_while_piper_synthesises_in_its_thread_stops_the_audio(tts):
    from device.audio import MemorySink
    from voxlens.cancel import CancelToken

    voice = tts.with_config(tts.cfg)           # the session's voice, its synthesiser wrapped for this test only
    gate = voice.voice = GatedPiper(tts.voice, hold_at="The second")
    sink, token = MemorySink(), CancelToken()
    out = VoiceOutput(voice, sink)
    speaking = asyncio.create_task(out.speak("The first sentence is short. The second sentence never plays. "
                                             "Nor does the third one.", cancel=token))
    await asyncio.to_thread(gate.holding.wait, 60)   # Piper has made "The second ..." in its worker thread
    assert gate.holding.is_set()
    played = sink.samples_written
    token.cancel()                                    # barge-in, while the worker still holds that audio
    gate.release.set()
    await speaking
    assert sink.samples_written == played             # not one sample after the trip reached the sink
    assert not any(t.startswith("Nor") for t in gate.texts)   # and nothing more was synthesised
    # the same voice speaks the next turn (a new token) in full
    await out.speak("Still here.", cancel=CancelToken())
    assert sink.samples_written > played
