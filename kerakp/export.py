"""`export`: a trained model as TFLite, ONNX or a TensorFlow SavedModel, checked against the Keras model.

`FORMATS` is the table of export formats. The file is written in a staging folder and moved into place only
after the parity check: the export and the Keras model run the same face crops (of `--calibration`'s faces, or
of synthetic faces, which serve a model of any markup since comparing outputs needs no labels); a float export
that differs by more than `FLOAT_TOLERANCE` is refused, and so is a quantized one that adds more than
`QUANTIZED_NME_TOLERANCE` to the crop NME against the labels (with `--calibration`) or, without labels, whose
points lie further than `QUANTIZED_SHIFT_TOLERANCE` from the Keras model's. The report and the model's info go
to `<file>.json`, which the runtime reads.
TensorFlow is imported here and nowhere in training or inference.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from kerakp.errors import KerakpError
from kerakp.io import refuse_existing, refuse_if_interrupted, remove, writable_folder, write_json
from kerakp.quiet import native_stderr_silenced
from kerakp.runtime import RUNTIMES

FLOAT_TOLERANCE = 1e-4
QUANTIZED_NME_TOLERANCE = 0.01  # crop-space NME a quantized export may add (int8 softmax heatmaps collapse)
QUANTIZED_SHIFT_TOLERANCE = 0.01  # without labels: mean point distance from the Keras reading, in crop sides


@dataclass(frozen=True)
class ExportFormat:
    """One export format: the file suffix ("" for a folder), the quantizations it takes and how it is written
    (`write(model, path, quantize, crops)`); the runtime that opens it is `kerakp.runtime.RUNTIMES[suffix]`."""

    suffix: str
    quantizations: tuple[str, ...]
    write: Callable | None
    export: Callable | None = None   # a format with a path of its own: `export(model, quantize, out, calibration, overwrite)`

    @property
    def runtime(self) -> type:
        return RUNTIMES[self.suffix]


def head_layers(model) -> list[str]:
    """The names of the layers after the backbone (the model's one nested Keras model): the head, which
    `int8-float-head` leaves in float."""
    import keras

    nested = [i for i, layer in enumerate(model.layers) if isinstance(layer, keras.Model)]
    if len(nested) != 1 or nested[0] == len(model.layers) - 1:
        raise KerakpError("its head cannot be told apart from its backbone (it needs one nested backbone model "
                          f"followed by the head's layers, found {len(nested)} nested models); try --quantize int8")
    return [layer.name for layer in model.layers[nested[0] + 1:]]


def int8_float_head(model, crops: np.ndarray) -> bytes:
    """The model as TFLite, int8 up to the backbone's output (ranges from `crops`) with every head layer left in
    float (LiteRT's quantization debugger, `denylisted_nodes`): quantizing a heatmap head spreads its heatmaps,
    while most of int8's saving is in the backbone."""
    import tensorflow as tf

    head = head_layers(model)
    # the converter lists its SavedModel's endpoints on stdout, the debugger's tf.lite.Interpreter warns of its end
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([crop[None]] for crop in crops.astype(np.float32))
        interpreter = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset)._quant_interpreter
        tensors = [t["name"] for t in interpreter.get_tensor_details()]
        denied = {t for t in tensors if any(f"/{name}_" in t for name in head) and not t.startswith("NumericVerify")}
        denied |= {t["name"] for t in interpreter.get_output_details()}   # the head's last op writes these
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=sorted(denied)),
        ).get_nondebug_quantized_model()


def _write_tflite(model, path: Path, quantize: str, crops: np.ndarray) -> None:
    import tensorflow as tf

    if quantize == "int8-float-head":
        with native_stderr_silenced():
            path.write_bytes(int8_float_head(model, crops))
        return
    options = {}
    if quantize != "none":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif quantize == "int8":
        options["representative_dataset"] = lambda: ([crop[None]] for crop in crops.astype(np.float32))
    with native_stderr_silenced():  # the converter reports its quantization settings from C++
        model.export(str(path), format="litert", verbose=False, **options)


def _write_onnx(model, path: Path, quantize: str, crops: np.ndarray) -> None:
    with warnings.catch_warnings():  # tf2onnx probes np.object, which NumPy 2 warns about
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False)


