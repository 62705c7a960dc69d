"""A float head on an int8 backbone: does selective quantization bring the accurate heatmap model near the
live loop's budget without the int8 heatmaps' collapse?

    python scripts/bench_float_head.py [--model saved_models/300w_mobilenetv2_heatmap.keras] [--data ../shared/data/300w_train]

Converts the model three ways with `kerakp export`'s TFLite writer: float, fully int8 (ranges from 100 face
crops), and int8 with every layer after the backbone left in float (`--quantize int8-float-head`: LiteRT's
quantization debugger, `denylisted_nodes`). Each file is read through kerakp.runtime on one thread: median
milliseconds per crop (batch 1), and crop-space NME on 200 face crops of the labelled set against the Keras
model's. Writes benchmarks/float_head.json and the "A float head on an int8 backbone (issue 25)" section of
BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from report import replace_section

from kerakp.export import FORMATS, crop_nme, face_crops
from kerakp.runtime import LiteRTModel, load_keras_model
from kerakp.timing import machine, time_calls

QUANTIZE = {"float": "none", "float head": "int8-float-head", "int8": "int8"}   # conversion -> kerakp's quantization


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/300w_mobilenetv2_heatmap.keras")
    parser.add_argument("--data", default="../shared/data/300w_train")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    model = load_keras_model(args.model)
    crops, targets = face_crops(model, args.data, count=200)
    reference = np.asarray(model.predict_on_batch(crops))
    report = {"machine": machine(), "model": args.model,
              "keras_crop_nme": crop_nme(reference, targets, model.schema), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("float", "float head", "int8"):
            path = Path(tmp) / f"{how.replace(' ', '_')}.tflite"
            FORMATS["tflite"].write(model, path, QUANTIZE[how], crops[:100])
            runtime = LiteRTModel(path, threads=1, config=model.get_config())
            outputs = np.concatenate([runtime.predict_on_batch(crop[None]) for crop in crops])
            one = crops[:1]
            report["variants"][how] = {"size_mb": path.stat().st_size / 1e6,
                                       "ms": time_calls(lambda: runtime.predict_on_batch(one), args.runs, warmup=30),
                                       "crop_nme": crop_nme(outputs, targets, model.schema),
                                       "max_abs_diff": float(np.abs(outputs - reference).max())}
            print(how, report["variants"][how])
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/float_head.json").write_text(json.dumps(report, indent=2))
    lines = [f"Command: `python scripts/bench_float_head.py --model {args.model} --data {args.data}` on {report['machine']}, "
             f"one thread, batch 1 (median of {args.runs} calls); crop NME on 200 face crops of the labelled set (Keras "
             f"model: {report['keras_crop_nme']:.4f}).", "",
             "| conversion | MB | ms median | ms p95 | crop NME | change against Keras | max abs diff |", "|---|---|---|---|---|---|---|"]
    for how, row in report["variants"].items():
        lines.append(f"| {how} | {row['size_mb']:.2f} | {row['ms']['median_ms']:.2f} | {row['ms']['p95_ms']:.2f} | "
                     f"{row['crop_nme']:.4f} | {row['crop_nme'] - report['keras_crop_nme']:+.4f} | {row['max_abs_diff']:.4f} |")
    ms = {how: row["ms"]["median_ms"] for how, row in report["variants"].items()}
    lines += ["", f"Keeping the head in float keeps {(ms['float'] - ms['float head']) / (ms['float'] - ms['int8']):.0%} of full "
              "int8's saving: the rest is in the head, and quantizing the head is what spreads the heatmaps."]
    replace_section(Path("BENCHMARKS.md"), "A float head on an int8 backbone (issue 25)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
