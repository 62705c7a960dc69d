"""Face detection and the mapping from a detector's box to the landmark box the model was trained on.

Detectors return (x0, y0, x1, y1) boxes in image pixels. A detector box is not a landmark box (the Haar
cascade's box starts at the brows and is wider than the jaw): `BoxCalibration` holds the fitted offset
and scale between the two, and `fit_box_calibration` measures them on labelled training images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from kerakp.data.geometry import points_box
from kerakp.errors import KerakpError


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: `faces` lists every face found, calling it returns the largest."""

    name = "haar"

    def __init__(self, max_side: int = 640, min_face_fraction: float = 0.12):
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise KerakpError(f"OpenCV {cv2.__version__} has no Haar cascades (5.0 dropped them); "
                              "install opencv-python-headless<5, or train with --set calibration_images=0")
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise KerakpError(f"cannot load the Haar cascade {path} (opencv-python >= 5 ships none; install opencv<5)")
        self.max_side, self.min_face_fraction = max_side, min_face_fraction

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """The largest face, or None."""
        faces = self.faces(image)
        return faces[0] if faces else None

    def faces(self, image: np.ndarray) -> list[np.ndarray]:
        """Every face box found, largest first. An image at most half of `max_side` where none is found gets
        a second look at twice its size (the cascade misses many faces of 30-40 px in small video frames)."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        factors = [min(1.0, self.max_side / max(gray.shape))]
        if 2 * max(gray.shape) <= self.max_side:
            factors.append(2.0)
        for factor in factors:
            scaled = gray if factor == 1.0 else cv2.resize(
                gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
            min_side = max(20, int(self.min_face_fraction * min(scaled.shape)))
            faces = self.cascade.detectMultiScale(cv2.equalizeHist(scaled), 1.1, 4, minSize=(min_side, min_side))
            if len(faces):
                break
        return [np.array([x, y, x + w, y + h], dtype=np.float64) / factor
                for x, y, w, h in sorted(faces, key=lambda f: -f[2] * f[3])]


@dataclass
class BoxCalibration:
    """Landmark box from a detector box of width w: centre + (dx, dy) * w, side = scale * w."""

    dx: float = 0.0
    dy: float = 0.12
    scale: float = 0.85
    samples: int = 0

    def apply(self, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box
        width = x1 - x0
        cx, cy = (x0 + x1) / 2 + self.dx * width, (y0 + y1) / 2 + self.dy * width
        half = self.scale * width / 2
        return np.array([cx - half, cy - half, cx + half, cy + half])

    def to_dict(self) -> dict:
        return asdict(self)


def fit_box_calibration(detector, images, keypoints, min_overlap: float = 0.4) -> BoxCalibration:
    """Median offset and scale between detector boxes and landmark boxes on labelled images."""
    rows = []
    for image, points in zip(images, keypoints):
        box, target = detector(image), points_box(points)
        if box is None or target is None:
            continue
        width = box[2] - box[0]
        side = max(target[2] - target[0], target[3] - target[1])
        centre = (target[:2] + target[2:]) / 2 - (box[:2] + box[2:]) / 2
        if abs(centre[0]) < min_overlap * width and abs(centre[1]) < min_overlap * width:  # the labelled face
            rows.append((centre[0] / width, centre[1] / width, side / width))
    if not rows:
        return BoxCalibration()
    dx, dy, scale = np.median(np.array(rows), axis=0)
    return BoxCalibration(float(dx), float(dy), float(scale), len(rows))
