"""Labelling many images (`kerakp predict`): images per second with one and two worker processes, batched reads
against one image a read, peak memory for 1,000 and 100,000 images, the same job on a local Ray instance, and
the data-parallel fix on the training side (IMM 58, batch 32, two devices: the first epoch's loss against one
device's, JAX and TensorFlow).

    python scripts/bench_bulk.py [--images 200] [--large 100000]

Images: 640x480 frames, each a validation photo of 300-W (or, for the memory runs, a drawn face) pasted on
smooth noise, written as JPEG; the large set repeats 1,000 files as hard links (each is read and decoded on its
own). Each run is `kerakp predict` in a fresh process on the default path (two passes, flip test, turned reads)
with the preset named, the whole process tree's resident memory polled every 0.2 s. Nothing else may run
meanwhile. Writes benchmarks/bulk.json and the "Bulk labelling" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from bench_detect import pasted
from report import replace_section

from kerakp.api import Landmarker
from kerakp.data.dataset import model_subset
from kerakp.data.formats import load_dataset
from kerakp.data.synthetic import synthetic_face
from kerakp.timing import machine

REPO = Path(__file__).resolve().parents[1]


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


def predict(model: str, folder: Path, out: Path, *extra) -> dict:
    """`kerakp predict` in a fresh process: wall seconds (from its start) and the peak memory of its process tree."""
    command = [sys.executable, "-m", "kerakp", "predict", model, str(folder), "--out", str(out), "--overwrite", *map(str, extra)]
    started, peak = time.perf_counter(), 0
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while running.poll() is None:
        peak = max(peak, tree_rss(running.pid))
        time.sleep(0.2)
    out_text, err = running.communicate()
    if running.returncode:
        raise RuntimeError(err[-2000:])
    return {"seconds": time.perf_counter() - started, "peak_mb": peak / 2**20, "stdout": out_text.strip().splitlines()[-1]}


def startup(model: str, folder: Path, out: Path, *extra) -> float:
    """Seconds a run takes on one image: start-up (imports, model, workers) without the work."""
    one = folder.parent / f"{folder.name}_one"
    one.mkdir(exist_ok=True)
    first = sorted(folder.iterdir())[0]
    if not (one / first.name).exists():
        os.link(first, one / first.name)
    return predict(model, one, out, *extra)["seconds"]


def rate(model: str, folder: Path, out: Path, *extra) -> dict:
    """Images per second of the work alone: the run's time less the same run's time on one image."""
    count = len(list(folder.iterdir()))
    run = predict(model, folder, out, *extra)
    start = startup(model, folder, out, *extra)
    return {**run, "startup_s": start, "images_per_s": (count - 1) / (run["seconds"] - start)}


def data_parallel(backend: str) -> dict:
    job = REPO / "tests" / "scale_job.py"
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for devices, distribute in ((1, "none"), (2, "data-parallel")):   # a process each, as a user runs them
            done = subprocess.run([sys.executable, str(job), backend, str(devices), distribute, "float32",
                                   str(REPO.parent / "shared" / "data" / "imm58"), f"{tmp}/{devices}", "32"],
                                  capture_output=True, text=True, timeout=1200)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            losses[devices] = json.loads(done.stdout.strip().splitlines()[-1])[distribute]["loss"]
    return {"one_device": losses[1], "two_devices": losses[2], "relative_difference": losses[2] / losses[1] - 1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--models", default="300w,300w-fast")
    parser.add_argument("--parts", default="speed,memory,data-parallel",
                        help="what to measure; the others are kept from benchmarks/bulk.json")
    args = parser.parse_args()
    models, parts = args.models.split(","), args.parts.split(",")
    kept = json.loads(Path("benchmarks/bulk.json").read_text()) if Path("benchmarks/bulk.json").is_file() else {}
    report = {**kept, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
              "images": args.images, "large": args.large}
    val = model_subset(load_dataset("../shared/data/300w_train"), Landmarker("300w").info.split, "val")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        for k in range(args.images):
            frame, _ = pasted(val.image(k % len(val)), val.keypoints[k % len(val)], 120, rng)
            cv2.imwrite(str(photos / f"{k:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        for model in models if "speed" in parts else ():
            report.setdefault("speed", {})
            runs = {"1 worker, batch 1": rate(model, photos, tmp / "p.csv", "--workers", 1, "--batch", 1),
                    "1 worker, batch 16": rate(model, photos, tmp / "p.csv", "--workers", 1, "--batch", 16),
                    "2 workers, batch 16": rate(model, photos, tmp / "p.csv", "--workers", 2, "--batch", 16)}
            try:
                runs["Ray, 2 CPUs, batch 16"] = rate(model, photos, tmp / "p.csv", "--workers", 2, "--batch", 16, "--ray", "local")
            except RuntimeError as err:
                runs["Ray, 2 CPUs, batch 16"] = {"error": str(err).splitlines()[-1]}
            report["speed"][model] = runs
            print(model, {k: round(v.get("images_per_s", float("nan")), 2) for k, v in runs.items()})

        drawn = tmp / "drawn"
        drawn.mkdir()
        for k in range(1000 if "memory" in parts else 0):
            face = synthetic_face(rng, size=160)
            frame = cv2.copyMakeBorder(face["image"], 160, 160, 240, 240, cv2.BORDER_REPLICATE)
            cv2.imwrite(str(drawn / f"{k:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        large = tmp / "large"
        large.mkdir()
        for k in range(args.large if "memory" in parts else 0):
            os.link(drawn / f"{k % 1000:06d}.jpg", large / f"{k:07d}.jpg")
        fast = models[-1]
        memory = {} if "memory" not in parts else {"1,000": predict(fast, drawn, tmp / "m.csv", "--workers", 2, "--passes", 0, "--turn", 0),
                  f"{args.large:,}": predict(fast, large, tmp / "m.csv", "--workers", 2, "--passes", 0, "--turn", 0)}
        if memory:
            report["memory"] = {"model": fast, "setting": "--workers 2 --passes 0 --turn 0", "runs": memory}
            print("memory", {k: round(v["peak_mb"], 1) for k, v in memory.items()})
    if "data-parallel" in parts:
        report["data_parallel_imm58"] = {backend: data_parallel(backend) for backend in ("jax", "tensorflow")}
    print("data parallel", report["data_parallel_imm58"])
    Path("benchmarks/bulk.json").write_text(json.dumps(report, indent=2))
    write_section(report, args)


def write_section(report: dict, args) -> None:
    lines = [f"Command: `python scripts/bench_bulk.py --images {args.images} --large {args.large}` on {report['machine']}, "
             f"{report['date']}. `kerakp predict` in a fresh process on {args.images} 640x480 frames (300-W validation photos "
             "pasted on noise), the default path; images per second of the work (the run less the same run on one image, "
             "whose time is the start-up).", "",
             "| preset | run | images/s | start-up s | peak MB |", "|---|---|---|---|---|"]
    for model, runs in report["speed"].items():
        for name, run in runs.items():
            if "error" in run:
                lines.append(f"| `{model}` | {name} | {run['error']} | | |")
            else:
                lines.append(f"| `{model}` | {name} | {run['images_per_s']:.1f} | {run['startup_s']:.1f} | {run['peak_mb']:.0f} |")
    for model, runs in report["speed"].items():
        one, batched, two = (runs[k]["images_per_s"] for k in ("1 worker, batch 1", "1 worker, batch 16", "2 workers, batch 16"))
        lines.append(f"\n`{model}`: batched / one image a read {batched / one:.2f}x; two workers / one {two / batched:.2f}x.")
    memory = report["memory"]
    lines += ["", f"Peak memory of the process tree, `{memory['model']}` {memory['setting']} (drawn faces; the large set "
              "repeats 1,000 files as hard links):", "", "| images | seconds | peak MB |", "|---|---|---|"]
    lines += [f"| {name} | {run['seconds']:.0f} | {run['peak_mb']:.0f} |" for name, run in memory["runs"].items()]
    lines += ["", "Data-parallel training, IMM 58, batch 32, two virtual CPU devices against one (`tests/scale_job.py`): "
              "first-epoch loss " + "; ".join(f"{b} {r['two_devices']:.5f} against {r['one_device']:.5f} "
                                              f"({100 * r['relative_difference']:+.2f} %)"
                                              for b, r in report["data_parallel_imm58"].items()) + "."]
    replace_section(Path("BENCHMARKS.md"), "Bulk labelling", "\n".join(lines))


if __name__ == "__main__":
    main()
