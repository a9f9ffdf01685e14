"""Augmentation: synthetic rooms, background noise at random SNR, gain, placement in a longer stream.

Why synthetic everything: no noise or impulse-response corpus ships with the
project, and a head trained on clean TTS fails on real microphones. Exponential
decaying-noise impulse responses (RT60 0.1-0.9 s) and coloured noise (white,
pink, brown, hum) cover the main mismatches cheaply; babble comes from the
negative speech itself. A random resampling (vocal tract length
perturbation) turns each synthetic voice into a spread of speakers.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, lfilter

RATE_HZ = 16000


def synthetic_rir(rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: direct path, sparse early reflections, exponentially decaying diffuse tail."""
    rt60_s = float(rng.uniform(0.1, 0.9))
    n = int(min(rt60_s, 0.6) * RATE_HZ) + 1
    t = np.arange(n) / RATE_HZ
    tail = rng.normal(0, 1, n) * np.exp(-6.9 * t / rt60_s)
    tail = lfilter([1.0], [1.0, -float(rng.uniform(0.0, 0.7))], tail)      # rooms absorb highs
    rir = tail * float(rng.uniform(0.05, 0.4))
    for _ in range(int(rng.integers(2, 8))):                                  # early reflections
        k = int(rng.uniform(0.002, 0.03) * RATE_HZ)
        if k < n:
            rir[k] += float(rng.uniform(-0.6, 0.6))
    rir[0] = 1.0
    return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(["white", "pink", "brown", "hum"])
    white = rng.normal(0, 1, n)
    if kind == "pink":
        x = lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.522189400], white)
    elif kind == "brown":
        x = lfilter([1.0], [1.0, -0.995], white)
    elif kind == "hum":
        f = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / RATE_HZ
        x = sum(np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 6)) + 0.3 * white
    else:
        x = white
    x = x - x.mean()
    return (x / (x.std() + 1e-9)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def mix_at_snr(stream: np.ndarray, noise: np.ndarray, snr_db: float, speech_rms: float) -> np.ndarray:
    """Add noise so that speech (of RMS `speech_rms`, measured on the clip alone) sits `snr_db` above it."""
    return stream + noise * (speech_rms / rms(noise) / (10 ** (snr_db / 20)))


def to_int16(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale to a peak level (dBFS) and quantise; real microphones deliver anything from -40 to 0 dBFS."""
    peak = float(np.max(np.abs(x))) + 1e-9
    return np.clip(x / peak * (10 ** (peak_dbfs / 20)) * 32767, -32768, 32767).astype(np.int16)


def vocal_tract_warp(x: np.ndarray, rng: np.random.Generator, max_warp: float = 0.12) -> np.ndarray:
    """Resample by a random factor: scales formants, pitch and tempo together, a cheap new 'speaker' per clip."""
    import soxr

    factor = float(rng.uniform(1 - max_warp, 1 + max_warp))
    return soxr.resample(x, RATE_HZ, int(RATE_HZ * factor)).astype(np.float32) if abs(factor - 1) > 0.01 else x


def place(clip: np.ndarray, total: int, end_at: int, background: np.ndarray | None = None) -> np.ndarray:
    """Put `clip` so it ends at sample `end_at` of a `total`-sample stream (cut on the left if needed)."""
    out = np.zeros(total, np.float32) if background is None else background[:total].astype(np.float32).copy()
    start = end_at - len(clip)
    src = clip[max(0, -start):]
    out[max(0, start): max(0, start) + len(src)] += src[: total - max(0, start)]
    return out


def augment(clip: np.ndarray, total: int, end_at: int, rng: np.random.Generator, babble: np.ndarray | None = None) -> np.ndarray:
    """One training stream: the clip in a room, at a random place, with noise or silence around it, as int16."""
    x = vocal_tract_warp(clip.astype(np.float32), rng)
    if rng.random() < 0.6:
        x = fftconvolve(x, synthetic_rir(rng))[: len(x) + int(0.3 * RATE_HZ)].astype(np.float32)
        end_at = min(total, end_at + int(0.05 * RATE_HZ))
    stream = place(x, total, end_at)
    r = rng.random()
    if r < 0.15:   # digital silence around it (how eval pads short clips)
        pass
    else:
        noise = coloured_noise(total, rng)
        if babble is not None and len(babble) >= total and rng.random() < 0.3:
            off = int(rng.integers(0, len(babble) - total + 1))
            noise = noise * 0.3 + babble[off:off + total] / (rms(babble[off:off + total]) + 1e-9)
        stream = mix_at_snr(stream, noise, float(rng.uniform(0, 35)), rms(x))
    return to_int16(stream, float(rng.uniform(-35, -1)))
