"""Face boxes, crop boxes and the affine maps between original pixels and model-input pixels.

Pixel coordinates follow OpenCV: the centre of pixel (col, row) is at (x, y) = (col, row). A crop is a
square `CropBox` in the original image; `crop_matrix` maps it onto an S x S model input, and every
augmentation is one more 3 x 3 matrix composed onto it, so the inverse map is one matrix inverse.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRONTAL_NORM = 0.45   # the outer eye corners' distance over the landmark box's side, 1st percentile on 300-W (median 0.59)


@dataclass(frozen=True)
class CropBox:
    """A square region of the original image: centre and side length in pixels."""

    cx: float
    cy: float
    side: float


def box_side(box: np.ndarray) -> float:
    """A box's longer side."""
    return float(max(box[2] - box[0], box[3] - box[1]))


def points_box(points: np.ndarray) -> np.ndarray | None:
    """Tight (x0, y0, x1, y1) box of the labelled points, or None when none is labelled."""
    valid = points[~np.isnan(points).any(axis=-1)]
    if len(valid) == 0:
        return None
    return np.array([*valid.min(axis=0), *valid.max(axis=0)], dtype=np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union) if union > 0 else 0.0


def whole_image_box(height: int, width: int, scale: float) -> np.ndarray:
    """The landmark box whose `scale` crop (`crop_from_box`) is the whole image, centred."""
    half = max(height, width) / scale / 2
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_from_box(box, scale: float) -> CropBox:
    """Square crop centred on a landmark box, `scale` times its longer side."""
    x0, y0, x1, y1 = box
    return CropBox((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) * scale)


def crop_matrix(crop: CropBox, size: int) -> np.ndarray:
    """3 x 3 matrix taking original pixels to the pixels of a `size` x `size` crop."""
    s = size / crop.side
    half = (size - 1) / 2
    return np.array([[s, 0, half - s * crop.cx], [0, s, half - s * crop.cy], [0, 0, 1]], dtype=np.float64)


def box_crop_matrix(box, scale: float, size: int, turn: float = 0.0) -> np.ndarray:
    """3 x 3 matrix taking original pixels to the `size` x `size` model-input crop around a landmark box
    (`crop_from_box`), turned by `turn` degrees about the crop's centre: the one crop rule of training and
    inference."""
    matrix = crop_matrix(crop_from_box(box, scale), size)
    return about_centre(rotation(turn), size) @ matrix if turn else matrix


def resize_matrix(size: int, to_size: int, zoom: float = 1.0) -> np.ndarray:
    """3 x 3 matrix from the pixels of a `size` crop to those of a `to_size` crop of the same region, zoomed in
    `zoom` times about the centre (a crop of another model's size and crop scale)."""
    k, a, b = to_size / size * zoom, (size - 1) / 2, (to_size - 1) / 2
    return np.array([[k, 0, b - k * a], [0, k, b - k * a], [0, 0, 1]], dtype=np.float64)


def about_centre(linear: np.ndarray, size: int) -> np.ndarray:
    """Embed a 2 x 2 linear map acting about the centre of a `size` x `size` crop as a 3 x 3 matrix."""
    half = (size - 1) / 2
    to_origin = np.array([[1, 0, -half], [0, 1, -half], [0, 0, 1]], dtype=np.float64)
    back = np.array([[1, 0, half], [0, 1, half], [0, 0, 1]], dtype=np.float64)
    m = np.eye(3)
    m[:2, :2] = linear
    return back @ m @ to_origin


def rotation(degrees: float) -> np.ndarray:
    """2 x 2 matrix turning image coordinates (y down) by `degrees`: clockwise on screen for positive angles."""
    angle = np.deg2rad(degrees)
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def level_turn(points: np.ndarray, pair) -> float:
    """Degrees (for `rotation`) that turn the line from `points[pair[0]]` to `points[pair[1]]` level (the outer
    eye corners, for a markup's normalising pair); 0 when either point is missing."""
    (x0, y0), (x1, y1) = points[pair[0]], points[pair[1]]
    angle = -np.degrees(np.arctan2(y1 - y0, x1 - x0))
    return 0.0 if np.isnan(angle) else float(angle)


def sureness(points: np.ndarray, pair) -> float:
    """How far a read's outer eye corners (`pair`) are apart, in `FRONTAL_NORM` box sides, at most 1: under 1 for a
    face turned towards profile, whose eye line a read gets less surely; NaN where either point is missing."""
    box = points_box(points)
    if box is None:
        return np.nan
    ratio = np.linalg.norm(points[pair[1]] - points[pair[0]]) / (FRONTAL_NORM * max(box_side(box), 1e-6))
    return float(np.minimum(ratio, 1.0))


def view_turn(points: np.ndarray, pair) -> float:
    """`level_turn` of read landmarks times their `sureness` squared: towards profile the outer eye corners close up
    and their line's angle, a point's error over a short distance, would turn the next crop by tens of degrees, and
    a read that sets its own next crop spirals away from the face (BENCHMARKS.md "Head poses")."""
    sure = sureness(points, pair)
    return level_turn(points, pair) * sure ** 2 if np.isfinite(sure) else 0.0


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 affine matrix to (..., 2) points; NaN points stay NaN."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample `image` through `matrix` into a `size` x `size` crop (black outside the image)."""
    scale = np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if scale < 0.5:
        # INTER_AREA only averages for pure resizes: shrink the part of the image the crop shows (with a margin
        # of two shrunk pixels) to 1.5 times the crop's scale first, then warp the rest at about 1:1
        factor, height, width = scale * 1.5, *image.shape[:2]
        corners = transform_points(np.linalg.inv(matrix), np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], float))
        margin = int(np.ceil(2 / factor))
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - margin, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + margin + 1, [width, height])
        if min(x1 - x0, y1 - y0) * factor <= 0.5:   # (almost) nothing of the image in the crop
            return np.zeros((size, size, *image.shape[2:]), image.dtype)
        small = cv2.resize(image[y0:y1, x0:x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        # pixel centres: x_small = factor * (x - x0 + 0.5) - 0.5
        pre = np.array([[factor, 0, factor * (0.5 - x0) - 0.5], [0, factor, factor * (0.5 - y0) - 0.5], [0, 0, 1]])
        return warp(small, matrix @ np.linalg.inv(pre), size)
    return cv2.warpAffine(image, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
