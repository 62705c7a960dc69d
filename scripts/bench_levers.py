"""Accuracy levers against a baseline: each candidate model read end to end (the default `kerakp evaluate` path)
on the baseline's validation persons, with the paired 95 % interval of its NME change.

    python scripts/bench_levers.py --data DATA --baseline MODEL NAME=MODEL[@window=R] ... [--control NAME]
        [--title T] [--json F] [--reuse DIR]

`@window=R` reads that `.keras` model with local decoding (the soft-argmax over the (2R+1)^2 cells at each
map's peak) instead of the decoding it was trained with. `--control NAME` also gives each model's change against
that candidate (a same-length run without the lever). Intervals resample whole persons (300-W: source
photos), 5,000 times. `--reuse DIR` keeps each evaluation for the next run. Writes `--json` (default benchmarks/levers_<data>.json) and the BENCHMARKS.md section `--title`.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
from report import replace_section
from kerakp.timing import machine


def with_window(path: Path, window: int, folder: str) -> Path:
    """The `.keras` model at `path` rebuilt with local decoding over `window` cells, saved under `folder`."""
    import keras

    from kerakp.models.landmark_model import LandmarkModel

    model = keras.models.load_model(path)
    variant = LandmarkModel.from_config({**model.get_config(), "decode_window": window})
    variant.set_weights(model.get_weights())
    out = Path(folder) / f"{path.stem}_window{window}.keras"
    variant.save(out)
    return out


def per_image(model: Path, data, folder: str, reuse: Path | None = None, key: str = "", window: int = 0) -> pd.DataFrame:
    """The model's (read with local decoding over `window` cells, if set) per-image NME table with its metrics;
    under `reuse`, kept in `reuse/<key>` and read back while the model file is older than it."""
    from kerakp.api import Landmarker

    out = reuse / key if reuse else Path(folder) / f"eval_{len(os.listdir(folder))}"
    if not (reuse and (out / "metrics.json").is_file() and (out / "metrics.json").stat().st_mtime > model.stat().st_mtime):
        Landmarker(with_window(model, window, folder) if window else model).evaluate(data, out=out, progress=False,
                                                                                   overwrite=True)
    table = pd.read_csv(out / "per_image.csv")
    return table.assign(metrics=[json.loads((out / "metrics.json").read_text())] * len(table))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("candidates", nargs="+", help="NAME=MODEL or NAME=MODEL@window=R")
    parser.add_argument("--control", help="a candidate's NAME: each model's change against it too")
    parser.add_argument("--title", default="Accuracy levers")
    parser.add_argument("--json", type=Path, help="default: benchmarks/levers_<data>.json")
    parser.add_argument("--resamples", type=int, default=5000)
    parser.add_argument("--reuse", type=Path, help="keep each model's evaluation here and reuse it while the model is unchanged")
    args = parser.parse_args()

    from kerakp.data.dataset import model_subset
    from kerakp.data.formats import load_dataset
    from kerakp.metrics import paired_interval
    from kerakp.runtime import open_model

    data = model_subset(load_dataset(args.data), open_model(args.baseline).info.split, "val")
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as folder:
        base = per_image(args.baseline, data, folder, args.reuse, "baseline")
        groups = dict(zip(data.names, data.persons))
        for spec in [f"baseline={args.baseline}"] + args.candidates:
            name, _, target = spec.partition("=")
            path, _, option = target.partition("@window=")
            table = tables[name] = base if name == "baseline" else per_image(Path(path), data, folder, args.reuse, name,
                                                                             int(option or 0))
            merged = base.merge(table, on="image", suffixes=("_base", ""))
            interval = paired_interval(merged["nme_base"], merged["nme"], merged["image"].map(groups),
                                       args.resamples)
            control = tables.get(args.control)
            if control is not None and name != args.control:
                pair = control.merge(table, on="image", suffixes=("_control", ""))
                against = paired_interval(pair["nme_control"], pair["nme"], pair["image"].map(groups), args.resamples)
            metrics = table["metrics"].iloc[0]
            rows.append({"name": name, "model": target, "nme": metrics["nme"], "nme_median": metrics["nme_median"],
                         "failure@0.08": metrics["failure@0.08"], "pck@0.10": metrics["pck@0.10"],
                         "change": interval, "images": len(merged)}
                        | ({"change_vs_control": against} if control is not None and name != args.control else {}))
            print(rows[-1], flush=True)
    machine = machine()
    Path("benchmarks").mkdir(exist_ok=True)
    (args.json or Path("benchmarks") / f"levers_{args.data.name}.json").write_text(
        json.dumps({"data": str(args.data), "machine": machine, "baseline": str(args.baseline), "rows": rows}, indent=2))
    table = ["| model | NME | median | failure@0.08 | PCK@0.10 | change against the baseline (95 %) | better on |"
             + (f" against {args.control} (95 %) |" if args.control else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if args.control else "")]
    for r in rows:
        c = r["change"]
        change, better = ("-", "-") if r["name"] == "baseline" else (
            f"{c['mean']:+.5f} ({c['low']:+.5f} to {c['high']:+.5f})", f"{c['better']:.0%}")
        row = (f"| {r['name']} (`{r['model']}`) | {r['nme']:.4f} | {r['nme_median']:.4f} | {r['failure@0.08']:.3f} | "
               f"{r['pck@0.10']:.3f} | {change} | {better} |")
        if args.control:
            c = r.get("change_vs_control")
            row += " - |" if c is None else f" {c['mean']:+.5f} ({c['low']:+.5f} to {c['high']:+.5f}) |"
        table.append(row)
    body = (f"Command: `python scripts/bench_levers.py --data {args.data} --baseline {args.baseline} "
            f"{' '.join(args.candidates)}{f' --control {args.control}' if args.control else ''}` on {machine}: every model read end to end (`kerakp evaluate`'s default path) "
            f"on the baseline's {len(data)} validation images; intervals resample persons (300-W: source photos).\n\n"
            + "\n".join(table))
    replace_section(Path("BENCHMARKS.md"), args.title, body)
    print(body)


if __name__ == "__main__":
    main()