def _write_savedmodel(model, path: Path, quantize: str, crops: np.ndarray) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def _export_web(model, quantize: str, out, calibration, overwrite: bool) -> dict:
    """The browser page (`kerakp.web`) of a preset or `.tflite` export as it is, or of a `.keras` model exported
    to TFLite (and parity-checked) first."""
    from kerakp.web import write_page

    if Path(str(model)).suffix.lower() != ".keras":
        if quantize != "none":
            raise KerakpError(f"--quantize {quantize}: {model} is already exported; the page runs it as it is")
        return write_page(model, out, overwrite)
    model = Path(model)
    out = out or model.with_name(f"{model.stem}_web")
    refuse_existing(out, overwrite)
    with tempfile.TemporaryDirectory() as folder:
        tflite = Path(folder) / f"{model.stem}.tflite"
        export_model(model, "tflite", quantize, tflite, calibration)
        try:
            return write_page(tflite, out, overwrite, name=model.stem)
        except KerakpError as err:   # name the user's model, not the staging copy
            raise KerakpError(str(err).replace(str(tflite), str(model))) from None


FORMATS = {
    "tflite": ExportFormat(".tflite", ("none", "float16", "dynamic", "int8", "int8-float-head"), _write_tflite),
    "onnx": ExportFormat(".onnx", ("none",), _write_onnx),
    "savedmodel": ExportFormat("", ("none",), _write_savedmodel),
    "web": ExportFormat("", ("none", "float16", "dynamic", "int8", "int8-float-head"), None, export=_export_web),
}
QUANTIZATIONS = tuple(dict.fromkeys(q for spec in FORMATS.values() for q in spec.quantizations))


