"""A busy CPU for benchmarks: spinning processes beside the measured work.

Why: a glasses CPU always has other work (audio, camera, the OS); a figure that holds only on an idle
box does not hold for users, so every benchmark reports both. Two kinds of worker, because they load a
core differently: a pure-Python spin (the interpreter, a little memory) and a numpy loop (vector units
and cache, like a model's matrix products), each pinned to one thread.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

KINDS = ("python", "numpy")


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


def _numpy_loop(stop) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # one core per worker, set before numpy loads its BLAS
    import numpy as np

    a = np.random.default_rng(0).standard_normal((256, 256))
    while not stop.is_set():
        for _ in range(20):
            a = a @ a
            a /= np.abs(a).max()


_TARGETS = {"python": _spin, "numpy": _numpy_loop}


@contextmanager
def busy_workers(n: int, kinds: tuple[str, ...] = KINDS) -> Iterator[list[str]]:
    """Keep `n` worker processes busy for the block, cycling through `kinds`; yields each worker's kind."""
    unknown = set(kinds) - set(_TARGETS)
    if unknown:
        raise ValueError(f"unknown busy worker kind(s) {sorted(unknown)}; use {list(_TARGETS)}")
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    chosen = [kinds[i % len(kinds)] for i in range(n)]
    procs = [ctx.Process(target=_TARGETS[k], args=(stop,), daemon=True) for k in chosen]
    for p in procs:
        p.start()
    time.sleep(0.5)  # spawned interpreters take a moment before they spin
    try:
        yield chosen
    finally:
        stop.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()


@contextmanager
def busy_cpu(spinners: int | None = None) -> Iterator[int]:
    """Keep `spinners` pure-Python spinners (default: one per core) busy for the block; yields how many run."""
    n = (os.cpu_count() or 1) if spinners is None else spinners
    with busy_workers(n, ("python",)):
        yield n
