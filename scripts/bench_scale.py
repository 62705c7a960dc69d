"""Training past memory: peak memory and images/s of the input pipeline by set size, with the decode cache's
budget and with a packed set; training throughput from files against in-memory arrays.

    python scripts/bench_scale.py [--sizes 1000,10000,100000] [--steps 40] [--repeats 3]

Sets: 1,000 synthetic faces (64 px) written once; the larger sets repeat their rows (each row is decoded on
its own and cached apart, as distinct photos would be). Memory: one pass over the training batches
(`KeypointSequence`, augmentation on, no model) in a fresh process, its peak resident memory, with the cache
unbounded (every decoded image kept, as before `cache_mb`), with `cache_mb` 256, and from the set packed by
`kerakp pack`. Throughput: `model.fit` of MobileNetV2 at 128 px for `--steps` steps of 32 from the files
(1 worker (the default), 2 threads, 2 processes) and from the same crops prepared in memory, on 2 cores. Writes
benchmarks/scale.json and the "Training past memory" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from report import replace_section

PASS = """
import sys, time
from kerakp.data.augment import Augment
from kerakp.data.formats import load_dataset
from kerakp.data.sequence import KeypointSequence
from kerakp.model_info import CropRule
data = load_dataset(sys.argv[1])
seq = KeypointSequence(data, CropRule(96), 32, Augment(), shuffle=True, cache_mb=float(sys.argv[2]))
started = time.perf_counter()
for i in range(len(seq)):
    seq[i]
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))  # this process only
print(len(data) / seconds, peak / 1024)
"""

FIT = """
import sys, time, numpy as np, keras
from kerakp.config import TrainConfig
from kerakp.data.augment import Augment
from kerakp.data.formats import load_dataset
from kerakp.data.sequence import KeypointSequence
from kerakp.model_info import CropRule
from kerakp.models.landmark_model import LandmarkModel
from kerakp.train import compile_model
data, mode, steps = load_dataset(sys.argv[1]), sys.argv[2], int(sys.argv[3])
loader = {"files, 1 worker (default)": dict(workers=1), "2 threads": dict(workers=2), "2 processes": dict(workers=2, use_multiprocessing=True),
          "arrays": dict(workers=1)}[mode]
seq = KeypointSequence(data, CropRule(128), 32, Augment(), shuffle=True, **loader)
model = LandmarkModel("mobilenetv2", "ibug68", 128)
compile_model(model, TrainConfig(epochs=1), steps)
if mode == "arrays":
    batches = [seq[i] for i in range(steps)]
    x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)      # warm-up: the graph is built
    started = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
else:
    model.fit(seq, epochs=1, steps_per_epoch=2, verbose=0)
    started = time.perf_counter()
    model.fit(seq, epochs=1, steps_per_epoch=steps, verbose=0)
print(steps * 32 / (time.perf_counter() - started))
"""


def run(code: str, *args) -> list[float]:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return [float(v) for v in done.stdout.split()[-2:]] if code is PASS else [float(done.stdout.split()[-1])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each training mode (the median is reported).")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from kerakp.data.formats import load_dataset
    from kerakp.data.pack import write_pack
    from kerakp.data.synthetic import write_synthetic_set

    report = {"machine": f"{os.cpu_count()} CPU cores ({platform.machine()})", "memory": {}, "fit_images_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = write_synthetic_set(tmp / "base", sizes[0], size=64, progress=False)
        table = pd.read_csv(base)
        for size in sizes:
            folder = tmp / f"set{size}"
            folder.mkdir()
            (folder / "images").symlink_to(base.parent / "images")
            pd.concat([table] * (size // len(table)), ignore_index=True).to_csv(folder / "landmarks.csv", index=False)
            data = load_dataset(folder / "landmarks.csv")
            write_pack(data, tmp / f"pack{size}", 96, progress=False)
            row = {"labels_mb": data.keypoints.nbytes / (1 << 20)}
            for label, path, cache in (("files, cache unbounded", folder / "landmarks.csv", 1 << 20),
                                       ("files, cache_mb 256", folder / "landmarks.csv", 256),
                                       ("packed, cache_mb 256", tmp / f"pack{size}", 256)):
                speed, peak = run(PASS, path, cache)
                row[label] = {"images_per_s": speed, "peak_rss_mb": peak}
                print(size, label, round(speed), "img/s", round(peak), "MB")
            report["memory"][size] = row
        speeds = {}
        for repeat in range(args.repeats):      # interleaved: a slow spell of the machine hits every mode alike
            for mode in ("arrays", "files, 1 worker (default)", "2 threads", "2 processes"):
                speeds.setdefault(mode, []).append(
                    run(FIT, tmp / f"set{sizes[min(1, len(sizes) - 1)]}" / "landmarks.csv", mode, args.steps)[0])
                print(mode, speeds[mode][-1])
        report["fit_images_per_s"] = {mode: float(np.median(v)) for mode, v in speeds.items()}
        report["fit_images_per_s_runs"] = speeds
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/scale.json").write_text(json.dumps(report, indent=2))
    labels = [k for k in next(iter(report["memory"].values())) if k != "labels_mb"]
    lines = [f"Command: `python scripts/bench_scale.py --sizes {args.sizes} --steps {args.steps} --repeats {args.repeats}` on {report['machine']}.", "",
             "One pass over the training batches (96 px crops, augmentation on, no model), peak resident memory (MB, "
             "VmHWM, the process's own; Keras and TensorFlow imported take about 800) and images/s, by set size:", "",
             "| images | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for size, row in report["memory"].items():
        lines.append(f"| {size} | " + " | ".join(f"{row[k]['peak_rss_mb']:.0f} MB, {row[k]['images_per_s']:.0f}/s" for k in labels) + " |")
    lines += ["", "Past the cache budget, memory grows with the labels themselves (the points as float64): "
              + ", ".join(f"{row['labels_mb']:.0f} MB at {size}" for size, row in report["memory"].items()) + "."]
    fit = report["fit_images_per_s"]
    lines += ["", f"Training MobileNetV2 at 128 px, {args.steps} steps of 32 (images/s, median of {args.repeats} runs "
              "taken in turn, with their range): "
              + ", ".join(f"{k} {v:.1f} ({min(speeds[k]):.1f}-{max(speeds[k]):.1f})" for k, v in fit.items())
              + "; against arrays: " + ", ".join(f"{k} {v / fit['arrays'] - 1:+.0%}" for k, v in fit.items() if k != "arrays") + "."]
    replace_section(Path("BENCHMARKS.md"), "Training past memory", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
