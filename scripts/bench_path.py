"""The whole inference path per image (the default detector, passes, flip test, turned reads): its cost and accuracy
for each `--passes`/`--turn` setting, on a model's own validation persons.

    python scripts/bench_path.py MODEL --data DATA [--settings 2:12,2:0,0:0] [--images 60] [--threads 1]

Accuracy: `kerakp evaluate MODEL --data DATA --subset val --passes P --turn T` on every validation image. Cost: the
median milliseconds of `Predictor.predict` over the first `--images` validation images (each timed once;
the evaluation before it warms the model up), the model on `--threads` threads. Writes benchmarks/path_<model>.json and
the "Whole path per image" section of BENCHMARKS.md (one row per model and setting, rows of other models kept).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from report import replace_section

from kerakp.timing import machine, time_calls


def bench(args) -> list[dict]:
    import cv2

    from kerakp.data.dataset import model_subset
    from kerakp.data.formats import load_dataset
    from kerakp.evaluate import evaluate
    from kerakp.inference import Predictor
    from kerakp.runtime import open_model

    cv2.setNumThreads(args.threads)
    model = open_model(args.model, args.threads)
    data = model_subset(load_dataset(args.data), model.info.split, "val")
    images = [data.image(i) for i in range(min(args.images, len(data)))]
    rows = []
    for setting in args.settings.split(","):
        passes, turn = int(setting.split(":")[0]), float(setting.split(":")[1])
        predictor = Predictor(model, fallback="full", passes=passes, turn=turn)
        with tempfile.TemporaryDirectory() as out:
            metrics = evaluate(predictor, data, out, progress=False)
        times = [time_calls(lambda: predictor.predict(image), runs=1, warmup=0)["median_ms"] for image in images]
        rows.append({"model": args.model.name, "passes": passes, "turn": turn, "images": metrics["images"], "nme": metrics["nme"],
                     "nme_median": metrics["nme_median"], "failure@0.08": metrics["failure@0.08"],
                     "ms_per_image_median": float(np.median(times)), "timed_images": len(images)})
        print(rows[-1])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--settings", default="2:12,2:0,0:0", help="PASSES:TURN pairs, comma-separated")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = bench(args)
    machine = machine()
    Path("benchmarks").mkdir(exist_ok=True)
    (Path("benchmarks") / f"path_{args.model.stem}{args.model.suffix.replace('.', '_')}.json").write_text(
        json.dumps({"data": str(args.data), "machine": machine, "threads": args.threads, "rows": rows}, indent=2))
    table = ["| model | data | --passes | --turn | NME | median | failure@0.08 | ms per image (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for path in sorted(Path("benchmarks").glob("path_*.json")):
        report = json.loads(path.read_text())
        table += [f"| {r['model']} | {Path(report['data']).name} ({r['images']} val) | {r.get('passes', 2)} | {r['turn']:g} | {r['nme']:.4f} | "
                  f"{r['nme_median']:.4f} | {r['failure@0.08']:.3f} | {r['ms_per_image_median']:.1f} |" for r in report["rows"]]
    body = (f"Command: `python scripts/bench_path.py MODEL --data DATA --settings {args.settings} --images {args.images} "
            f"--threads {args.threads}` on {machine}, per model. Accuracy on every validation image, end to end; "
            f"cost: median of `Predictor.predict` over the first {args.images} validation images, the model on "
            f"{args.threads} thread(s), the default detector (BlazeFace) included.\n\n" + "\n".join(table))
    replace_section(Path("BENCHMARKS.md"), "Whole path per image", body)
    print(body)


if __name__ == "__main__":
    main()
