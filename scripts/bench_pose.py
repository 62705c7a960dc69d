"""Every preset (and any model given) by head yaw on AFLW 21's held-out share and on profiled validation faces:
faces found, landmark error and the head pose read from the landmarks, with paired intervals against a baseline
and a plot of error by yaw.

    python scripts/bench_pose.py [--models 300w 300w-fast runs/300w_wide/model.keras] [--baseline 300w]
                                 [--profiled runs/profiled_300w runs/profiled_ytf68]

Data: `../shared/data/aflw21`, the part of it the models' recorded split holds out (15 %, seed 0, by image:
`model_subset(..., "val")`; `kerakp train --config 300w_wide` trains on the rest, `split_extra`). Each model
reads through `Landmarker.evaluate`'s path (BlazeFace, two passes, the flip test, turned reads; no whole-image
fallback), once on the 120 px crops as released and once on the crops padded with black to 240 px (the face at
half the frame, as a detector meets it in a photo). Error: mean over the visible AFLW points (a 68-point model's
points mapped through `kerakp.schemas.CORRESPONDENCES`; ear lobes left out) over the original crop side, over
the faces found; a face counts as found when the detector found it. Yaw bands by AFLW's |yaw|: 0-30, 30-60,
60 and over. Pose: yaw from the 68 points (`kerakp.analysis.head_pose`) against AFLW's (sign turned to
kerakp's). Seen: `Face.visible` of each AFLW point's counterpart (for a group, as an eye centre, its points' mean) against whether
AFLW labels it, as the area under the ROC curve over the points of the faces found.

Profiled validation faces (a diagnostic of the `kerakp profile` generator, which scores itself here: not an
acceptance figure): the folders `kerakp profile` wrote (default: those of `PROFILED` that exist). A folder's
source is the set of `--sources` holding every copy's source file (a copy is named `<source file>/<person>_<k>.jpg`,
`kerakp.data.profile.profiled_name`); a model's source is the set of `--sources` on which its recorded split
(`Landmarker(m).info.split`) gives back its recorded training and validation counts. A model reads only the
folders of its own source, and there only the copies whose person its split holds out of that source
(`model_subset(source, split, "val")`), so it never trained on them. Same path as above, on the copies as
written; NME over all 68 points over the square root of the true points' box area (the literature's measure at
every pose), faces found; yaw bands by the yaw the copy was turned to (`visibility.csv`); seen: `Face.visible`
against the generator's visibility (`v0..v67`). Intervals: model minus the baseline on the copies both found
(and both held out, where the baseline comes from the same source), by person.

Writes benchmarks/pose.json, benchmarks/pose.png and the "Head poses" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from report import replace_section

from kerakp.analysis import head_pose, visibility
from kerakp.api import Landmarker
from kerakp.data.dataset import LandmarkSet, model_subset, split_by_person
from kerakp.data.formats import load_dataset
from kerakp.evaluate import predict_set
from kerakp.metrics import box_nme, paired_interval
from kerakp.schemas import CORRESPONDENCES, derive_points

BANDS = {"0-30": (0, 30), "30-60": (30, 60), "60-90": (60, 181)}
CROP = 120   # AFLW's crop side: the error's unit
PROFILED = ("runs/profiled_300w", "runs/profiled_ytf68")        # `kerakp profile` folders ...
SOURCES = ("../shared/data/300w_train", "../shared/data/ytf68")   # ... and the sets they may be made from


@lru_cache(maxsize=None)
def landmarker(model: str) -> Landmarker:
    return Landmarker(model)


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


def predict(model: str, data: LandmarkSet) -> dict:
    """Per face: the model's points (NaN where none), whether found, the landmarks' head pose and each point's
    probability of being seen (`Face.visible`; NaN for a model not of iBUG 68)."""
    predictor = landmarker(model).predictor
    schema = predictor.schema
    preds, detected, _ = predict_set(predictor, data, progress=False)
    found = detected & ~np.isnan(preds).all(axis=(1, 2))
    poses = np.array([head_pose(p, data.image(i).shape, schema) if found[i] and schema.name == "ibug68"
                      else (np.nan,) * 3 for i, p in enumerate(preds)]).reshape(-1, 3)
    seen = np.array([visibility(tuple(pose), schema) if schema.name == "ibug68" else np.full(schema.num_points, np.nan)
                     for pose in poses]).reshape(-1, schema.num_points)
    return {"points": preds, "schema": schema, "found": found, "yaw": poses[:, 0], "visible": seen}


def read(model: str, data: LandmarkSet) -> dict:
    """Per face of AFLW 21: error over the crop side (NaN where not found), whether found, the landmarks' yaw, and
    per AFLW point the probability it is seen (`Face.visible`; for a point AFLW places at the mean of several, such
    as an eye centre, their mean)."""
    got = predict(model, data)
    found = got["found"]
    mapped = derive_points(got["points"], got["schema"], data.schema)
    error = np.nanmean(np.linalg.norm(mapped - data.keypoints, axis=-1), axis=1) / CROP
    error[~found] = np.nan
    groups = CORRESPONDENCES[data.schema.name, got["schema"].name]
    seen = np.full(data.keypoints.shape[:2], np.nan)
    for i in np.flatnonzero(found & np.isfinite(got["yaw"])):
        seen[i] = [got["visible"][i][list(g)].mean() if g else np.nan for g in groups]
    return {"error": error, "found": found, "yaw": got["yaw"], "seen": seen}


def read_profiled(model: str, data: LandmarkSet) -> dict:
    """Per profiled copy: NME over the 68 points over the square root of the true points' box area (NaN where not
    found), whether found, the landmarks' yaw, and per point `Face.visible`."""
    got = predict(model, data)
    found = got["found"]
    points = derive_points(got["points"], got["schema"], data.schema)
    error = np.full(len(data), np.nan)
    truth = data.keypoints[found]
    error[found] = box_nme(points[found], truth)
    return {"error": error, "found": found, "yaw": got["yaw"], "seen": got["visible"]}


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
        if base is not None and (both := inside & reads["found"] & base["found"]).any():
            row["error_minus_baseline"] = paired_interval(base["error"][both], reads["error"][both],
                                                          np.asarray(names)[both])
        bands[band] = row
    bands["mean of the bands"] = {"error": float(np.mean([bands[b]["error"] for b in BANDS])),
                                  "found": float(np.mean([bands[b]["found"] for b in BANDS]))}
    return bands


