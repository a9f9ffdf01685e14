"""Train a wake-phrase head on a CPU: synthetic positives, synthetic and real negatives, hard-negative mining.

The recipe: positives are only ever synthetic (no recording of the phrase is
needed); negatives are synthetic speech and noise plus real recorded speech
(`negatives`, by default one speaker fold of shared/eval's ordinary speech, see
device/wakeword/corpus.py). After a first fit, every real negative window is
scored, the ones above `mining_threshold` are added again with `mining_weight`,
and the head is refitted, `mining_rounds` times. A second, larger network
(the verifier head, `<out>.verifier.onnx`) is then fitted on the positives
against the mined hard negatives.

Time goes to generation and features; front-end features of real files and of
the synthesized set are cached on disk (device/wakeword/features_cache.py), so
a retrain with other negatives or another mining setting costs the fitting
only. `TrainPlan.for_minutes` sizes every stage from the time budget, and each
generation stage also stops at its share of the deadline.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from device.wakeword.frontend import FRAME_SAMPLES, HEAD_EMBEDDINGS, FrontEnd
from device.wakeword.train import augment as aug
from device.wakeword.train import texts

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
    negatives: tuple[str, ...] = ()     # folders of real negative speech (empty: synthetic negatives only)
    negative_fold: int | None = None    # train on one speaker fold of them (the bench keeps the other unseen); None: all
    real_stride: int = 2                # real negative windows in the first fit: every 2nd frame
    mining_rounds: int = 2
    mining_threshold: float = 0.1       # real windows the head scores above this are mined
    mining_weight: float = 3.0
    verifier: bool = True               # also fit the second-stage head on the mined negatives
    verifier_hidden: int = 256

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
    real_negatives: str = ""                               # which real speech, how much, what was skipped
    mined: list[int] = field(default_factory=list)         # real windows over mining_threshold, per round
    verifier_path: Path | None = None
    cache_hits: int = 0                                    # real files whose features came from the cache
    synth_cached: bool = False                             # the synthesized windows came from the cache


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
    from device.wakeword.train import voices

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


def _synth_key(plan: TrainPlan) -> str:
    import hashlib
    import json

    fields = {k: v for k, v in plan.__dict__.items()
              if k not in ("negatives", "negative_fold", "real_stride", "mining_rounds", "mining_threshold",
                           "mining_weight", "verifier", "verifier_hidden", "epochs", "hidden", "deadline_s")}
    from device.wakeword.features_cache import FRONTEND_VERSION

    fields["frontend"] = FRONTEND_VERSION
    fields["recipe"] = 1  # bump when synthesize_clips/build_windows change their output
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:24]


def synthetic_windows(fe: FrontEnd, plan: TrainPlan, rng: np.random.Generator, report: TrainReport):
    """Synthesize and featurise, or load the same set from the cache (keyed by phrase, counts, seed, voices)."""
    from device.wakeword.features_cache import cache_dir

    path = cache_dir() / f"synth-{_synth_key(plan)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                x, y, w, g = z["x"].astype(np.float32), z["y"], z["w"], z["g"]
                report.clips = {str(k): int(v) for k, v in zip(z["clip_names"], z["clip_counts"])}
            report.synth_cached = True
            return x, y, w, g
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("synthetic feature cache %s unreadable (%s); synthesizing again", path, exc)
    clips = synthesize_clips(plan, rng, report.clips)
    x, y, w, g = build_windows(fe, clips, plan, rng)
    x16 = x.astype(np.float16)   # what the cache keeps; fitting on it too makes a cached retrain identical
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.npz")
    np.savez(tmp, x=x16, y=y, w=w, g=g,
             clip_names=np.array(list(report.clips)), clip_counts=np.array(list(report.clips.values())))
    tmp.replace(path)
    return x16.astype(np.float32), y, w, g


def real_negative_windows(fe: FrontEnd, plan: TrainPlan, report: TrainReport) -> list[np.ndarray]:
    """Per file, every head window (stride 1) over the real negative files of the training fold, features from the cache."""
    from device.wakeword.corpus import read_negative_files
    from device.wakeword.features_cache import EmbeddingCache, windows_of

    if not plan.negatives:
        return []
    files = read_negative_files(list(plan.negatives), plan.negative_fold)
    report.real_negatives = files.summary() + (f" (speaker fold {plan.negative_fold})" if plan.negative_fold is not None else "")
    cache = EmbeddingCache(fe)
    silence = fe.silence_embedding()
    out = [windows_of(cache.embeddings(a), silence) for _, a in tqdm(files.clips, desc="features (real negatives)", unit="file", leave=False)]
    report.cache_hits = cache.hits
    return out


def _balance(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Positives carry a third of the total weight; mean weight 1."""
    w = w.astype(np.float32).copy()
    n_pos, w_neg = max(1.0, float(w[y == 1].sum())), float(w[y == 0].sum())
    w[y == 1] *= 0.5 * w_neg / n_pos
    return w * (len(w) / w.sum())


