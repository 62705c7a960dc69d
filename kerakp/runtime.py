"""One model interface for every file format: `.keras` (Keras, any backend), `.tflite` (LiteRT), `.onnx` (ONNX
Runtime) and a SavedModel folder (TensorFlow). Each gives what the `Predictor` needs: `predict_on_batch(crops)`
and `info` (`kerakp.model_info.ModelInfo`); an exported model keeps its info in the `<file>.json` sidecar
written by `kerakp export`. `RUNTIMES` is the table of which runtime opens which suffix. This is the bottom of the
model code: training, export and inference load and save models here, and it imports none of them.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from kerakp.errors import KerakpError
from kerakp.io import replacing, write_json
from kerakp.model_info import ModelInfo
from kerakp.quiet import native_stderr_silenced


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class ExportedModel:
    """An exported model's info: given as a `LandmarkModel` config, or read from its sidecar."""

    def __init__(self, path: Path, config: dict | None = None):
        self.path = path
        if config is not None:
            self.info = ModelInfo.from_config(config)
            return
        sidecar = sidecar_of(path)
        if not sidecar.is_file():
            raise KerakpError(f"{path}: no {sidecar.name} beside it (written by kerakp export; it holds the markup and crop rule)")
        try:
            self.info = ModelInfo.from_config(json.loads(sidecar.read_text())["model"])
        except (ValueError, KeyError, TypeError) as err:
            raise KerakpError(f"{sidecar}: not a kerakp export report ({type(err).__name__}: {err})") from None


def litert_interpreter(path, threads: int | None = None):
    """A LiteRT interpreter for a `.tflite` file, with one clear error for a file that is not one."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate on stderr
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise KerakpError(f"{path}: not a loadable TFLite model ({str(err).splitlines()[0][:160]})") from None
    return interpreter


class LiteRTModel(ExportedModel):
    """A `.tflite` model run by the LiteRT interpreter (resized to each batch size it is given)."""

    def __init__(self, path: Path, threads: int | None = None, config: dict | None = None):
        super().__init__(path, config)
        self.interpreter = litert_interpreter(path, threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def predict_on_batch(self, crops: np.ndarray) -> np.ndarray:
        if self.batch != len(crops):
            size = self.info.crop.size
            self.interpreter.resize_tensor_input(self.input, [len(crops), size, size, 3])
            with native_stderr_silenced():
                self.interpreter.allocate_tensors()
            self.batch = len(crops)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(crops, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class OnnxModel(ExportedModel):
    """An `.onnx` model run by ONNX Runtime on the CPU."""

    def __init__(self, path: Path, threads: int | None = None, config: dict | None = None):
        super().__init__(path, config)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise KerakpError(f"{path}: not a loadable ONNX model ({str(err).splitlines()[0][:160]})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        if len(inputs) != 1:  # tf2onnx turns some constants (EfficientNetV2's normalisation) into inputs
            raise KerakpError(f"{path}: the ONNX graph asks for {len(inputs)} inputs ({', '.join(inputs[:3])}...), not one image; "
                              "this backbone does not convert to ONNX with tf2onnx, use TFLite")
        self.input = inputs[0]

    def predict_on_batch(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(crops, dtype=np.float32)})[0]


class SavedModel(ExportedModel):
    """A TensorFlow SavedModel folder, run through its `serve` signature (needs TensorFlow)."""

    def __init__(self, path: Path, threads: int | None = None, config: dict | None = None):
        super().__init__(path, config)
        try:
            import tensorflow as tf
        except ImportError:
            raise KerakpError(f"{path}: a SavedModel needs TensorFlow (pip install tensorflow)") from None
        try:
            self.serve = tf.saved_model.load(str(path)).signatures["serve"]
        except (OSError, KeyError, ValueError) as err:
            raise KerakpError(f"{path}: not a loadable SavedModel ({str(err).splitlines()[0][:160]})") from None
        self.tf = tf

    def predict_on_batch(self, crops: np.ndarray) -> np.ndarray:
        return next(iter(self.serve(self.tf.constant(crops, self.tf.float32)).values())).numpy()


def load_keras_model(path: Path):
    """A kerakp `.keras` model, with a clear error for a foreign or broken file."""
    import keras

    from kerakp.models import landmark_model

    if Path(path).is_file() and not zipfile.is_zipfile(path):   # Keras would call it "File not found"
        raise KerakpError(f"{path}: not a loadable Keras model (a .keras file is a zip archive; this one is not)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:
        raise KerakpError(f"{path}: not a loadable Keras model ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(model, landmark_model.LandmarkModel):
        raise KerakpError(f"{path}: not a kerakp landmark model")
    return model


RUNTIMES = {".tflite": LiteRTModel, ".onnx": OnnxModel, "": SavedModel}   # file suffix ("" a folder) -> runtime


def save_for_inference(model, path, info: ModelInfo | None = None) -> None:
    """Save a `LandmarkModel`'s weights and metadata (`info`, default the model's own) without the optimizer state
    (which would triple the file)."""
    from kerakp.models.landmark_model import LandmarkModel

    clean = LandmarkModel.from_config({**model.get_config(), **(info.to_config() if info else {})})
    clean.set_weights(model.get_weights())
    clean.save(path)


def save_metadata(path, info: ModelInfo, out=None) -> Path:
    """The model at `path` with new `info` (refitted calibrations and offsets), written to `out` (default: in
    place): a `.keras` model whole, without optimizer state; an exported model as a copy of its file with the
    info in its sidecar. Nothing changes until everything is written."""
    path, target = Path(path), Path(out or path)
    if path.suffix.lower() == ".keras":
        with replacing(target) as tmp:
            save_for_inference(load_keras_model(path), tmp, info)
        return target
    report = json.loads(sidecar_of(path).read_text())
    report["model"].update(info.to_config())
    if target != path:
        with replacing(target, folder=path.is_dir()) as tmp:
            (shutil.copytree if path.is_dir() else shutil.copyfile)(path, tmp, **({"dirs_exist_ok": True} if path.is_dir() else {}))
    write_json(sidecar_of(target), report)
    return target


def open_model(path, threads: int | None = None):
    """Open a model of any supported format: `.keras`, or an export format by its suffix (a folder: SavedModel),
    or a packaged preset by its name."""
    from kerakp.zoo import model_path

    path = model_path(path)
    if not path.exists():
        raise KerakpError(f"{path}: model file not found")
    suffix = "" if path.is_dir() else path.suffix.lower()
    if suffix == ".keras":
        return load_keras_model(path)
    if suffix in RUNTIMES:
        return RUNTIMES[suffix](path, threads)
    known = ", ".join([".keras"] + [suffix or "a SavedModel folder" for suffix in RUNTIMES])
    raise KerakpError(f"{path}: unknown model format (expected {known})")
