"""Drawing results onto images: a face's points and box (`Face.draw`), the head's axes, and the live window's
labels (colours as BGR tuples for OpenCV images). Truth and prediction are blue and orange, which colour-blind
readers tell apart."""
from __future__ import annotations

import cv2
import numpy as np

from kerakp.analysis import head_pose, rotation_from
from kerakp.data.geometry import points_box
from kerakp.errors import KerakpError

TRUTH_BGR, PREDICTION_BGR = (178, 114, 0), (0, 159, 230)   # #0072B2 and #E69F00 (Okabe-Ito)


def draw_pose(frame_bgr: np.ndarray, points: np.ndarray, schema) -> None:
    """The head's axes (x red, y green, z blue, towards the camera) from its nose tip, as `head_pose` sees them."""
    try:
        yaw, pitch, roll = head_pose(points, frame_bgr.shape, schema)
    except KerakpError:   # a markup with too few points for a pose
        return
    if not np.isfinite(yaw):
        return
    box = points_box(points)
    length = 0.5 * max(box[2] - box[0], box[3] - box[1])
    origin = points[schema.parts["nose_tip"][0]] if "nose_tip" in schema.parts else (box[:2] + box[2:]) / 2
    axes = rotation_from(yaw, pitch, roll) @ np.diag([1.0, 1.0, -1.0])   # z drawn towards the camera
    for k, colour in enumerate(((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        end = origin + length * axes[:2, k]
        cv2.line(frame_bgr, tuple(np.round(origin).astype(int)), tuple(np.round(end).astype(int)), colour, 2, cv2.LINE_AA)


def draw_face(image: np.ndarray, points: np.ndarray, box=None, color=(0, 255, 0), radius: int = 2, seen=None) -> np.ndarray:
    """A face's points (filled circles; hollow where `seen` is False: hidden behind the head) and, when given, its
    box, drawn onto `image` in place."""
    for k, (x, y) in enumerate(points):
        if np.isfinite(x) and np.isfinite(y):
            hollow = seen is not None and not seen[k]
            cv2.circle(image, (int(round(x)), int(round(y))), radius + hollow, color, 1 if hollow else -1, cv2.LINE_AA)
    if box is not None:
        x0, y0, x1, y1 = np.round(box).astype(int)
        cv2.rectangle(image, (x0, y0), (x1, y1), color, 1, cv2.LINE_AA)
    return image


def draw(frame_bgr: np.ndarray, faces, fps: float, schema=None) -> None:
    """Each tracked `Face`'s landmarks, box, id, tag, blink and head-pose axes, and the FPS, drawn in place."""
    for face in faces:
        draw_face(frame_bgr, face.points, color=(0, 255, 0), seen=face.seen)
        x0, y0, x1, y1 = points_box(face.points).astype(int)
        cv2.rectangle(frame_bgr, (x0, y0), (x1, y1), (255, 200, 0), 1)
        if schema is not None:
            draw_pose(frame_bgr, face.points, schema)
        label = f"#{face.id} {face.tag}{' blink' if face.eyes_closed else ''}".strip()
        cv2.putText(frame_bgr, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 0, 255), 1, cv2.LINE_AA)
    cv2.putText(frame_bgr, f"{fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2, cv2.LINE_AA)