def train_head(phrase: str, out: str | Path, minutes: float = 10.0, plan: TrainPlan | None = None) -> TrainReport:
    """The whole recipe; writes an openWakeWord-format ONNX head to `out` (and its verifier beside it)."""
    from device.wakeword.train.head import export_onnx, fit_mlp, predict

    plan = plan or TrainPlan.for_minutes(phrase, minutes)
    rng = np.random.default_rng(plan.seed)
    report = TrainReport(Path(out), phrase)
    t0 = time.monotonic()
    fe = FrontEnd()
    xs, ys, ws, groups = synthetic_windows(fe, plan, rng, report)
    t1 = time.monotonic()
    per_file = real_negative_windows(fe, plan, report)
    t2 = time.monotonic()
    # The first fit sees half of the files; mining then scans all of them, so what it finds is
    # what the head gets wrong on speech it has not fitted (on fitted windows it is always right).
    empty = np.zeros((0, HEAD_EMBEDDINGS, 96), np.float32)
    first = np.concatenate([w[::plan.real_stride] for w in per_file[::2]] or [empty])
    real = np.concatenate(per_file or [empty])
    x = np.concatenate([xs, first]) if len(first) else xs
    y = np.concatenate([ys, np.zeros(len(first), ys.dtype)])
    w0 = np.concatenate([ws, np.ones(len(first), np.float32)])
    g = np.concatenate([groups, np.array(["real"] * len(first))])
    import os
    if os.environ.get("VOXLENS_WAKEWORD_DUMP"):  # developer aid: keep the windows to compare fitting choices
        np.savez(os.environ["VOXLENS_WAKEWORD_DUMP"], x=x, y=y, w=w0, g=g)
    logger.info("fitting on %d positive / %d negative windows (%d real)", int(y.sum()), int(len(y) - y.sum()), len(first))
    mean, std, model = fit_mlp(x, y, _balance(y, w0), hidden=plan.hidden, epochs=plan.epochs, seed=plan.seed)
    mined = np.zeros(len(real), bool)
    for _ in range(plan.mining_rounds if len(real) else 0):
        scores = predict(mean, std, model, real)
        new = (scores > plan.mining_threshold) & ~mined
        report.mined.append(int(new.sum()))
        if not new.any():
            break
        mined |= new
        hard = real[mined]
        xm = np.concatenate([x, hard])
        ym = np.concatenate([y, np.zeros(len(hard), y.dtype)])
        wm = np.concatenate([w0, np.full(len(hard), plan.mining_weight, np.float32)])
        mean, std, model = fit_mlp(xm, ym, _balance(ym, wm), hidden=plan.hidden, epochs=plan.epochs, seed=plan.seed,
                                   norm=(mean, std))
    report.windows_positive, report.windows_negative = int(y.sum()), int(len(y) - y.sum() + mined.sum())
    report.train_accuracy = float(model.score((x.reshape(len(x), -1) - mean) / std, y))
    export_onnx(out, mean, std, model, phrase)
    t3 = time.monotonic()
    if plan.verifier:
        report.verifier_path = train_verifier(out, phrase, plan, x, y, w0, real, mined, predict(mean, std, model, xs))
    t4 = time.monotonic()
    report.seconds = {"synthesis+features": t1 - t0, "real features": t2 - t1, "fit+mining": t3 - t2,
                      "verifier": t4 - t3, "total": t4 - t0}
    return report


def train_verifier(out: str | Path, phrase: str, plan: TrainPlan, x: np.ndarray, y: np.ndarray, w: np.ndarray,
                   real: np.ndarray, mined: np.ndarray, synth_scores: np.ndarray) -> Path:
    """The second stage: a larger net that only ever sees what the first one fires on.

    Training set: the positives; the negatives the first head scores high
    (synthetic and real: the mined ones); and a thin sample of the rest so it
    stays calibrated on ordinary input.
    """
    from device.wakeword.train.head import export_onnx, fit_mlp

    n_syn = len(synth_scores)
    pos = np.flatnonzero(y[:n_syn] == 1)
    neg_syn = np.flatnonzero((y[:n_syn] == 0) & (synth_scores > plan.mining_threshold))
    rng = np.random.default_rng(plan.seed + 1)
    rest = np.flatnonzero(y == 0)
    rest = rng.choice(rest, size=min(len(rest), 4 * len(pos)), replace=False)
    hard = real[mined]
    xv = np.concatenate([x[pos], x[neg_syn], x[rest], hard])
    yv = np.concatenate([np.ones(len(pos), int), np.zeros(len(neg_syn) + len(rest) + len(hard), int)])
    wv = np.concatenate([w[pos], np.full(len(neg_syn), 2.0), np.ones(len(rest)), np.full(len(hard), 2.0)]).astype(np.float32)
    mean, std, model = fit_mlp(xv, yv, _balance(yv, wv), hidden=plan.verifier_hidden, epochs=plan.epochs, seed=plan.seed + 1)
    path = Path(out).with_name(Path(out).stem + ".verifier.onnx")
    export_onnx(path, mean, std, model, phrase)
    return path
