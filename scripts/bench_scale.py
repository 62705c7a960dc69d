"""Training past memory: peak memory and images/s of the input pipeline by set size, with the decode cache's
budget and with a packed set; training throughput from files against in-memory arrays.

    python scripts/bench_scale.py [--sizes 1000,10000,100000] [--steps 40] [--repeats 3]

Sets: 1,000 synthetic faces (64 px) written once; the larger sets repeat their rows (each row is decoded on
its own and cached apart, as distinct photos would be). Memory: one pass over the training batches
(`KeypointSequence`, augmentation on, no model) in a fresh process, its peak resident memory, with the cache
unbounded (every decoded image kept, as before `cache_mb`), with `cache_mb` 256, and from the set packed by
`kerakp pack`. Throughput: `model.fit` of MobileNetV2 at 128 px for `--steps` steps of 32 from the files
(1 worker (the default), 2 threads, 2 processes) and from the same crops prepared in memory, on 2 cores.
Across processes (JAX): the same training, data-parallel, in 1 process and in 2 local processes joined as
`kerakp train --processes 2` joins them (`kerakp.devices.join_processes`, each process reading its part of every
batch), images/s of the whole run and the share of a step one all-reduce of the gradients takes (timed alone);
from these, an estimate for 4 and 8 hosts. Writes benchmarks/scale.json and the "Training past memory" section
of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from report import replace_section

from kerakp.timing import machine

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


PROCESSES = """
import sys, time, numpy as np
from kerakp.config import TrainConfig
from kerakp.data.augment import Augment
from kerakp.data.formats import load_dataset
from kerakp.data.sequence import KeypointSequence
from kerakp.devices import join_processes
from kerakp.model_info import CropRule
from kerakp.models.landmark_model import LandmarkModel
from kerakp.train import compile_model, training_context
data, steps = load_dataset(sys.argv[1]), int(sys.argv[2])
config = TrainConfig(epochs=1, batch_size=32, distribute="data-parallel")
shard = join_processes()
with training_context(config, progress=False) as devices:
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    seq = KeypointSequence(data, CropRule(128), 32, Augment(), shuffle=True, devices=devices, shard=shard)
    model = LandmarkModel("mobilenetv2", "ibug68", 128)
    compile_model(model, config, steps)
    model.fit(seq, epochs=1, steps_per_epoch=2, verbose=0)
    started = time.perf_counter()
    model.fit(seq, epochs=1, steps_per_epoch=steps, verbose=0)
    step = (time.perf_counter() - started) / steps
    mesh = Mesh(np.array(jax.devices()), ("batch",))      # one all-reduce of a gradient-sized buffer, alone
    size = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    grads = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("batch")),
                                                   np.ones((jax.local_device_count(), size), np.float32))
    reduce = jax.jit(lambda g: g.sum(0), out_shardings=NamedSharding(mesh, PartitionSpec()))
    reduce(grads).block_until_ready()
    started = time.perf_counter()
    for _ in range(5):
        reduce(grads).block_until_ready()
    print(32 / step, (time.perf_counter() - started) / 5 / step)
"""


def run_processes(data, steps: int, processes: int) -> list[float]:
    """PROCESSES in `processes` local JAX processes of one CPU device each: process 0's images/s and
    communication share."""
    import socket

    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    started = [subprocess.Popen([sys.executable, "-c", PROCESSES, str(data), str(steps)], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
                                     "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                                     "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes), "KERAS_DISTRIBUTION_PROCESS_ID": str(k)})
               for k in range(processes)]
    outputs = [process.communicate() for process in started]
    if any(process.returncode for process in started):
        raise SystemExit("\n".join(err[-2000:] for _, err in outputs))
    return [float(v) for v in outputs[0][0].split()[-2:]]


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
    parser.add_argument("--processes-only", action="store_true",
                        help="Only the 1- and 2-process rows (benchmarks/scale.json's `processes`, their own section).")
    args = parser.parse_args()
    if args.processes_only:
        from kerakp.data.synthetic import write_synthetic_set

        with tempfile.TemporaryDirectory() as tmp:
            processes = across_processes(write_synthetic_set(tmp, 1000, size=64, progress=False), args.steps, args.repeats)
        report = json.loads(Path("benchmarks/scale.json").read_text()) if Path("benchmarks/scale.json").is_file() else {}
        Path("benchmarks/scale.json").write_text(json.dumps({**report, "processes": processes}, indent=2))
        write_processes(processes, args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    from kerakp.data.formats import load_dataset
    from kerakp.data.pack import write_pack
    from kerakp.data.synthetic import write_synthetic_set

    report = {"machine": machine(), "memory": {}, "fit_images_per_s": {}}
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
        report["processes"] = across_processes(tmp / f"set{sizes[min(1, len(sizes) - 1)]}" / "landmarks.csv",
                                               args.steps, args.repeats)
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
    write_processes(report["processes"], args)


def across_processes(path: Path, steps: int, repeats: int) -> dict:
    """Images/s and the all-reduce's share of a step, median of `repeats`, for 1 and 2 local processes."""
    across = {}
    for _ in range(repeats):
        for processes in (1, 2):
            speed, share = run_processes(path, steps, processes)
            across.setdefault(processes, []).append((speed, share))
            print(processes, "processes", speed, "img/s", share, "communication")
    return {n: {"images_per_s": float(np.median([r[0] for r in runs])),
                "communication_share": float(np.median([r[1] for r in runs]))} for n, runs in across.items()}


def write_processes(processes: dict, args) -> None:
    """The "Training across processes" section of BENCHMARKS.md, with the estimate for 4 and 8 hosts."""
    one, two = processes[1], processes[2]
    step_one, comm_two = 32 / one["images_per_s"], two["communication_share"] * 32 / two["images_per_s"]
    estimate = {n: 32 / (step_one / n + comm_two * (n - 1) / n * 2) for n in (4, 8)}   # ring all-reduce: 2(N-1)/N
    text = (f"Command: `python scripts/bench_scale.py --processes-only --steps {args.steps} --repeats {args.repeats}` on "
            f"{machine()}. JAX, MobileNetV2 at 128 px trained data-parallel with a "
            f"global batch of 32; one CPU device a process, the processes sharing the cores; median of {args.repeats}: "
            f"1 process {one['images_per_s']:.1f} images/s; 2 local processes {two['images_per_s']:.1f} images/s, of each "
            f"step {two['communication_share']:.1%} one all-reduce of the gradients (timed alone). Estimate, not a "
            "measurement, for hosts of this one's speed on a network as fast as this loopback (per-host compute 1/N of "
            "one process's step, the all-reduce scaled as a ring's 2(N-1)/N): "
            + ", ".join(f"{n} hosts {v:.0f} images/s" for n, v in estimate.items()) + ".")
    replace_section(Path("BENCHMARKS.md"), "Training across processes", text)
    print(text)


if __name__ == "__main__":
    main()
