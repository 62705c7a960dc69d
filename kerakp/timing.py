"""Wall-clock timing of repeated calls, for benchmarks and `kerakp compare`."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    """The processor a timing was taken on: cores, architecture, model and the vector units XNNPACK picks its
    kernels by (the same model runs at different ratios to another on AVX2 and AVX-512 machines)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    units = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    parts = [platform.machine(), fields.get("model name", platform.processor()), units]
    return f"{os.cpu_count()} CPU cores ({', '.join(p for p in parts if p)})"


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
