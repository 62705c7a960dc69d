"""The one inference path: face box -> crop -> model -> decode -> back to original pixels.

`Predictor` is used by `evaluate`, `predict` and every later consumer. Box sources:
- `detector`: the Haar cascade's largest face, mapped to a landmark box by the model's fitted calibration;
- `oracle`: the tight box of the ground-truth landmarks (for diagnosis; reports label it);
- `full`: the whole image (always, for models trained with `face_box: image`, which take one pass).
After the first pass, each further pass re-crops around the previous prediction's landmark box, which is
exactly how training crops are made.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerakp.codecs import decode_regression
from kerakp.data.geometry import crop_from_box, crop_matrix, points_box, transform_points, warp, whole_image_box
from kerakp.detect import BoxCalibration, HaarDetector
from kerakp.errors import KerakpError
from kerakp.runtime import open_model
from kerakp.schemas import Schema, get_schema

BOX_SOURCES = ("detector", "oracle", "full")


@dataclass
class Prediction:
    """Keypoints (K, 2) in original pixels (None when no face was found) and the box they came from."""

    points: np.ndarray | None
    box: np.ndarray | None
    detected: bool


class Predictor:
    """Runs a landmark model (`.keras`, `.tflite` or `.onnx`, see `kerakp.runtime`) on whole images."""

    def __init__(self, model, box: str = "detector", passes: int = 2, fallback: str | None = None,
                 detector=None, batch_size: int = 32):
        if box not in BOX_SOURCES:
            raise KerakpError(f"unknown box source '{box}' (known: {', '.join(BOX_SOURCES)})")
        if isinstance(model, (str, Path)):
            model = open_model(model)
        self.model = model
        self.schema: Schema = get_schema(model.schema_name)
        self.input_size: int = model.input_size
        self.crop_scale: float = model.crop_scale
        if model.face_box == "image":  # trained on whole images: crop the whole image, once
            box, passes = "full", 1
        self.box, self.passes, self.fallback, self.batch_size = box, max(1, passes), fallback, batch_size
        self.detector = detector or (HaarDetector() if box == "detector" else None)
        calibration = model.box_calibration.get(getattr(self.detector, "name", ""), {})
        self.calibration = BoxCalibration(**calibration)

    def run_model(self, crops: np.ndarray) -> np.ndarray:
        """Model outputs for a batch of crops (inference mode, whatever the model's file format)."""
        return np.asarray(self.model.predict_on_batch(crops.astype(np.float32)))

    def face_box(self, image: np.ndarray, truth: np.ndarray | None = None) -> tuple[np.ndarray | None, bool]:
        """The first-pass landmark box for an image, and whether the detector found a face."""
        full = whole_image_box(*image.shape[:2], self.crop_scale)
        if self.box == "oracle":
            if truth is None:
                raise KerakpError("--box oracle needs ground-truth landmarks")
            return points_box(truth), True
        if self.box == "full":
            return full, True
        found = self.detector(image)
        if found is not None:
            return self.calibration.apply(found), True
        return (full if self.fallback == "full" else None), False

    def crop(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-input crop around a landmark box and the matrix that made it."""
        matrix = crop_matrix(crop_from_box(box, self.crop_scale), self.input_size)
        return warp(image, matrix, self.input_size), matrix

    def refine(self, images: list[np.ndarray], boxes: list, passes: int | None = None) -> list[np.ndarray | None]:
        """Landmarks from first-pass landmark boxes (None = no face): each pass crops around the last box,
        runs the model, decodes and maps back to original pixels."""
        boxes, points = list(boxes), [None] * len(images)
        live = [i for i, b in enumerate(boxes) if b is not None]
        for _ in range(passes or self.passes):
            if not live:
                break
            crops, matrices = zip(*(self.crop(images[i], boxes[i]) for i in live))
            outputs = np.concatenate([self.run_model(np.stack(crops[j:j + self.batch_size]))
                                      for j in range(0, len(crops), self.batch_size)])
            for i, matrix, out in zip(live, matrices, decode_regression(outputs, self.input_size)):
                points[i] = transform_points(np.linalg.inv(matrix), out)
                boxes[i] = points_box(points[i])
        return points

    def predict_batch(self, images: list[np.ndarray], truths: list | None = None) -> list[Prediction]:
        """Predict every image of a list (one face each)."""
        boxes, detected = zip(*(self.face_box(img, None if truths is None else truths[i]) for i, img in enumerate(images)))
        points = self.refine(images, boxes)
        return [Prediction(p, None if p is None else points_box(p), d) for p, d in zip(points, detected)]

    def predict(self, image: np.ndarray, truth: np.ndarray | None = None) -> Prediction:
        return self.predict_batch([image], None if truth is None else [truth])[0]
