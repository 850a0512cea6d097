"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""
from __future__ import annotations

import time

import jax


def best_time(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` warm calls of ``fn()`` (after one compile call)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)
