"""`export`: a trained model as TFLite, ONNX or a TensorFlow SavedModel, checked against the Keras model.

The file is written under a temporary name and renamed into place only after the parity check: the
exported model and the Keras model run the same face crops, and the report (max absolute difference of
the normalised coordinates, NME of each against the crops' landmarks) is stored in `<file>.json` with the
model's kerakp metadata, which the runtime needs to crop and decode. A float export that differs by more
than `FLOAT_TOLERANCE` fails, and so does a quantized one that adds more than `QUANTIZED_NME_TOLERANCE`
to the crop-space NME (int8 softmax heatmaps, for example, collapse). TensorFlow is imported here and nowhere in training or inference.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from kerakp.errors import KerakpError
from kerakp.quiet import native_stderr_silenced

FORMATS = {"tflite": ".tflite", "onnx": ".onnx", "savedmodel": ""}
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
FLOAT_TOLERANCE = 1e-4
QUANTIZED_NME_TOLERANCE = 0.01  # crop-space NME a quantized export may add (int8 MobileNetV2 regression: < 0.003)


def face_crops(model, data=None, count: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` face crops at the model's input size and their target coordinates: from a labelled set
    (`data`, a path any reader takes) or, without one, from synthetic faces."""
    from kerakp.data.readers import load_dataset
    from kerakp.data.sequence import KeypointSequence
    from kerakp.data.synthetic import write_synthetic_set

    with tempfile.TemporaryDirectory() as tmp:
        labelled = load_dataset(data) if data is not None else load_dataset(
            write_synthetic_set(tmp, count, 4, 160, seed=seed, progress=False))
        if labelled.schema.name != model.schema_name:
            raise KerakpError(f"{labelled.source}: markup {labelled.schema.name}, but the model predicts {model.schema_name}")
        chosen = np.random.default_rng(seed).permutation(len(labelled))[:count]
        return KeypointSequence(labelled.subset(chosen), model.input_size, batch_size=len(chosen),
                                crop_scale=model.crop_scale, upright=model.upright)[0]


def crop_nme(outputs: np.ndarray, targets: np.ndarray, schema) -> float:
    """Mean NME in crop space of (N, 2K) outputs against (N, 2K) targets (NaN = missing; crop fractions,
    so a markup without a normalising pair divides by the crop side, 1)."""
    from kerakp.metrics import per_image_nme

    shape = (len(outputs), -1, 2)
    return float(np.mean(per_image_nme(outputs.reshape(shape), targets.reshape(shape), schema, scale=1.0)))


def _converter_options(quantize: str, crops: np.ndarray) -> dict:
    import tensorflow as tf

    if quantize == "none":
        return {}
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif quantize == "int8":
        options["representative_dataset"] = lambda: ([crop[None]] for crop in crops.astype(np.float32))
    return options


def _write(model, fmt: str, quantize: str, path: Path, crops: np.ndarray) -> None:
    if fmt == "tflite":
        with native_stderr_silenced():  # the converter reports its quantization settings from C++
            model.export(str(path), format="litert", verbose=False, **_converter_options(quantize, crops))
    elif fmt == "onnx":
        with warnings.catch_warnings():  # tf2onnx probes np.object, which NumPy 2 warns about
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format="onnx", verbose=False)
    else:
        model.export(str(path), format="tf_saved_model", verbose=False)


def _run_export(path: Path, fmt: str, crops: np.ndarray, config: dict) -> np.ndarray:
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serve"]
        return next(iter(serve(tf.constant(crops, tf.float32)).values())).numpy()
    from kerakp.runtime import LiteRTModel, OnnxModel

    return (LiteRTModel if fmt == "tflite" else OnnxModel)(path, config=config).predict_on_batch(crops)


def export_model(model_path, fmt: str = "tflite", quantize: str = "none", out=None, calibration=None) -> dict:
    """Export, check and place the file; returns the report also written to `<out>.json`."""
    import keras

    from kerakp.runtime import load_keras_model

    if fmt not in FORMATS:
        raise KerakpError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    if quantize not in QUANTIZATIONS:
        raise KerakpError(f"unknown quantization '{quantize}' (known: {', '.join(QUANTIZATIONS)})")
    if quantize != "none" and fmt != "tflite":
        raise KerakpError(f"--quantize {quantize} is for TFLite; {fmt} exports are float32")
    if quantize == "int8" and calibration is None:
        raise KerakpError("--quantize int8 needs --calibration DATA: face crops from the training data set its ranges")
    if keras.backend.backend() != "tensorflow":
        raise KerakpError(f"export converts through TensorFlow; run `kerakp --backend tensorflow export ...` "
                          f"(Keras is on '{keras.backend.backend()}'; the .keras file loads on any backend)")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise KerakpError(f"{model_path}: model file not found")
    model = load_keras_model(model_path)
    suffix = ("" if quantize == "none" else f"_{quantize}") + FORMATS[fmt]
    out = Path(out) if out else model_path.with_name(model_path.stem + suffix)
    crops, targets = face_crops(model, calibration, count=200 if quantize == "int8" else 64)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kerakp-export-", dir=out.parent))
    try:
        staged = staging / (out.name if fmt != "savedmodel" else "savedmodel")
        reference = np.asarray(model.predict_on_batch(crops))  # also builds the graph the ONNX exporter traces
        _write(model, fmt, quantize, staged, crops)
        try:
            exported = _run_export(staged, fmt, crops, model.get_config())
        except KerakpError as err:  # name the user's file, not the staging copy
            raise KerakpError(f"{out.name}: {str(err).split(': ', 1)[-1]}; nothing written") from None
        report = {
            "format": fmt, "quantize": quantize, "file": out.name,
            "size_bytes": sum(f.stat().st_size for f in staged.rglob("*")) if staged.is_dir() else staged.stat().st_size,
            "parity": {"crops": len(crops), "source": str(calibration) if calibration else "synthetic faces",
                       "max_abs_diff": float(np.abs(exported - reference).max()),
                       "nme_keras": crop_nme(reference, targets, model.schema), "nme_export": crop_nme(exported, targets, model.schema)},
            "model": model.get_config(),
        }
        report["parity"]["nme_change"] = report["parity"]["nme_export"] - report["parity"]["nme_keras"]
        if quantize == "none" and report["parity"]["max_abs_diff"] > FLOAT_TOLERANCE:
            raise KerakpError(f"{out.name}: parity check failed: max |export - keras| = "
                              f"{report['parity']['max_abs_diff']:.2e} > {FLOAT_TOLERANCE:g}; nothing written")
        if quantize != "none" and report["parity"]["nme_change"] > QUANTIZED_NME_TOLERANCE:
            raise KerakpError(f"{out.name}: {quantize} quantization ruins this model (crop NME {report['parity']['nme_keras']:.4f} -> "
                              f"{report['parity']['nme_export']:.4f}); try --quantize dynamic or float16; nothing written")
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staged.replace(out)
        (staging / "report.json").replace(out.with_name(out.name + ".json"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
