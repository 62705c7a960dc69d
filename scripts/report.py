"""Helper of the benchmark scripts: write one `## TITLE` section of BENCHMARKS.md."""
from __future__ import annotations

import re
from pathlib import Path

NOTES = "<!-- notes -->"  # a section's lines from this one on are written by hand, and a rerun keeps them


def replace_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(text)
    notes = old.group(0).partition(NOTES)[2].strip() if old and NOTES in old.group(0) else None
    section = f"## {title}\n\n{body.strip()}\n" + (f"\n{NOTES}\n{notes}\n" if notes is not None else "")
    text = pattern.sub(lambda _: section + "\n", text) if old else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
