"""A busy CPU for benchmarks: one spinning process per core beside the measured work.

Why: a glasses CPU always has other work (audio, camera, the OS); a figure that holds only on an idle
box does not hold for users, so every benchmark reports both.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from contextlib import contextmanager
from typing import Iterator


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


@contextmanager
def busy_cpu(spinners: int | None = None) -> Iterator[int]:
    """Keep `spinners` processes (default: one per core) spinning for the block; yields how many run."""
    n = (os.cpu_count() or 1) if spinners is None else spinners
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # spawned interpreters take a moment before they spin
    try:
        yield n
    finally:
        stop.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
