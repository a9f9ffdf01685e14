"""Train a wake-phrase head from synthetic speech on a CPU: generate, augment, featurise, fit, export.

Time goes to generation (Kokoro: ~1 s per clip on a shared core pair) and
features; fitting the MLP takes seconds. `TrainPlan.for_minutes` sizes every
stage from the time budget, and each generation stage also stops at its share
of the deadline, so `--minutes N` is a real upper bound (plus fitting).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from device.wakeword_frontend import FRAME_SAMPLES, HEAD_EMBEDDINGS, FrontEnd
from device.wakeword_train import augment as aug
from device.wakeword_train import texts

logger = logging.getLogger(__name__)

RATE_HZ = 16000
STREAM_FRAMES = 30                       # 2.4 s per phrase/confusable training stream
LONG_FRAMES = 250                        # 20 s per ordinary-speech stream
POS_AFTER_END_S = 0.32                   # windows ending up to this long after the phrase are positive
PARTIAL_BEFORE_END_S = 0.35
HARD_WEIGHT = 2.0              # windows ending this long before the phrase end are hard negatives
SOURCES = ("kokoro", "hibari", "piper")  # piper only ever speaks negatives (see voices.py)
DEFAULT_SOURCES = ("hibari", "piper")    # Kokoro (Japanese styles speaking English) measured no gain on real speakers


@dataclass(frozen=True)
class TrainPlan:
    phrase: str
    kokoro_positives: int = 200
    hibari_positives: int = 1000
    kokoro_confusables: int = 0         # phoneme confusables and partial phrases: off by default, they cost
    hibari_confusables: int = 0         # ~35-40 points of FRR on 56 real speakers (models/wakeword/README.md)
    hibari_partials: int = 0
    hibari_sentences: int = 1500
    piper_sentences: int = 100
    noise_streams: int = 150
    positive_copies: int = 2            # augmented copies of each positive clip
    epochs: int = 30
    hidden: int = 64
    seed: int = 0
    sources: tuple[str, ...] = DEFAULT_SOURCES
    deadline_s: float = 600.0

    @classmethod
    def for_minutes(cls, phrase: str, minutes: float, **overrides) -> "TrainPlan":
        """Counts that fit `minutes` on 2 shared cores (measured: Kokoro ~0.9 s/clip, hibari ~0.03 s, features ~15 ms/stream)."""
        k = max(minutes, 0.2) / 10.0
        plan = cls(
            phrase=phrase,
            kokoro_positives=int(200 * k), hibari_positives=int(1000 * k),
            hibari_sentences=int(1500 * k), piper_sentences=int(100 * k), noise_streams=int(150 * k),
            deadline_s=minutes * 60.0,
        )
        return replace(plan, **overrides)


@dataclass
class TrainReport:
    path: Path
    phrase: str
    clips: dict[str, int] = field(default_factory=dict)
    windows_positive: int = 0
    windows_negative: int = 0
    train_accuracy: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)


def _gen(label: str, n: int, make, deadline: float, counts: dict[str, int]) -> list[np.ndarray]:
    out = []
    for _ in tqdm(range(n), desc=f"synth {label}", unit="clip", leave=False):
        if time.monotonic() > deadline:
            logger.warning("synthesis of %s stopped at %d/%d clips: time budget", label, len(out), n)
            break
        clip = make()
        if len(clip) > 0.15 * RATE_HZ:
            out.append(clip)
    counts[label] = len(out)
    return out


@dataclass
class Clips:
    """Synthesized float32 16 kHz clips, each tagged with where it came from (the tags group windows in dumps)."""
    positives: list[tuple[np.ndarray, str]]   # tag: "pos-hibari" | "pos-kokoro"
    hard: list[tuple[np.ndarray, str]]        # tag: "hard" (phoneme confusables) | "partial" (part of the phrase)
    speech: list[np.ndarray]


def synthesize_clips(plan: TrainPlan, rng: np.random.Generator, counts: dict[str, int]) -> Clips:
    from device.wakeword_train import voices

    t0 = time.monotonic()
    budget = plan.deadline_s
    hib = voices.HibariVoice() if "hibari" in plan.sources or "kokoro" in plan.sources else None
    phrase_ps = hib.phonemize(plan.phrase).rstrip(".!?")
    logger.info("phrase %r -> phonemes %s", plan.phrase, phrase_ps)
    confusables = texts.confusable_phonemes(phrase_ps, rng, plan.kokoro_confusables + plan.hibari_confusables)
    banned = set(texts.phrase_words(plan.phrase))
    pos: list[np.ndarray] = []
    hard: list[np.ndarray] = []
    n_hib_pos = n_conf = n_partial = 0
    speech: list[np.ndarray] = []
    if "hibari" in plan.sources:
        pos += _gen("hibari positives", plan.hibari_positives, lambda: hib.synthesize(phrase_ps, rng), t0 + 0.15 * budget, counts)
        n_hib_pos = len(pos)
        hard += _gen("hibari confusables", plan.hibari_confusables,
                     lambda: hib.synthesize(str(rng.choice(confusables)), rng), t0 + 0.2 * budget, counts)
    partials = texts.partial_texts(plan.phrase)
    if hib is not None and partials:
        n_conf = len(hard)
        hard += _gen("hibari partials", plan.hibari_partials,
                     lambda: hib.synthesize(hib.phonemize(str(rng.choice(partials))), rng), t0 + 0.22 * budget, counts)
        n_partial = len(hard) - n_conf
    if hib is not None:
        def sentence() -> np.ndarray:
            text = str(rng.choice(texts.SENTENCES)) if rng.random() < 0.3 else texts.random_word_text(rng, banned)
            return hib.synthesize(hib.phonemize(text), rng)
        speech += _gen("hibari speech", plan.hibari_sentences, sentence, t0 + 0.3 * budget, counts)
    if "kokoro" in plan.sources:
        kok = voices.KokoroVoices()
        pos += _gen("kokoro positives", plan.kokoro_positives, lambda: kok.synthesize(phrase_ps, rng), t0 + 0.55 * budget, counts)
        hard += _gen("kokoro confusables", plan.kokoro_confusables,
                     lambda: kok.synthesize(str(rng.choice(confusables)), rng), t0 + 0.68 * budget, counts)
    if "piper" in plan.sources and plan.piper_sentences:
        pip = voices.PiperVoice()
        def piper_sentence() -> np.ndarray:
            text = str(rng.choice(texts.SENTENCES)) if rng.random() < 0.5 else texts.random_word_text(rng, banned)
            return pip.synthesize_text(text, rng)
        speech += _gen("piper speech", plan.piper_sentences, piper_sentence, t0 + 0.75 * budget, counts)
    if not pos:
        raise RuntimeError(f"no positive clips were synthesized for {plan.phrase!r} (sources {plan.sources}); is hibari-tts installed? pip install -e '.[train]'")
    pos_tags = ["pos-hibari"] * n_hib_pos + ["pos-kokoro"] * (len(pos) - n_hib_pos)
    hard_tags = ["hard"] * n_conf + ["partial"] * n_partial + ["hard"] * (len(hard) - n_conf - n_partial)
    return Clips(list(zip(pos, pos_tags)), list(zip(hard, hard_tags)), speech)


def _window(emb: np.ndarray, i: int, silence: np.ndarray) -> np.ndarray:
    """The (16, 96) window a head sees after frame i of a stream (silence before the stream)."""
    start = i - HEAD_EMBEDDINGS + 1
    if start >= 0:
        return emb[start:i + 1]
    return np.concatenate([np.repeat(silence[np.newaxis], -start, axis=0), emb[: i + 1]])


def _frames_ending_between(lo_s: float, hi_s: float) -> list[int]:
    return [i for i in range(STREAM_FRAMES) if lo_s <= (i + 1) * FRAME_SAMPLES / RATE_HZ <= hi_s]


def _long_speech_streams(speech: list, rng: np.random.Generator, babble: np.ndarray | None) -> list[np.ndarray]:
    """Ordinary speech as continuous 20 s streams: each embedding then serves many windows (8x cheaper than one stream per clip)."""
    total = LONG_FRAMES * FRAME_SAMPLES
    streams, cur, n = [], [], 0
    for clip in speech:
        gap = int(rng.uniform(0.05, 0.6) * RATE_HZ)
        length = len(clip) + gap
        cur.append(aug.augment(clip, length, len(clip) + gap // 2, rng, babble))
        n += length
        if n >= total:
            streams.append(np.concatenate(cur)[:total])
            cur, n = [], 0
    if cur and n >= total // 2:
        streams.append(np.concatenate(cur + [np.zeros(total, np.int16)])[:total])
    return streams


def build_windows(fe: FrontEnd, clips: Clips, plan: TrainPlan, rng: np.random.Generator):
    """Augmented streams -> windows X (N, 16, 96), labels y, weights w, group tags g."""
    speech = clips.speech
    total = STREAM_FRAMES * FRAME_SAMPLES
    babble = np.concatenate(speech) if speech else None
    streams, ends, kinds = [], [], []
    for clip, tag in clips.positives:
        for _ in range(plan.positive_copies):
            end = total - int(rng.uniform(0.3, 0.7) * RATE_HZ)
            streams.append(aug.augment(clip, total, end, rng, babble)); ends.append(end); kinds.append(tag)
    for clip, tag in clips.hard:
        end = total - int(rng.uniform(0.3, 0.7) * RATE_HZ)
        streams.append(aug.augment(clip, total, end, rng, babble)); ends.append(end); kinds.append(tag)
    for _ in range(plan.noise_streams):
        noise = aug.coloured_noise(total, rng)
        streams.append(aug.to_int16(noise, float(rng.uniform(-60, -10)))); ends.append(0); kinds.append("noise")
    silence = fe.silence_embedding()
    xs, ys, ws, gs = [], [], [], []
    batch = 64
    for s in tqdm(range(0, len(streams), batch), desc="features (clips)", unit="batch", leave=False):
        emb = fe.embeddings_batch(np.stack(streams[s:s + batch]))
        for e, end, kind in zip(emb, ends[s:s + batch], kinds[s:s + batch]):
            t_end = end / RATE_HZ
            if kind.startswith("pos"):
                for i in _frames_ending_between(t_end, t_end + POS_AFTER_END_S):
                    xs.append(_window(e, i, silence)); ys.append(1); ws.append(1.0); gs.append(kind)
                for i in _frames_ending_between(t_end - 0.9, t_end - PARTIAL_BEFORE_END_S)[::2]:
                    xs.append(_window(e, i, silence)); ys.append(0); ws.append(0.5); gs.append("early")
            elif kind in ("hard", "partial"):
                for i in _frames_ending_between(t_end - 0.3, t_end + 0.5):
                    xs.append(_window(e, i, silence)); ys.append(0); ws.append(HARD_WEIGHT); gs.append(kind)
            else:
                for i in range(int(rng.integers(0, 3)), STREAM_FRAMES, 3):
                    xs.append(_window(e, i, silence)); ys.append(0); ws.append(1.0); gs.append("noise")
    long_streams = _long_speech_streams(speech, rng, babble)
    for s in tqdm(range(0, len(long_streams), 8), desc="features (speech)", unit="batch", leave=False):
        for e in fe.embeddings_batch(np.stack(long_streams[s:s + 8])):
            for i in range(HEAD_EMBEDDINGS + int(rng.integers(0, 2)), LONG_FRAMES, 2):
                xs.append(_window(e, i, silence)); ys.append(0); ws.append(1.0); gs.append("speech")
    x, y, w = np.stack(xs).astype(np.float32), np.array(ys), np.array(ws, np.float32)

    n_pos, w_neg = max(1, int(y.sum())), float(w[y == 0].sum())
    w[y == 1] *= 0.5 * w_neg / n_pos          # positives carry a third of the total weight
    w *= len(w) / w.sum()
    return x, y, w, np.array(gs)


def train_head(phrase: str, out: str | Path, minutes: float = 10.0, plan: TrainPlan | None = None) -> TrainReport:
    """The whole recipe; writes an openWakeWord-format ONNX head to `out`."""
    from device.wakeword_train.head import export_onnx, fit_mlp

    plan = plan or TrainPlan.for_minutes(phrase, minutes)
    rng = np.random.default_rng(plan.seed)
    report = TrainReport(Path(out), phrase)
    t0 = time.monotonic()
    clips = synthesize_clips(plan, rng, report.clips)
    t1 = time.monotonic()
    fe = FrontEnd()
    x, y, w, groups = build_windows(fe, clips, plan, rng)
    t2 = time.monotonic()
    report.windows_positive, report.windows_negative = int(y.sum()), int(len(y) - y.sum())
    import os
    if os.environ.get("VOXLENS_WAKEWORD_DUMP"):  # developer aid: keep the windows to compare fitting choices
        np.savez(os.environ["VOXLENS_WAKEWORD_DUMP"], x=x, y=y, w=w, g=groups)
    logger.info("fitting on %d positive / %d negative windows", report.windows_positive, report.windows_negative)
    mean, std, model = fit_mlp(x, y, w, hidden=plan.hidden, epochs=plan.epochs, seed=plan.seed)
    report.train_accuracy = float(model.score((x.reshape(len(x), -1) - mean) / std, y))
    export_onnx(out, mean, std, model, phrase)
    t3 = time.monotonic()
    report.seconds = {"synthesis": t1 - t0, "features": t2 - t1, "fit": t3 - t2, "total": t3 - t0}
    return report
