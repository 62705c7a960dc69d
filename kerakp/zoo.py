"""The models packaged with kerakp (in kerakp/presets/), by name: `PRESETS` is the table (a name, its file, and the
accurate preset it was distilled from, for a fast one); each file has a model card beside it (`.md`)."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# the default: the fastest preset within 0.0005 NME of the most accurate on its validation split (README,
# "Packaged models", quotes the figures from BENCHMARKS.md)
DEFAULT_PRESET = "300w-fast"
PRESETS = {   # name -> (file in kerakp/presets/, the preset it was distilled from or "")
    "300w": ("300w_mobilenetv2_heatmap.tflite", ""),
    "300w-fast": ("300w_fast.tflite", "300w"),
    "ytf68": ("ytf68_mobilenetv2_heatmap.tflite", ""),
    "ytf68-fast": ("ytf68_fast.tflite", "ytf68"),
}


@dataclass(frozen=True)
class Preset:
    """A packaged model: its name, file, model card (its first sentence as `summary`) and teacher preset."""

    name: str
    path: Path
    card: Path
    summary: str
    teacher: str = ""


def presets() -> dict[str, Preset]:
    """The packaged models by name (`Landmarker(name)`, or a name in place of MODEL on the command line)."""
    folder = Path(str(resources.files("kerakp") / "presets"))
    found = {}
    for name, (file, teacher) in PRESETS.items():
        card = folder / file.replace(".tflite", ".md")
        text = card.read_text().split("\n\n")[1] if card.is_file() else ""
        summary = " ".join(text.split()).split(". ")[0]   # the card's first sentence
        found[name] = Preset(name, folder / file, card, summary, teacher)
    return found


def model_path(model) -> Path:
    """A preset's file for a preset name (None: the default preset), else the path given."""
    if model is None or str(model) in PRESETS:
        return presets()[DEFAULT_PRESET if model is None else str(model)].path
    return Path(model)
