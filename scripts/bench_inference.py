"""Landmark-model inference speed per backbone, file format and thread count: milliseconds per face (batch 1).

    python scripts/bench_inference.py MODEL.keras [MODEL.keras ...] [--threads 1,2] [--runs 300]

Speed does not depend on training, so `--untrained BACKBONES` adds freshly built models of those
backbones (same input size as the first MODEL). Exports each model to every format into a temporary folder (kerakp export, with its parity checks), then times
`predict_on_batch` of one crop through kerakp.runtime, the path predict/evaluate/live use. Writes
benchmarks/inference.json and the "Inference speed" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from report import replace_section

from kerakp.timing import machine, time_calls

VARIANTS = [("keras", "none"), ("tflite", "none"), ("tflite", "float16"), ("tflite", "dynamic"), ("tflite", "int8"), ("onnx", "none")]


def bench_model(model_path: Path, args, tmp: Path) -> list[dict]:
    import cv2

    from kerakp.errors import KerakpError
    from kerakp.export import export_model, face_crops
    from kerakp.runtime import load_keras_model, open_model

    keras_model = load_keras_model(model_path)
    crop = face_crops(keras_model, args.calibration, count=1)[0]
    rows = []
    for fmt, quantize in VARIANTS:
        if quantize == "int8" and args.calibration is None:
            continue
        if fmt == "keras":
            path, size = model_path, model_path.stat().st_size
        else:
            path = tmp / f"{model_path.stem}{'' if quantize == 'none' else '_' + quantize}.{fmt}"
            try:
                size = export_model(model_path, fmt, quantize, path, args.calibration)["size_bytes"]
            except KerakpError as err:  # a format this backbone does not convert to: recorded, not timed
                rows.append({"backbone": keras_model.backbone_name, "format": fmt, "quantize": quantize, "error": str(err)})
                print(rows[-1])
                continue
        for threads in map(int, args.threads.split(",")):
            if fmt == "keras":
                if threads != int(args.threads.split(",")[0]):
                    continue  # Keras/TensorFlow fixes its thread pools at start-up: measured once, default threads
                model = keras_model
            else:
                cv2.setNumThreads(threads)
                model = open_model(path, threads)
            rows.append({"backbone": keras_model.backbone_name, "trained": "untrained" not in model_path.stem,
                         "format": fmt, "quantize": quantize, "threads": threads if fmt != "keras" else "default",
                         "size_mb": size / 1e6, **time_calls(lambda: model.predict_on_batch(crop), args.runs)})
            print(rows[-1])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--untrained", default="", help="comma-separated backbones to add, untrained")
    parser.add_argument("--calibration", type=Path, help="labelled faces for int8 (default: skip int8)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    import keras

    from kerakp.models.landmark_model import LandmarkModel
    from kerakp.runtime import load_keras_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = list(args.models)
        size = load_keras_model(models[0]).input_size
        for backbone in filter(None, args.untrained.split(",")):
            models.append(Path(tmp) / f"untrained_{backbone}.keras")
            LandmarkModel(backbone, "ibug68", size).save(models[-1])
        for model_path in models:
            rows += bench_model(model_path, args, Path(tmp))
    report = {"models": [str(m) for m in args.models], "untrained": args.untrained, "input_size": size,
              "machine": machine(), "keras_backend": keras.backend.backend(),
              "runs": args.runs, "rows": rows}
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/inference.json").write_text(json.dumps(report, indent=2))
    lines = [f"Command: `python scripts/bench_inference.py {' '.join(map(str, args.models))}"
             + (f" --untrained {args.untrained}" if args.untrained else "")
             + (f" --calibration {args.calibration}" if args.calibration else "") + f" --threads {args.threads}` "
             f"on {report['machine']}: {size} px input, one face crop per call, median of {args.runs} calls after "
             "warm-up. Untrained models time the same as trained ones (int8 ranges come from the calibration faces).", "",
             "| backbone | format | quantization | threads | size MB | ms median | ms p95 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backbone']} | {r['format']} | {r['quantize']} | {r['threads']} | {r['size_mb']:.2f} | "
              f"{r['median_ms']:.2f} | {r['p95_ms']:.2f} |" for r in rows if "error" not in r]
    failed = [f"{r['backbone']} {r['format']} ({r['error'].split(': ', 1)[-1]})" for r in rows if "error" in r]
    if failed:
        lines += ["", "Not exported: " + "; ".join(failed)]
    replace_section(Path("BENCHMARKS.md"), "Inference speed", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
