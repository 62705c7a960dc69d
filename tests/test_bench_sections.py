"""The benchmark scripts' section writer (scripts/report.py): a rerun replaces its section's figures and keeps the notes
below them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from report import NOTES, replace_section  # noqa: E402


def test_a_rerun_replaces_the_figures_and_keeps_the_hand_written_notes(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n## Speed\n\nold table\n\n{NOTES}\n- a note\n\n## Other\n\nkept\n")
    replace_section(path, "Speed", "new table")
    text = path.read_text()
    assert "old table" not in text and "new table" in text
    assert text.index("new table") < text.index(NOTES) < text.index("- a note") < text.index("## Other")
    assert text.endswith("## Other\n\nkept\n")


def test_a_new_section_is_appended_and_one_without_notes_is_replaced_whole(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    replace_section(path, "Speed", "first")
    replace_section(path, "Speed", "second")
    replace_section(path, "Size", "small")
    assert path.read_text() == "# Benchmarks\n\n## Speed\n\nsecond\n\n## Size\n\nsmall\n"