def source_of(copies: LandmarkSet, sources: dict[str, LandmarkSet]) -> str:
    """The set of `sources` a profiled folder was made from: the one holding every copy's source file."""
    made_from = {Path(name).parent.as_posix() for name in copies.names}
    for path, data in sources.items():
        if made_from <= {Path(name).with_suffix("").as_posix() for name in data.names}:
            return path
    raise SystemExit(f"{copies.source}: no set of --sources ({', '.join(sources) or 'none found'}) holds the files "
                     "its copies were made from")


def trained_on(model: str, sources: dict[str, LandmarkSet]) -> str | None:
    """The set of `sources` a model was trained on: the one on which its recorded split gives back its recorded
    training and validation counts (None: none does)."""
    split = landmarker(model).info.split
    if not split or "val_images" not in split:
        return None
    for path, data in sources.items():
        train, val = split_by_person(data, split["val_fraction"], split["seed"])
        if (len(train), len(val)) == (split.get("train_images"), split["val_images"]):
            return path
    return None


def profiled_part(models: list[str], baseline: str, folders: list[str], source_paths: list[str], limit: int) -> dict:
    """{model: {folder: {"copies", "persons", "bands"}}} on the profiled copies of each model's validation persons
    (the module's docstring), and per (model, folder) the copies' NME and yaw for the plot (`"plot"`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sources = {path: load_dataset(path) for path in source_paths if Path(path).exists()}
    owner = {m: trained_on(m, sources) for m in models}
    results, lines = {}, {}
    for folder in folders:
        copies = load_dataset(folder)
        source = source_of(copies, sources)
        mine = [m for m in models if owner[m] == source]
        if not mine:
            continue
        val_persons = {m: set(model_subset(sources[source], landmarker(m).info.split, "val").persons) for m in mine}
        held = {m: [i for i, person in enumerate(copies.persons) if person in val_persons[m]] for m in mine}
        held = {m: rows[:limit] if limit else rows for m, rows in held.items()}
        # the baseline reads every model's copies too, for the pairs (where it shares the source, only its own count)
        wanted = {**held, baseline: sorted(set().union(*held.values()))}
        full = {m: scattered(read_profiled(m, copies.subset(rows)), rows, len(copies)) for m, rows in wanted.items()}
        if baseline in held:
            full[baseline]["found"] &= np.isin(np.arange(len(copies)), held[baseline])
        table = pd.read_csv(Path(folder) / "visibility.csv").set_index("image").loc[copies.names]
        turned, seen = table["yaw"].to_numpy(np.float64), table[[f"v{k}" for k in range(68)]].to_numpy(bool)
        persons = np.asarray(copies.persons)
        for m, rows in held.items():
            reads = {key: value[rows] for key, value in full[m].items()}
            base = None if m == baseline else {key: value[rows] for key, value in full[baseline].items()}
            results.setdefault(m, {})[folder] = {
                "source": source, "copies": len(rows), "persons": len(set(persons[rows])),
                "bands": summary(reads, turned[rows], seen[rows], base, persons[rows])}
            lines[f"{m} on {Path(folder).name}"] = (reads["error"], turned[rows])
    for m in models:
        if owner[m] is None:
            print(f"{m}: its recorded split matches none of --sources; no profiled rows")
    return {"models": results, "plot": lines}


def scattered(reads: dict, rows: list[int], size: int) -> dict:
    """Reads of the faces `rows` of a set of `size` placed at their rows (NaN, or not found, elsewhere)."""
    full = {}
    for key, value in reads.items():
        full[key] = np.full((size, *value.shape[1:]), False if value.dtype == bool else np.nan, value.dtype)
        full[key][rows] = value
    return full


def plot(results: dict, truth_yaw: np.ndarray, profiled: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.arange(0, 101, 10)
    centres = (edges[:-1] + edges[1:]) / 2

    def by_yaw(error, yaw):
        bins = np.clip(np.digitize(np.abs(yaw), edges) - 1, 0, len(centres) - 1)
        return [np.nanmean(error[bins == b]) * 100 if (bins == b).any() else np.nan for b in range(len(centres))]

    fig, axes = plt.subplots(1, 3 if profiled else 2, figsize=(16.5 if profiled else 11, 4))
    axes[1].sharey(axes[0])
    for ax, view in zip(axes, ("crops", "padded")):
        for model, views in results.items():
            ax.plot(centres, by_yaw(views[view]["error"], truth_yaw), marker="o", label=model)
        ax.set_title(f"AFLW 21 held out, {'120 px crops' if view == 'crops' else 'padded to 240 px'}")
        ax.set_xlabel("|yaw| (degrees, AFLW)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error, % of the crop side")
    axes[0].legend(fontsize=8)
    if profiled:
        for label, (error, yaw) in profiled.items():
            axes[2].plot(centres, by_yaw(error, yaw), marker="o", label=label)
        axes[2].set_title("profiled validation faces (generator diagnostic)")
        axes[2].set_xlabel("|yaw| (degrees, as turned)")
        axes[2].set_ylabel("NME, % of sqrt(box area)")
        axes[2].grid(alpha=0.3)
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["300w", "300w-fast", "ytf68", "ytf68-fast"])
    parser.add_argument("--baseline", default="300w")
    parser.add_argument("--data", default="../shared/data/aflw21")
    parser.add_argument("--profiled", nargs="*", default=[p for p in PROFILED if Path(p).is_dir()],
                        help="`kerakp profile` folders (default: those of runs/profiled_300w, runs/profiled_ytf68 "
                             "that exist; none: leave the profiled faces out)")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), help="the sets the profiled folders were made from")
    parser.add_argument("--limit", type=int, default=0,
                        help="read only this many held-out faces (and profiled copies per model and folder: a quick look)")
    parser.add_argument("--out", default="benchmarks/pose.json")
    args = parser.parse_args()
    for folder in args.profiled:
        if not (Path(folder) / "visibility.csv").is_file():
            raise SystemExit(f"{folder}: no visibility.csv; not a `kerakp profile` folder (--profiled)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the reader's count of dropped points, said once below
        data = load_dataset(args.data)
    held_out = model_subset(data, landmarker(args.baseline).info.split, "val")
    if args.limit:
        held_out = held_out.subset(range(min(args.limit, len(held_out))))
    labels = pd.read_csv(Path(args.data) / "labels.csv", usecols=["file", "yaw"]).set_index("file")["yaw"]
    truth_yaw = -labels.loc[held_out.names].to_numpy(np.float64)   # AFLW's sign is kerakp's negated
    views = {"crops": held_out, "padded": padded(held_out, 2 * CROP)}
    models = list(dict.fromkeys([args.baseline, *args.models]))
    profiled = profiled_part(models, args.baseline, args.profiled, args.sources, args.limit)
    reads = {m: {v: read(m, d) for v, d in views.items()} for m in models}
    report = {"data": f"{args.data}: {len(held_out)} held-out faces (split of {args.baseline}: val)",
              "bands": {b: int(((np.abs(truth_yaw) >= lo) & (np.abs(truth_yaw) < hi)).sum()) for b, (lo, hi) in BANDS.items()},
              "baseline": args.baseline, "models": {}}
    for m in models:
        report["models"][m] = {v: summary(reads[m][v], truth_yaw, ~np.isnan(held_out.keypoints).any(axis=-1),
                                          None if m == args.baseline else reads[args.baseline][v], held_out.names)
                               for v in views}
    report["profiled"] = profiled["models"]
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1))
    plot(reads, truth_yaw, profiled["plot"], out.with_suffix(".png"))
    replace_section(Path("BENCHMARKS.md"), "Head poses", section(report, out))
    print(section(report, out))


def cell(row: dict) -> str:
    """A band's figures: found / error / yaw MAE / seen AUROC, and the interval against the baseline."""
    text = f"{row['found']:.1%} / {row['error']:.2%} / {row['yaw_mae']:.1f} / {row['visibility_auroc']:.3f}"
    if "error_minus_baseline" in row:
        d = row["error_minus_baseline"]
        text += f" ({d['mean']:+.2%}, {d['low']:+.2%}..{d['high']:+.2%})"
    return text


