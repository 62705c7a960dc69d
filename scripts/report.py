"""Helper of the benchmark scripts: write one `## TITLE` section of BENCHMARKS.md."""
from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
