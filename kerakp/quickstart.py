"""`kerakp quickstart`: the main job on the embedded default, from nothing: synthetic faces with exact
labels, a small model trained on them, and its end-to-end evaluation on persons it never saw."""
from __future__ import annotations

from pathlib import Path

from kerakp.detect import DEFAULT_DETECTOR
from kerakp.errors import KerakpError

MARKER = ".kerakp-quickstart"   # a folder holding it was made by quickstart, which may replace its contents


def quickstart(out="runs/quickstart", images: int = 600, epochs: int | None = None, detector: str = DEFAULT_DETECTOR,
               progress: bool = True) -> tuple[dict, Path]:
    """Generate `images` synthetic faces (kept and reused by a later run), train the quickstart recipe on
    them and evaluate on the held-out synthetic persons (with the page `evaluate/report.html`); returns the metrics
    and the trained model's path. A
    folder quickstart did not make is refused."""
    from kerakp.api import Landmarker
    from kerakp.data.synthetic import write_synthetic_set

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise KerakpError(f"{out.resolve()}: exists and was not made by kerakp quickstart; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    data = out / "data" / "landmarks.csv"
    if not data.is_file() or len(data.read_text().splitlines()) != images + 1:
        write_synthetic_set(out / "data", images, progress=progress, overwrite=True)
    overrides = {"epochs": epochs} if epochs is not None else {}
    model = Landmarker.train(data, "quickstart", out / "run", format="ytf68", overwrite=True, progress=progress, **overrides)
    lm = Landmarker(model.path, detector=detector)
    metrics = lm.evaluate(data, subset="val", out=out / "evaluate", format="ytf68", overwrite=True, progress=progress,
                          report=True)
    return metrics, model.path
