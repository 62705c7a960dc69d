"""Landmark-model inference speed per file format and thread count: milliseconds per face (batch 1).

    python scripts/bench_inference.py MODEL.keras [--threads 1,2] [--runs 300]

Exports MODEL to every format into a temporary folder (kerakp export, with its parity checks), then times
`predict_on_batch` of one crop through kerakp.runtime, the path predict/evaluate/live use. Writes
benchmarks/inference.json and the "Inference speed" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from report import replace_section, time_calls

VARIANTS = [("keras", "none"), ("tflite", "none"), ("tflite", "float16"), ("tflite", "dynamic"), ("tflite", "int8"), ("onnx", "none")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--calibration", type=Path, help="labelled faces for int8 (default: skip int8)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    import cv2
    import keras

    from kerakp.export import export_model, face_crops
    from kerakp.runtime import load_keras_model, open_model

    keras_model = load_keras_model(args.model)
    crop = face_crops(keras_model, args.calibration, count=1)[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, quantize in VARIANTS:
            if quantize == "int8" and args.calibration is None:
                continue
            if fmt == "keras":
                path, size = args.model, args.model.stat().st_size
            else:
                path = Path(tmp) / f"model{'' if quantize == 'none' else '_' + quantize}.{fmt}"
                size = export_model(args.model, fmt, quantize, path, args.calibration)["size_bytes"]
            for threads in map(int, args.threads.split(",")):
                if fmt == "keras":
                    if threads != int(args.threads.split(",")[0]):
                        continue  # Keras/TensorFlow fixes its thread pools at start-up: measured once, default threads
                    model = keras_model
                else:
                    cv2.setNumThreads(threads)
                    model = open_model(path, threads)
                rows.append({"format": fmt, "quantize": quantize, "threads": threads if fmt != "keras" else "default",
                             "size_mb": size / 1e6, **time_calls(lambda: model.predict_on_batch(crop), args.runs)})
                print(rows[-1])
    report = {"model": str(args.model), "backbone": keras_model.backbone_name, "input_size": keras_model.input_size,
              "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})", "keras_backend": keras.backend.backend(),
              "runs": args.runs, "rows": rows}
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/inference.json").write_text(json.dumps(report, indent=2))
    lines = [f"Command: `python scripts/bench_inference.py {args.model}"
             + (f" --calibration {args.calibration}" if args.calibration else "") + f" --threads {args.threads}` "
             f"on {report['machine']}: {keras_model.backbone_name} at {keras_model.input_size} px, one face crop per call, "
             f"median of {args.runs} calls after warm-up.", "",
             "| format | quantization | threads | size MB | ms median | ms p95 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['format']} | {r['quantize']} | {r['threads']} | {r['size_mb']:.2f} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} |"
              for r in rows]
    replace_section(Path("BENCHMARKS.md"), "Inference speed", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
