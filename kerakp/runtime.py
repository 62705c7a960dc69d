"""One model interface for every file format: `.keras` (Keras, any backend), `.tflite` (LiteRT) and `.onnx`
(ONNX Runtime). Each exposes what the `Predictor` needs: `predict_on_batch(crops)` and the model's kerakp
metadata (`schema_name`, `input_size`, `crop_scale`, `box_calibration`, `split`, `face_box`, `point_offsets`,
`upright`).
Exported files keep that metadata in the `<file>.json` written beside them by `kerakp export`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kerakp.errors import KerakpError
from kerakp.quiet import native_stderr_silenced

SUFFIXES = (".keras", ".tflite", ".onnx")


class ExportedModel:
    """Metadata of an exported model: given, or read from its `<file>.json` sidecar."""

    def __init__(self, path: Path, config: dict | None = None):
        if config is None:
            sidecar = path.with_name(path.name + ".json")
            if not sidecar.is_file():
                raise KerakpError(f"{path}: no {sidecar.name} beside it (written by kerakp export; it holds the markup and crop rule)")
            config = json.loads(sidecar.read_text())["model"]
        self.path = path
        self.backbone_name, self.schema_name = config["backbone"], config["schema"]
        self.input_size, self.crop_scale = int(config["input_size"]), float(config["crop_scale"])
        self.box_calibration, self.split = config.get("box_calibration", {}), config.get("split", {})
        self.face_box = config.get("face_box", "landmarks")
        self.point_offsets = config.get("point_offsets", [])
        self.upright = config.get("upright", False)


class LiteRTModel(ExportedModel):
    """A `.tflite` model run by the LiteRT interpreter (resized to each batch size it is given)."""

    def __init__(self, path: Path, threads: int | None = None, config: dict | None = None):
        super().__init__(path, config)
        from ai_edge_litert.interpreter import Interpreter

        try:
            with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as err:
            raise KerakpError(f"{path}: not a loadable TFLite model ({str(err).splitlines()[0][:160]})") from None
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def predict_on_batch(self, crops: np.ndarray) -> np.ndarray:
        if self.batch != len(crops):
            self.interpreter.resize_tensor_input(self.input, [len(crops), self.input_size, self.input_size, 3])
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


def load_keras_model(path: Path):
    """A kerakp `.keras` model, with a clear error for a foreign or broken file."""
    import keras

    from kerakp.models import landmark_model

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:
        raise KerakpError(f"{path}: not a loadable Keras model ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(model, landmark_model.LandmarkModel):
        raise KerakpError(f"{path}: not a kerakp landmark model")
    return model


def open_model(path, threads: int | None = None):
    """Open a model file of any supported format, chosen by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise KerakpError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return load_keras_model(path)
    if suffix == ".tflite":
        return LiteRTModel(path, threads)
    if suffix == ".onnx":
        return OnnxModel(path, threads)
    raise KerakpError(f"{path}: unknown model format (expected {', '.join(SUFFIXES)})")
