"""Assemble the device from its parts and run it on a frame source and an audio sink.

Why here: `voxlens device run`, `voxlens demo`, the end-to-end tests and the
voice benchmark all run the same device; models load once per process and are
shared by every run (each run gets its own per-stream state).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterable, Callable

import numpy as np

from device.actions import CONFIRMATION_HEADS, CONFIRMATIONS, DeviceActions
from device.client import AssistantClient
from device.client_events import ERROR_SPOKEN, OFFLINE_SPOKEN, TIMEOUT_SPOKEN
from device.commands import grammar_for, grammar_gaps, load_grammar
from device.engine import Asker, State, TurnEngine, TurnRecord
from device.listener import AudioLoop
from device.platform import LocalPlatform
from device.smart_turn import SmartTurn, from_config as smart_turn_from_config
from device.stt import SpeechToText, model_for
from device.tts import TextToSpeech
from device.voices import Voices
from device.vad import Endpointer, SileroVad
from device.voice_output import Sink, VoiceOutput
from device.wakeword import WakeWordDetector
from device.wakeword.verifier import Verifier, load_verifier
from voxlens.config import Config

log = logging.getLogger(__name__)
# said when things go wrong or after a device command: ready before they are needed
PREPARED_LINES = (OFFLINE_SPOKEN, TIMEOUT_SPOKEN, ERROR_SPOKEN, *CONFIRMATIONS, *CONFIRMATION_HEADS)


@dataclass
class DeviceModels:
    """The device's models, loaded once. The wake-word detector and VAD keep per-stream state: reset per run."""

    stt: SpeechToText
    tts: TextToSpeech | Voices
    vad: SileroVad
    wake: WakeWordDetector
    verifiers: dict[str, Verifier] = field(default_factory=dict)   # head name -> second stage
    prepared: dict[str, np.ndarray] = field(default_factory=dict)  # fixed spoken lines, synthesized once per process
    turn: SmartTurn | None = None   # semantic end of turn; None: silence-based endpointing


def _command_recheck(stt: SpeechToText) -> Callable[[np.ndarray, str], str]:
    """Whisper again on the utterance, prompted with the command vocabulary (device/command_rescue.py)."""
    def look(audio: np.ndarray, prompt: str) -> str:
        return stt.transcribe(audio, prompt=prompt, refit_loops=False).text   # a loop still holds the command
    return look


def load_models(cfg: Config) -> DeviceModels:
    """Every model, once. The Whisper follows [stt] languages, one voice per language; a language without its
    model or voice is a start-up warning naming the fix, and the others keep working."""
    stt = SpeechToText(model_for(cfg.models.stt, cfg.stt), cfg.stt)
    if (missing := stt.missing_languages()) and not stt.multilingual:
        log.warning("[stt] languages has %s, but %s hears English only; fix: [models] stt = \"whisper-base\" "
                    "(voxlens models prepare whisper-base)", ", ".join(missing), stt.name)
    elif missing:
        log.warning("[stt] languages has %s, which Whisper does not know; fix: use its language codes "
                    "(de, fr, es, it, pt, hi, th...); the others are heard", ", ".join(missing))
    for gap in grammar_gaps({*cfg.stt.languages, cfg.stt.language, cfg.device.language}):
        log.warning("%s", gap)   # that language's commands go to the gateway as questions; the others work
    wake = WakeWordDetector(list(cfg.wakeword.heads), cfg.wakeword.threshold, cfg.wakeword.patience_frames,
                            cfg.wakeword.refractory_s)
    tts = TextToSpeech(cfg.models.tts, cfg.tts)
    configured = {*cfg.stt.languages, cfg.stt.language} - {"", "en"}   # a voice per configured language
    voices = Voices.load(cfg, default=tts) if configured else tts
    return DeviceModels(stt=stt, tts=voices, vad=SileroVad(cfg.models.vad),
                        wake=wake, verifiers=load_verifiers(cfg, wake, stt), turn=smart_turn_from_config(cfg.vad))


def load_verifiers(cfg: Config, wake: WakeWordDetector, stt: SpeechToText) -> dict[str, Verifier]:
    """One verifier per head, as configured; a head whose verifier cannot load wakes on the first stage (warned)."""
    out = {}
    if stt.multilingual:   # the wake phrase is English: its verifier transcribes in English, never identifies
        from dataclasses import replace

        stt = stt.with_config(replace(stt.cfg, language="en"))
    for head in wake.heads:
        v = load_verifier(cfg.wakeword.verifier, head, lambda: stt, min_similarity=cfg.wakeword.verifier_min_similarity,
                          head_threshold=cfg.wakeword.verifier_threshold, window_s=cfg.wakeword.verifier_window_s)
        if v is not None:
            out[head.name] = v
    return out


@dataclass
class DeviceRun:
    engine: TurnEngine
    platform: LocalPlatform
    loop: AudioLoop

    @property
    def turns(self) -> list[TurnRecord]:
        return self.engine.turns


async def run_device(cfg: Config, models: DeviceModels, source: AsyncIterable[np.ndarray], sink: Sink, *,
                     emit: Callable[[dict], None] | None = None, linger_s: float = 15.0,
                     asker: Asker | None = None) -> DeviceRun:
    """Run the device until the source ends, then let the last turn and pending timers finish (at most linger_s).

    asker: who answers what is not a device command, used as `async with asker:` (default: the gateway's
    gRPC client; the Wyoming satellite passes its Home Assistant pipeline link)."""
    models.wake.reset()
    models.vad.reset()
    platform = LocalPlatform(cfg.device.media_dir, on_timer=lambda t: engine.timer_fired(t))
    client = asker if asker is not None else AssistantClient(cfg.device, status=platform)
    speaker = VoiceOutput(models.tts, sink, prepared=models.prepared)
    preparing = asyncio.create_task(speaker.prepare(list(PREPARED_LINES)))
    engine = TurnEngine(cfg.device, grammar=grammar_for(cfg.device.language, load_grammar("en")),  # none: English
                        actions=DeviceActions(platform, cfg.device.zone),
                        speaker=speaker, client=client, emit=emit,
                        barge_in_on_speech=cfg.device.barge_in_on_speech,
                        preemptive=cfg.device.preemptive and asker is None,   # a satellite's asker takes the audio
                        recheck=_command_recheck(models.stt) if cfg.device.command_recheck else None)
    endpointer = Endpointer(cfg.vad, models.vad, models.turn if cfg.vad.smart_turn else None)
    loop = AudioLoop(engine, wake=models.wake, endpointer=endpointer, stt=models.stt, emit=emit,
                     verifiers=models.verifiers, second_look_s=cfg.wakeword.second_look_s)
    async with client:
        try:
            await loop.run(source)
            await _linger(engine, platform, linger_s)
        finally:
            preparing.cancel()
            await engine.close()
            platform.close()
    return DeviceRun(engine, platform, loop)


async def _linger(engine: TurnEngine, platform: LocalPlatform, linger_s: float) -> None:
    """After the input ends: finish the turn being answered and timers still running, within linger_s."""
    async def settled() -> None:
        await engine.settle()
        while platform.timers() or engine.state in (State.THINKING, State.SPEAKING):
            await asyncio.sleep(0.05)
            await engine.settle()
    try:
        await asyncio.wait_for(settled(), linger_s)
    except asyncio.TimeoutError:
        log.warning("input ended; stopped waiting for the last turn or timer after %.0f s", linger_s)
