"""Every preset (and any model given) by head yaw on AFLW 21's held-out share: faces found, landmark error and the
head pose read from the landmarks, with paired intervals against a baseline and a plot of error by yaw.

    python scripts/bench_pose.py [--models 300w 300w-fast runs/300w_wide/model.keras] [--baseline 300w]

Data: `../shared/data/aflw21`, the part of it the models' recorded split holds out (15 %, seed 0, by image:
`model_subset(..., "val")`; `kerakp train --config 300w_wide` trains on the rest, `split_extra`). Each model
reads through `Landmarker.evaluate`'s path (BlazeFace, two passes, the flip test, turned reads; no whole-image
fallback), once on the 120 px crops as released and once on the crops padded with black to 240 px (the face at
half the frame, as a detector meets it in a photo). Error: mean over the visible AFLW points (a 68-point model's
points mapped through `kerakp.schemas.CORRESPONDENCES`; ear lobes left out) over the original crop side, over
the faces found; a face counts as found when the detector found it. Yaw bands by AFLW's |yaw|: 0-30, 30-60,
60 and over. Pose: yaw from the 68 points (`kerakp.analysis.head_pose`) against AFLW's (sign turned to
kerakp's). Seen: `Face.visible` of each AFLW point's counterpart (a group's least seen point) against whether
AFLW labels it, as the area under the ROC curve over the points of the faces found. Writes benchmarks/pose.json, benchmarks/pose.png and the "Head poses" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from report import replace_section

from kerakp.analysis import head_pose, visibility
from kerakp.api import Landmarker
from kerakp.data.dataset import LandmarkSet, model_subset
from kerakp.data.formats import load_dataset
from kerakp.evaluate import predict_set
from kerakp.metrics import paired_interval
from kerakp.schemas import CORRESPONDENCES, derive_points

BANDS = {"0-30": (0, 30), "30-60": (30, 60), "60-90": (60, 181)}
CROP = 120   # AFLW's crop side: the error's unit


def padded(data: LandmarkSet, side: int) -> LandmarkSet:
    """The faces pasted in the middle of black `side` x `side` images."""
    images, keypoints = [], data.keypoints.copy()
    for i in range(len(data)):
        image = data.image(i)
        top, left = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
        images.append(canvas)
        keypoints[i] += [left, top]
    return LandmarkSet(data.schema, data.paths, keypoints, data.persons, None, data.source + f" padded to {side}",
                       data.names, np.stack(images))


def read(model: str, data: LandmarkSet) -> dict:
    """Per face: error over the crop side (NaN where not found), whether found, the landmarks' yaw, and per AFLW
    point the probability it is seen (`Face.visible`; a group's least seen point)."""
    predictor = Landmarker(model).predictor
    preds, detected, _ = predict_set(predictor, data, progress=False)
    mapped = derive_points(preds, predictor.schema, data.schema)
    error = np.nanmean(np.linalg.norm(mapped - data.keypoints, axis=-1), axis=1) / CROP
    found = detected & ~np.isnan(preds).all(axis=(1, 2))
    error[~found] = np.nan
    poses = np.array([head_pose(p, data.image(i).shape, predictor.schema) if found[i] and predictor.schema.name == "ibug68"
                      else (np.nan,) * 3 for i, p in enumerate(preds)])
    groups = CORRESPONDENCES[data.schema.name, predictor.schema.name]
    seen = np.full(data.keypoints.shape[:2], np.nan)
    for i in np.flatnonzero(found & np.isfinite(poses[:, 0])):
        probability = visibility(tuple(poses[i]), predictor.schema)
        seen[i] = [probability[list(g)].min() if g else np.nan for g in groups]
    return {"error": error, "found": found, "yaw": poses[:, 0], "seen": seen}


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve of `score` for the boolean `label` (ties count half)."""
    ranks = pd.Series(score).rank().to_numpy()
    positive, negative = label.sum(), (~label).sum()
    return float((ranks[label].sum() - positive * (positive + 1) / 2) / (positive * negative)) if positive and negative else np.nan


def summary(reads: dict, truth_yaw: np.ndarray, labelled: np.ndarray, base: dict | None, names: list[str]) -> dict:
    bands = {}
    for band, (low, high) in BANDS.items():
        inside = (np.abs(truth_yaw) >= low) & (np.abs(truth_yaw) < high)
        scored = inside[:, None] & np.isfinite(reads["seen"])
        row = {"faces": int(inside.sum()), "found": float(reads["found"][inside].mean()),
               "error": float(np.nanmean(reads["error"][inside])),
               "yaw_mae": float(np.nanmean(np.abs(reads["yaw"][inside] - truth_yaw[inside]))),
               "visibility_auroc": auroc(reads["seen"][scored], labelled[scored])}
        if base is not None:
            both = inside & reads["found"] & base["found"]
            row["error_minus_baseline"] = paired_interval(base["error"][both], reads["error"][both],
                                                          np.asarray(names)[both])
        bands[band] = row
    bands["mean of the bands"] = {"error": float(np.mean([bands[b]["error"] for b in BANDS])),
                                  "found": float(np.mean([bands[b]["found"] for b in BANDS]))}
    return bands


def plot(results: dict, truth_yaw: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.arange(0, 101, 10)
    centres = (edges[:-1] + edges[1:]) / 2
    bins = np.clip(np.digitize(np.abs(truth_yaw), edges) - 1, 0, len(centres) - 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, view in zip(axes, ("crops", "padded")):
        for model, views in results.items():
            error = views[view]["error"]
            ax.plot(centres, [np.nanmean(error[bins == b]) * 100 if (bins == b).any() else np.nan
                              for b in range(len(centres))], marker="o", label=model)
        ax.set_title(f"AFLW 21 held out, {'120 px crops' if view == 'crops' else 'padded to 240 px'}")
        ax.set_xlabel("|yaw| (degrees, AFLW)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error, % of the crop side")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["300w", "300w-fast", "ytf68", "ytf68-fast"])
    parser.add_argument("--baseline", default="300w")
    parser.add_argument("--data", default="../shared/data/aflw21")
    parser.add_argument("--limit", type=int, default=0, help="read only this many held-out faces (a quick look)")
    parser.add_argument("--out", default="benchmarks/pose.json")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the reader's count of dropped points, said once below
        data = load_dataset(args.data)
    held_out = model_subset(data, Landmarker(args.baseline).info.split, "val")
    if args.limit:
        held_out = held_out.subset(range(min(args.limit, len(held_out))))
    labels = pd.read_csv(Path(args.data) / "labels.csv", usecols=["file", "yaw"]).set_index("file")["yaw"]
    truth_yaw = -labels.loc[held_out.names].to_numpy(np.float64)   # AFLW's sign is kerakp's negated
    views = {"crops": held_out, "padded": padded(held_out, 2 * CROP)}
    models = list(dict.fromkeys([args.baseline, *args.models]))
    reads = {m: {v: read(m, d) for v, d in views.items()} for m in models}
    report = {"data": f"{args.data}: {len(held_out)} held-out faces (split of {args.baseline}: val)",
              "bands": {b: int(((np.abs(truth_yaw) >= lo) & (np.abs(truth_yaw) < hi)).sum()) for b, (lo, hi) in BANDS.items()},
              "baseline": args.baseline, "models": {}}
    for m in models:
        report["models"][m] = {v: summary(reads[m][v], truth_yaw, ~np.isnan(held_out.keypoints).any(axis=-1),
                                          None if m == args.baseline else reads[args.baseline][v], held_out.names)
                               for v in views}
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1))
    plot(reads, truth_yaw, out.with_suffix(".png"))
    replace_section(Path("BENCHMARKS.md"), "Head poses", section(report, out))
    print(section(report, out))


def section(report: dict, out: Path) -> str:
    lines = [f"`python scripts/bench_pose.py` on {report['data']}; faces by band {report['bands']}. Error: mean over the "
             "visible AFLW points over the 120 px crop side, faces found only; found: the detector found the face; yaw "
             f"MAE: the landmarks' head pose against AFLW's yaw, degrees. Intervals: model minus `{report['baseline']}` "
             f"on the faces both found, 95 %, by image. Plot: `{out.with_suffix('.png')}`.", ""]
    for view, title in (("crops", "120 px crops as released"), ("padded", "crops padded to 240 px")):
        lines += [f"{title}:", "", "| model | " + " | ".join(f"{b}: found / error / yaw MAE / seen AUROC" for b in BANDS)
                  + " | mean of the bands: error |", "|---|" + "---|" * (len(BANDS) + 1)]
        for model, views in report["models"].items():
            cells = []
            for band in BANDS:
                row = views[view][band]
                cell = f"{row['found']:.1%} / {row['error']:.2%} / {row['yaw_mae']:.1f} / {row['visibility_auroc']:.3f}"
                if "error_minus_baseline" in row:
                    d = row["error_minus_baseline"]
                    cell += f" ({d['mean']:+.2%}, {d['low']:+.2%}..{d['high']:+.2%})"
                cells.append(cell)
            lines.append(f"| `{model}` | " + " | ".join(cells) + f" | {views[view]['mean of the bands']['error']:.2%} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
