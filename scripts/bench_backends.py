"""Training and inference speed of kerakp models on each installed Keras backend (one process per backend).

    python scripts/bench_backends.py [--backbones mobilenetv2,efficientnetv2b0] [--size 128]

Training: images/s of `train_on_batch` at batch 32 on real face crops (synthetic faces through the
KeypointSequence), after warm-up. Inference: milliseconds per face of `predict_on_batch` at batch 1 (what
the Predictor calls), median of repeated calls. Writes benchmarks/backends.json and the "Keras backends"
section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from report import replace_section

from kerakp.timing import machine, time_calls

BACKENDS = ("tensorflow", "jax", "torch")


def measure(backbones: list[str], size: int, train_steps: int, infer_runs: int) -> dict:
    """Run inside one backend's process."""
    import tempfile

    import keras

    from kerakp.config import TrainConfig
    from kerakp.data.formats import load_dataset
    from kerakp.data.sequence import KeypointSequence
    from kerakp.data.synthetic import write_synthetic_set
    from kerakp.models.landmark_model import LandmarkModel
    from kerakp.train import compile_model

    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset(write_synthetic_set(tmp, 64, 8, 160, progress=False))
        crops, targets = KeypointSequence(data, size, batch_size=32)[0]
    results = {}
    for backbone in backbones:
        keras.utils.set_random_seed(0)
        model = LandmarkModel(backbone, "ibug68", size)
        compile_model(model, TrainConfig(epochs=1), steps_per_epoch=100)
        for _ in range(3):
            model.train_on_batch(crops, targets)
        start = time.perf_counter()
        for _ in range(train_steps):
            model.train_on_batch(crops, targets)
        train_ips = train_steps * len(crops) / (time.perf_counter() - start)
        speed = time_calls(lambda: model.predict_on_batch(crops[:1]), infer_runs, warmup=5)
        results[backbone] = {"train_images_per_s": train_ips, "infer_ms_median": speed["median_ms"],
                             "infer_ms_p95": speed["p95_ms"], "params": model.count_params()}
    return {"backend": keras.backend.backend(), "keras": keras.__version__, "results": results}


def markdown(report: dict) -> str:
    lines = [f"Command: `python scripts/bench_backends.py --backbones {','.join(report['backbones'])} --size {report['size']}` "
             f"on {report['machine']}. Training: `train_on_batch`, batch 32, {report['train_steps']} steps after "
             f"warm-up; inference: `predict_on_batch` of one {report['size']} px crop, median of {report['infer_runs']} calls.",
             "", "| backbone | backend | train images/s | infer ms (median) | infer ms (p95) |", "|---|---|---|---|---|"]
    for backbone in report["backbones"]:
        for backend, run in report["backends"].items():
            if "error" in run:
                continue
            r = run["results"][backbone]
            lines.append(f"| {backbone} | {backend} | {r['train_images_per_s']:.1f} | {r['infer_ms_median']:.1f} | {r['infer_ms_p95']:.1f} |")
    skipped = [f"{b} ({run['error']})" for b, run in report["backends"].items() if "error" in run]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped)]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mobilenetv2,efficientnetv2b0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=15)
    parser.add_argument("--infer-runs", type=int, default=100)
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    backbones = args.backbones.split(",")
    if args.worker:
        print(json.dumps(measure(backbones, args.size, args.train_steps, args.infer_runs)))
        return
    report = {"backbones": backbones, "size": args.size, "train_steps": args.train_steps, "infer_runs": args.infer_runs,
              "machine": machine(), "backends": {}}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            report["backends"][backend] = {"error": "not installed"}
            continue
        print(f"measuring {backend} ...", file=sys.stderr)
        done = subprocess.run([sys.executable, __file__, "--worker", backend, "--backbones", args.backbones,
                               "--size", str(args.size), "--train-steps", str(args.train_steps),
                               "--infer-runs", str(args.infer_runs)],
                              env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
        if done.returncode != 0:
            report["backends"][backend] = {"error": done.stderr.strip().splitlines()[-1][:200]}
            continue
        report["backends"][backend] = json.loads(done.stdout.strip().splitlines()[-1])
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/backends.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    replace_section(Path("BENCHMARKS.md"), "Keras backends", text)
    print(text)


if __name__ == "__main__":
    main()
