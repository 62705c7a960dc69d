"""What landmarks tell beyond their positions: head pose, per-point confidence, eye and mouth openness,
blinks in a video, and aligned face crops.

Conventions (degrees): **yaw** is positive when the face turns to its own left (its nose moves towards the
image's right), **pitch** positive when it looks up, **roll** positive when the line from the image-left eye
to the image-right eye turns clockwise on screen. The pose is a perspective-n-point fit (OpenCV's solvePnP,
a camera whose focal length is the image's longer side, centred) of kerakp's 3-D mean face
(`kerakp/assets/face3d_ibug68.csv`, fitted from 300-W's 2-D labels by scripts/fit_face3d.py) to the points
that stay put on the head (iBUG 68: brows, nose, eyes); a markup's named points (eye corners, nose tip, mouth
corners, ...) take their 3-D position from it, so a markup needs at least five of them.
"""
from __future__ import annotations

import math
from collections import deque
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from kerakp.errors import KerakpError
from kerakp.schemas import Schema

# brows, nose and eyes: not the mouth (it moves with expressions) nor the jaw (iBUG's jaw points follow the
# face's visible outline, which slides over the head as it turns, so they are no fixed 3-D points)
IBUG_RIGID = list(range(17, 48))
# the 3-D point of a named part, as iBUG-68 indices (a part with several points: their mean)
PART_POINTS = {"left_eye_outer": [36], "right_eye_outer": [45], "left_eye_inner": [39], "right_eye_inner": [42],
               "left_eye": list(range(36, 42)), "right_eye": list(range(42, 48)), "nose_tip": [30],
               "mouth_left": [48], "mouth_right": [54], "upper_lip_top": [51], "lower_lip_bottom": [57],
               "left_brow_outer": [17], "left_brow_inner": [21], "right_brow_inner": [22], "right_brow_outer": [26]}
# the similarity-alignment template of ArcFace-style recognisers, for a 112 x 112 crop: eye centres (image
# left, right), nose tip, mouth corners (image left, right)
ALIGN_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])
ALIGN_PARTS = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")


@lru_cache(maxsize=1)
def face3d() -> np.ndarray:
    """(68, 3) kerakp's mean iBUG-68 face: x right, y down, z away from the camera, eye distance 1."""
    return np.loadtxt(str(resources.files("kerakp") / "assets" / "face3d_ibug68.csv"), delimiter=",")


def pose_points(schema: Schema) -> tuple[list[int], np.ndarray]:
    """The markup's point indices used for head pose and their 3-D positions on the mean face."""
    if schema.name == "ibug68":
        return IBUG_RIGID, face3d()[IBUG_RIGID]
    named = [(schema.parts[name][0], face3d()[PART_POINTS[name]].mean(axis=0)) for name in PART_POINTS
             if name in schema.parts and len(schema.parts[name]) == 1]
    if len(named) < 5:
        raise KerakpError(f"markup '{schema.name}' has {len(named)} of the named points head pose needs (at least 5: "
                          "eye corners, nose tip, mouth corners, ...)")
    return [i for i, _ in named], np.array([p for _, p in named])


def head_pose(points: np.ndarray, image_shape, schema: Schema) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face's (K, 2) points in an image of `image_shape` (conventions: the
    module docstring)."""
    index, model = pose_points(schema)
    image_points = np.asarray(points, np.float64)[index]
    keep = ~np.isnan(image_points).any(axis=1)
    if keep.sum() < 5:
        return (math.nan,) * 3
    height, width = image_shape[:2]
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    ok, rvec, tvec = cv2.solvePnP(model[keep], image_points[keep], camera, None, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(model[keep], image_points[keep], camera, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return (math.nan,) * 3
    return euler(cv2.Rodrigues(rvec)[0])


@lru_cache(maxsize=1)
def visibility_table() -> np.ndarray:
    """(68, 5) per iBUG-68 point of the mean face: its unit surface normal (x, y, z), and the slope and bias of the
    logistic `visibility` reads it with (kerakp/assets/visibility_ibug68.csv, scripts/fit_visibility.py)."""
    return np.loadtxt(str(resources.files("kerakp") / "assets" / "visibility_ibug68.csv"), delimiter=",")


def visibility(pose: tuple[float, float, float], schema: Schema) -> np.ndarray:
    """(K,) probability that each point is seen (not hidden behind the head) at a head pose (yaw, pitch, roll):
    a logistic of how far the point's surface normal on the mean face turns towards the camera, fitted on AFLW's
    visible points (kerakp/assets/visibility_ibug68.csv, scripts/fit_visibility.py). iBUG 68 only; NaN for an
    unknown pose."""
    if schema.name != "ibug68":
        raise KerakpError(f"markup '{schema.name}' has no visibility model (needs ibug68)")
    if not np.all(np.isfinite(pose)):
        return np.full(schema.num_points, np.nan)
    table = visibility_table()
    facing = -(table[:, :3] @ rotation_from(*pose).T)[:, 2]
    return 1.0 / (1.0 + np.exp(-(table[:, 3] * facing + table[:, 4])))


def euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of R = Rz(roll) Rx(pitch) Ry(yaw) in the camera frame, signed as the module states."""
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, rotation[2, 1]))))
    yaw = math.degrees(math.atan2(-rotation[2, 0], rotation[2, 2]))
    roll = math.degrees(math.atan2(-rotation[0, 1], rotation[1, 1]))
    return -yaw, -pitch, roll


