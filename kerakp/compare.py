"""`compare`: train several backbones under one recipe and budget, evaluate each on the same person-wise
validation split end to end, and write a table (markdown and JSON), a combined CED plot and NME against
inference time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.config import TrainConfig
from kerakp.data.dataset import LandmarkSet, split_by_person
from kerakp.errors import KerakpError
from kerakp.evaluate import evaluate
from kerakp.inference import Predictor
from kerakp.io import refuse_existing, remove, write_json, write_text
from kerakp.plots import plot_ced, plot_tradeoff
from kerakp.timing import time_calls
from kerakp.train import train

COLUMNS = ["backbone", "init", "nme", "pck@0.10", "auc@0.08", "failure@0.08", "params", "keras_ms", "model_mb", "epochs", "train_s"]


def local_weights(backbone: str, weights_dir: Path | None) -> str:
    """A weights file in `weights_dir` whose name contains the backbone's name, else none."""
    if weights_dir is None:
        return "none"
    found = sorted(weights_dir.glob(f"{backbone}*.h5"))
    return str(found[0]) if found else "none"


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table: floats to 4 significant digits, parameter counts in millions."""
    def cell(key, value):
        if key == "params":
            return f"{value / 1e6:.2f} M"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(k, v) for k, v in row.items()) + " |" for row in table.to_dict("records")]
    return "\n".join(lines) + "\n"


def compare(config: TrainConfig, backbones: list[str], data: LandmarkSet, out_dir, box: str = "detector",
            weights_dir: Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate each backbone in `out_dir/<backbone>`; returns the comparison table."""
    import time

    out = Path(out_dir)
    _, val_idx = split_by_person(data, config.val_fraction, config.seed)
    val = data.subset(val_idx)
    rows, curves = [], {}
    for backbone in backbones:
        run = out / backbone
        remove(run)   # a folder refused or allowed by `compare_backbones`
        weights = local_weights(backbone, weights_dir) if config.weights == "none" else config.weights
        started = time.perf_counter()
        model_path = train(TrainConfig(**{**config.to_dict(), "backbone": backbone, "weights": weights}), data, run, progress=progress)
        seconds = time.perf_counter() - started
        predictor = Predictor(model_path, box=box, passes=2, fallback="full")
        metrics = evaluate(predictor, val, run / "evaluate", label=backbone, progress=progress)
        curves[backbone] = pd.read_csv(run / "evaluate" / "per_image.csv")["nme"].dropna().to_numpy()
        crop = np.zeros((1, predictor.input_size, predictor.input_size, 3), np.float32)
        rows.append({
            "backbone": backbone, "init": "imagenet" if weights != "none" else "scratch",
            **{k: metrics[k] for k in ("nme", "pck@0.10", "auc@0.08", "failure@0.08")},
            "params": predictor.model.count_params(),
            "keras_ms": time_calls(lambda: predictor.run_model(crop), runs=30)["median_ms"],
            "model_mb": model_path.stat().st_size / 1e6,
            "epochs": len(pd.read_csv(run / "history.csv")), "train_s": seconds,
        })
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("nme")
    write_json(out / "compare.json", {"box": box, "val_images": len(val), "rows": table.to_dict("records")})
    write_text(out / "compare.md", markdown_table(table))
    plot_ced(curves, out / "ced.png", title=f"CED, {len(val)} validation images ({box} boxes)")
    plot_tradeoff({r["backbone"]: (r["keras_ms"], r["nme"]) for r in rows}, out / "nme_vs_latency.png")
    return table


def compare_backbones(backbones: str, data, config=None, overrides: dict | None = None, out="runs/compare",
                      box: str = "detector", weights_dir=None, format: str = "auto", overwrite: bool = False) -> pd.DataFrame:
    """`compare` from command-line values: comma-separated backbone names, a data path, a recipe and its overrides."""
    from kerakp.config import load_config
    from kerakp.data.formats import load_dataset
    from kerakp.models.backbones import get_backbone_spec

    names = [b.strip() for b in backbones.split(",") if b.strip()]
    for name in names:
        get_backbone_spec(name)
    if len(set(names)) != len(names) or not names:
        raise KerakpError("--backbones must name each backbone once")
    refuse_existing(out, overwrite)
    recipe = load_config(config, overrides)
    return compare(recipe, names, load_dataset(data, format), out, box, Path(weights_dir) if weights_dir else None)
