"""Helpers of the benchmark scripts: time a call, and write one `## TITLE` section of BENCHMARKS.md."""
from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def time_calls(call, runs: int, warmup: int = 10) -> dict:
    """Median and p95 milliseconds of `call()` over `runs` calls after `warmup` untimed ones."""
    import time

    import numpy as np

    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}