def rotation_from(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The camera-frame rotation of a head posed (yaw, pitch, roll) degrees (the inverse of `euler`)."""
    a, b, g = (math.radians(v) for v in (-yaw, -pitch, roll))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    return rz @ rx @ ry


def confidence(spread: np.ndarray, scale) -> np.ndarray:
    """Per-point confidence in 0..1 from the reads' per-point disagreement (`Prediction.spread`):
    2 ** (-spread / scale), so a point whose mirrored reads disagree as much as the median of its training
    images scores 0.5 (`scale`: ModelInfo.point_spread; without it, 0.02 eye distances); the turned reads add
    their own disagreement, so with them the same point scores less."""
    scale = np.asarray(scale, np.float64) if len(scale) else np.full(len(spread), 0.02)
    return np.exp2(-np.asarray(spread, np.float64) / np.maximum(scale, 1e-6))


def openness(points: np.ndarray, schema: Schema) -> dict[str, float]:
    """Eye aspect ratio per eye (Soukupova and Cech, 2016: the two lid distances over twice the eye's width;
    about 0.3 open, under 0.2 closed) and mouth openness (the inner lips' distance over the mouth's inner
    width), from iBUG-68 points."""
    if schema.name != "ibug68":
        raise KerakpError(f"markup '{schema.name}' has no eye and lip contours for openness (needs ibug68)")
    p = np.asarray(points, np.float64)

    def ear(eye):
        a, b, c, d, e, f = p[eye]
        return float((np.linalg.norm(b - f) + np.linalg.norm(c - e)) / (2 * np.linalg.norm(a - d)))

    mouth = float((np.linalg.norm(p[61] - p[67]) + np.linalg.norm(p[62] - p[66]) + np.linalg.norm(p[63] - p[65]))
                  / (3 * np.linalg.norm(p[60] - p[64])))
    return {"left_eye": ear(list(range(36, 42))), "right_eye": ear(list(range(42, 48))), "mouth": mouth}


class BlinkDetector:
    """Blinks in a stream of eye aspect ratios, with hysteresis: the eyes count as closed when the mean ratio
    falls under `close` times the open level (the running 80th percentile of the last `window` open frames),
    and as open again only above `reopen` times it; each closing is one blink. The thresholds are mild
    because the packaged models, trained on few closed eyes, read a closed eye only some 15 % flatter than an
    open one (BENCHMARKS.md, "Face analysis")."""

    def __init__(self, close: float = 0.9, reopen: float = 0.95, window: int = 90):
        self.close, self.reopen = close, reopen
        self.recent: deque[float] = deque(maxlen=window)
        self.closed, self.blinks = False, 0

    def update(self, ratio: float) -> bool:
        """Whether the eyes are closed in this frame (a NaN ratio keeps the last state)."""
        if not np.isfinite(ratio):
            return self.closed
        level = float(np.percentile(self.recent, 80)) if self.recent else ratio
        if not self.closed and ratio < self.close * level:
            self.closed, self.blinks = True, self.blinks + 1
        elif self.closed and ratio > self.reopen * level:
            self.closed = False
        if not self.closed:
            self.recent.append(ratio)
        return self.closed


def align_points(points: np.ndarray, schema: Schema) -> np.ndarray:
    """The five alignment points (eye centres, nose tip, mouth corners) of a face's (K, 2) points."""
    missing = [name for name in ALIGN_PARTS if name not in schema.parts]
    if missing:
        raise KerakpError(f"markup '{schema.name}' has no {', '.join(missing)} points to align by")
    return np.stack([np.asarray(points, np.float64)[list(schema.parts[name])].mean(axis=0) for name in ALIGN_PARTS])


def aligned(image: np.ndarray, points: np.ndarray, schema: Schema, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """A `size` x `size` crop of the face turned, scaled and moved (a similarity) so its eye centres, nose tip
    and mouth corners lie nearest `ALIGN_TEMPLATE` (scaled to `size`), and the 2 x 3 matrix that made it."""
    source = align_points(points, schema)
    matrix, _ = cv2.estimateAffinePartial2D(source, ALIGN_TEMPLATE * size / 112.0, method=cv2.LMEDS)
    if matrix is None:
        raise KerakpError("cannot align this face (its points are degenerate)")
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), matrix