def section(report: dict, out: Path) -> str:
    lines = [f"`python scripts/bench_pose.py` on {report['data']}; faces by band {report['bands']}. Error: mean over the "
             "visible AFLW points over the 120 px crop side, faces found only; found: the detector found the face; yaw "
             f"MAE: the landmarks' head pose against AFLW's yaw, degrees. Intervals: model minus `{report['baseline']}` "
             f"on the faces both found, 95 %, by image. Plot: `{out.with_suffix('.png')}`.", ""]
    for view, title in (("crops", "120 px crops as released"), ("padded", "crops padded to 240 px")):
        lines += [f"{title}:", "", "| model | " + " | ".join(f"{b}: found / error / yaw MAE / seen AUROC" for b in BANDS)
                  + " | mean of the bands: error |", "|---|" + "---|" * (len(BANDS) + 1)]
        for model, views in report["models"].items():
            lines.append(f"| `{model}` | " + " | ".join(cell(views[view][band]) for band in BANDS)
                         + f" | {views[view]['mean of the bands']['error']:.2%} |")
        lines.append("")
    if report.get("profiled"):
        lines += ["Profiled validation faces (`kerakp profile`), a diagnostic of the generator, not an acceptance figure: "
                  "each model on the turned copies of the persons its split holds out of its own training set (copies by "
                  "band in the second column). NME: mean over the 68 points over the square root of the true points' box "
                  "area, faces found only; yaw: the yaw the copy was turned to; seen AUROC: `Face.visible` against the "
                  f"generator's visibility. Intervals: model minus `{report['baseline']}` on the copies both found, 95 %, "
                  "by person.", "",
                  "| model | copies (by band) | " + " | ".join(f"{b}: found / NME / yaw MAE / seen AUROC" for b in BANDS)
                  + " | mean of the bands: NME |", "|---|---|" + "---|" * (len(BANDS) + 1)]
        for model, folders in report["profiled"].items():
            for folder, result in folders.items():
                bands = result["bands"]
                counts = " / ".join(str(bands[b]["faces"]) for b in BANDS)
                lines.append(f"| `{model}` | `{folder}`: {counts} ({result['persons']} persons) | "
                             + " | ".join(cell(bands[band]) for band in BANDS)
                             + f" | {bands['mean of the bands']['error']:.2%} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
