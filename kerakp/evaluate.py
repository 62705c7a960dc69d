"""`evaluate`: end-to-end accuracy from the raw image through the same `Predictor` users run.

Writes `metrics.json`, `per_image.csv` (NME and detection per image), `ced.png` and `grid.png` (the worst
and the best predictions) into an output folder, and with `report` the page to look through (`kerakp.report`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.data.dataset import LandmarkSet
from kerakp.errors import KerakpError
from kerakp.inference import Predictor
from kerakp.io import replacing, strict_json, write_json
from kerakp.metrics import per_image_nme, summarize
from kerakp.plots import plot_ced, plot_grid
from kerakp.schemas import derive_points


def predict_set(predictor: Predictor, data: LandmarkSet, chunk: int = 64, progress: bool = True):
    """Predictions (N, K, 2) of the model's markup for every image of a set, whether the detector found each face,
    and each image's longer side in pixels."""
    from tqdm import tqdm

    preds = np.full((len(data), predictor.schema.num_points, 2), np.nan)
    detected = np.zeros(len(data), dtype=bool)
    sides = np.zeros(len(data))
    with tqdm(total=len(data), desc="evaluating", unit="img", disable=None if progress else True) as bar:
        for start in range(0, len(data), chunk):
            stop = min(start + chunk, len(data))
            images = [data.image(i) for i in range(start, stop)]
            sides[start:stop] = [max(image.shape[:2]) for image in images]
            results = predictor.predict_batch(images, list(data.keypoints[start:stop]))
            for i, result in enumerate(results, start):
                detected[i] = result.detected
                if result.points is not None:
                    preds[i] = result.points
            bar.update(stop - start)
    return preds, detected, sides


def evaluate(predictor: Predictor, data: LandmarkSet, out_dir, label: str = "", progress: bool = True,
             report: bool = False) -> dict:
    """Score a model on a labelled set; returns the metrics and writes the report files into `out_dir` (with
    `report`, also `report.html`), all at once when they are complete. Images whose points are all missing are
    left out and counted. A set of a partial markup (AFLW 21) scores a model of another through their
    correspondence (`kerakp.schemas.derive_points`: a 68-point model's eye centre is the mean of its eye)."""
    labelled = ~np.isnan(data.keypoints).all(axis=(1, 2))
    if not labelled.any():
        raise KerakpError(f"{data.source}: no image has a labelled point")
    unlabelled, data = int((~labelled).sum()), data.subset(np.flatnonzero(labelled))
    preds, detected, sides = predict_set(predictor, data, progress=progress)
    preds = derive_points(preds, predictor.schema, data.schema)
    predicted = ~np.isnan(preds).all(axis=(1, 2))
    # markups without a normalising pair (one point) divide by the longer image side, the whole-image crop's
    scaled = sides[predicted] if data.schema.norm is None else None
    metrics = {
        "box": predictor.box + (" (ground-truth boxes: not an end-to-end result)" if predictor.box == "oracle" else ""),
        "detector": getattr(predictor.detector, "name", None),
        "passes": predictor.passes,
        "turn": predictor.turn,
        "markup": data.schema.name,
        "data": data.source,
        **summarize(preds[predicted], data.keypoints[predicted], data.schema, scaled),
        "detector_misses": int((~detected).sum()) if predictor.box == "detector" else 0,
        "unpredicted": int((~predicted).sum()),
        "unlabelled": unlabelled,
    }
    nme = np.full(len(data), np.nan)
    nme[predicted] = per_image_nme(preds[predicted], data.keypoints[predicted], data.schema, scaled)
    ranked = [i for i in np.argsort(np.nan_to_num(nme, nan=-1.0)) if predicted[i]]
    worst, best = ranked[::-1][:8], ranked[:4]
    shown = worst + best
    titles = [f"worst NME {nme[i]:.3f}" for i in worst] + [f"best NME {nme[i]:.3f}" for i in best]
    with replacing(out_dir, folder=True) as out:
        pd.DataFrame({"image": data.names, "nme": nme, "detected": detected.astype(int)}).to_csv(out / "per_image.csv", index=False)
        name = label or Path(data.source).name
        plot_ced({name: nme[predicted]}, out / "ced.png", title=f"CED ({predictor.box} boxes)")
        plot_grid([data.image(i) for i in shown], [data.keypoints[i] for i in shown],
                  [preds[i] for i in shown], titles, out / "grid.png")
        write_json(out / "metrics.json", metrics)
        if report:
            from kerakp.report import write_report

            write_report(out / "report.html", data, preds, nme, detected, strict_json(metrics), out / "ced.png",
                         f"{name}: {metrics['images']} faces, NME {metrics['nme']:.4f}")
    return strict_json(metrics)


def format_metrics(metrics: dict) -> str:
    """A two-column table of the headline numbers."""
    keys = ["images", "nme", "nme_median", "pck@0.05", "pck@0.10", "auc@0.5", "auc@0.08", "failure@0.08",
            "mae_px", "rmse_px", "mean_point_error_px", "detector_misses"]
    lines = [f"{'box':<22}{metrics['box']}"]
    for key in keys + (["unlabelled"] if metrics.get("unlabelled") else []):
        value = metrics[key]
        lines.append(f"{key:<22}{value:.4f}" if isinstance(value, float) else f"{key:<22}{value}")
    return "\n".join(lines)
