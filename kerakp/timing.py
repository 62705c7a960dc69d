"""Wall-clock timing of repeated calls, for benchmarks and `kerakp compare`."""
from __future__ import annotations

import time

import numpy as np


def time_calls(call, runs: int, warmup: int = 10) -> dict:
    """Median and p95 milliseconds of `call()` over `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}