def face_crops(model, data=None, count: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """`count` face crops as the model reads them (around the face's landmark box, or the whole image for a
    whole-image model) and their targets in the model's markup: from a labelled set `data` (a path any reader
    takes, in the model's markup or one convertible to it), or, without one, crops of synthetic faces and no
    targets (crops need no labels, so this serves a model of any markup)."""
    from kerakp.data.formats import load_dataset
    from kerakp.data.geometry import whole_image_box
    from kerakp.data.sequence import KeypointSequence
    from kerakp.data.synthetic import write_synthetic_set

    with tempfile.TemporaryDirectory() as tmp:
        faces = load_dataset(data) if data is not None else load_dataset(
            write_synthetic_set(tmp, count, 4, 160, seed=seed, progress=False))
        if data is not None and faces.schema.name != model.info.markup:
            try:
                faces = faces.as_markup(model.info.schema)
            except KerakpError as err:
                raise KerakpError(f"{data}: markup {faces.schema.name}, but the model predicts {model.info.markup} "
                                  f"({err})") from None
        faces = faces.subset(np.random.default_rng(seed).permutation(len(faces))[:count])
        if model.info.crop.whole_image:
            faces = replace(faces, boxes=np.stack([whole_image_box(*faces.image(i).shape[:2], model.info.crop.scale)
                                                   for i in range(len(faces))]))
        crops, targets = KeypointSequence(faces, model.info.crop, batch_size=len(faces))[0]
        return crops, targets if data is not None else None


def crop_nme(outputs: np.ndarray, targets: np.ndarray, schema) -> float:
    """Mean NME in crop space of (N, 2K) outputs against (N, 2K) targets (NaN = missing, an image with no
    target left out; crop fractions, so a markup without a normalising pair divides by the crop side, 1)."""
    from kerakp.metrics import per_image_nme

    shape = (len(outputs), -1, 2)
    return float(np.nanmean(per_image_nme(outputs.reshape(shape), targets.reshape(shape), schema, scale=1.0)))


def point_shift(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance between the points of (N, 2K) outputs and a reference reading of the same crops, in crop
    sides: how far an export reads from the Keras model, for any markup and with no labels."""
    return float(np.mean(np.linalg.norm((outputs - reference).reshape(len(outputs), -1, 2), axis=-1)))


def export_model(model_path, fmt: str = "tflite", quantize: str = "none", out=None, calibration=None,
                 overwrite: bool = False) -> dict:
    """Export, check and place the file (default: beside the model, named after it and the quantization; an
    existing file only with `overwrite`); returns the report also written to `<out>.json`."""
    if fmt in FORMATS and FORMATS[fmt].export is not None:
        return FORMATS[fmt].export(model_path, quantize, out, calibration, overwrite)
    import keras

    from kerakp.runtime import load_keras_model, sidecar_of

    if fmt not in FORMATS:
        raise KerakpError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    if quantize not in FORMATS[fmt].quantizations:
        raise KerakpError(f"--quantize {quantize} is not for {fmt} (it takes: {', '.join(FORMATS[fmt].quantizations)})")
    if keras.backend.backend() != "tensorflow":
        raise KerakpError(f"export converts through TensorFlow; run `kerakp --backend tensorflow export ...` "
                          f"(Keras is on '{keras.backend.backend()}'; the .keras file loads on any backend)")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise KerakpError(f"{model_path}: model file not found")
    suffix = ("" if quantize == "none" else f"_{quantize}") + FORMATS[fmt].suffix
    out = (Path(out) if out else model_path.with_name(model_path.stem + suffix)).absolute()
    refuse_existing(out, overwrite)
    refuse_existing(sidecar_of(out), overwrite)
    model = load_keras_model(model_path)
    crops, targets = face_crops(model, calibration, count=200 if quantize.startswith("int8") else 64)
    reference = np.asarray(model.predict_on_batch(crops))  # also builds the graph the ONNX exporter traces
    writable_folder(out.parent)
    with tempfile.TemporaryDirectory(prefix=".kerakp-export-", dir=out.parent) as folder:
        staging = Path(folder)
        staged = staging / out.name
        try:
            FORMATS[fmt].write(model, staged, quantize, crops)
        except KerakpError as err:   # a model this quantization does not fit
            raise KerakpError(f"{model_path}: --quantize {quantize}: {err}; nothing written") from None
        try:
            exported = FORMATS[fmt].runtime(staged, config=model.get_config()).predict_on_batch(crops)
        except KerakpError as err:  # name the user's file, not the staging copy
            raise KerakpError(f"{out.name}: {str(err).split(': ', 1)[-1]}; nothing written") from None
        parity = {"crops": len(crops), "source": str(calibration) if calibration else "synthetic faces",
                  "labels": targets is not None,   # False: outputs compared only, no NME against labels
                  "max_abs_diff": float(np.abs(exported - reference).max()),
                  "shift_to_keras": point_shift(exported, reference)}
        if targets is not None:
            parity["nme_keras"] = crop_nme(reference, targets, model.schema)
            parity["nme_export"] = crop_nme(exported, targets, model.schema)
            parity["nme_change"] = parity["nme_export"] - parity["nme_keras"]
        report = {
            "format": fmt, "quantize": quantize, "file": out.name,
            "size_bytes": sum(f.stat().st_size for f in staged.rglob("*")) if staged.is_dir() else staged.stat().st_size,
            "parity": parity, "model": model.get_config(),
        }
        if quantize == "none" and parity["max_abs_diff"] > FLOAT_TOLERANCE:
            raise KerakpError(f"{out.name}: parity check failed: max |export - keras| = "
                              f"{parity['max_abs_diff']:.2e} > {FLOAT_TOLERANCE:g}; nothing written")
        ruined = (parity["nme_change"] > QUANTIZED_NME_TOLERANCE if parity["labels"]
                  else parity["shift_to_keras"] > QUANTIZED_SHIFT_TOLERANCE)
        if quantize != "none" and ruined:
            change = (f"crop NME {parity['nme_keras']:.4f} -> {parity['nme_export']:.4f} on {calibration}"
                      if parity["labels"] else
                      f"its points lie {parity['shift_to_keras']:.4f} crop sides from the Keras model's on synthetic faces")
            raise KerakpError(f"{out.name}: {quantize} quantization ruins this model ({change}); "
                              "try --quantize dynamic or float16; nothing written")
        write_json(staging / "report.json", report)
        refuse_if_interrupted()
        remove(out)
        staged.replace(out)
        (staging / "report.json").replace(sidecar_of(out))
    report["file"] = str(out)
    return report
