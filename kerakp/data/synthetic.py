"""Synthetic faces drawn with OpenCV, with exact iBUG-68 ground truth and an expression label.

Each person has a face shape (proportions, skin tone, hair); each image draws that person with a random
roll, scale, shift, lighting and one of three expressions that change the mouth: `smile` widens the mouth
and lifts its corners, `frown` drops them, `neutral` does neither. `write_synthetic_set` saves a set in
the YTF-68 layout (`landmarks.csv` + `images/`) plus `attributes.csv` (person, expression, roll).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kerakp.errors import KerakpError

EXPRESSIONS = ("neutral", "smile", "frown")
SKIN_TONES = np.array([[255, 224, 196], [241, 194, 155], [224, 172, 130], [198, 134, 96], [141, 85, 56], [94, 60, 40]])


@dataclass
class Person:
    """The fixed shape and colours of one synthetic identity."""

    face_width: float
    jaw_height: float
    eye_spread: float
    eye_height: float
    nose_length: float
    mouth_y: float
    mouth_half_width: float
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray


def random_person(rng: np.random.Generator) -> Person:
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 8, 3)
    return Person(
        face_width=rng.uniform(0.92, 1.1), jaw_height=rng.uniform(1.15, 1.35), eye_spread=rng.uniform(0.46, 0.55),
        eye_height=rng.uniform(0.055, 0.08), nose_length=rng.uniform(0.9, 1.1), mouth_y=rng.uniform(0.58, 0.68),
        mouth_half_width=rng.uniform(0.34, 0.4), skin=np.clip(tone, 0, 255),
        hair=rng.uniform(10, 120, 3), iris=rng.uniform(30, 140, 3),
    )


def face_points(person: Person, expression: str, rng: np.random.Generator) -> np.ndarray:
    """68 points of a frontal face in a unit frame: eye centres near (+-0.5, -0.3), chin near y = 1.1."""
    p = np.zeros((68, 2))
    theta = np.linspace(np.pi, 0, 17)
    p[0:17] = np.c_[person.face_width * np.cos(theta), -0.2 + person.jaw_height * np.sin(theta) ** 1.15]
    for side, start in ((-1, 17), (1, 22)):
        xs = np.linspace(0.88, 0.15, 5) if side < 0 else np.linspace(0.15, 0.88, 5)
        p[start:start + 5] = np.c_[side * xs, -0.55 - 0.09 * np.sin(np.linspace(0.2, np.pi - 0.2, 5))]
    p[27:31] = np.c_[np.zeros(4), np.linspace(-0.38, 0.15 * person.nose_length, 4)]
    nose_y = 0.27 * person.nose_length
    p[31:36] = np.c_[np.linspace(-0.2, 0.2, 5), nose_y + np.array([-0.03, 0.0, 0.02, 0.0, -0.03])]
    e, h = person.eye_spread, person.eye_height
    for side, start in ((-1, 36), (1, 42)):
        outer, inner = side * (e + 0.22), side * (e - 0.22)
        ring = [outer, outer * 0.64 + inner * 0.36, outer * 0.36 + inner * 0.64, inner]
        eye = [(ring[0], -0.3), (ring[1], -0.3 - h), (ring[2], -0.3 - h), (ring[3], -0.3), (ring[2], -0.3 + h), (ring[1], -0.3 + h)]
        if side > 0:  # right eye starts at its inner corner: 42 inner, 43-44 top, 45 outer, 46-47 bottom
            eye = [eye[3], eye[2], eye[1], eye[0], eye[5], eye[4]]
        p[start:start + 6] = eye
    half = person.mouth_half_width
    lift, opening = 0.0, rng.uniform(0.0, 0.02)
    if expression == "smile":
        half *= rng.uniform(1.3, 1.45)
        lift = rng.uniform(0.07, 0.12)
        opening = rng.uniform(0.0, 0.08)
    elif expression == "frown":
        lift = -rng.uniform(0.06, 0.1)
    my = person.mouth_y
    xs = half * np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1])
    corner_y = my - lift
    bend = lambda x: corner_y + (my - corner_y) * (1 - (x / half) ** 2)  # noqa: E731 - the lip line
    upper = bend(xs) - np.array([0, 0.05, 0.07, 0.055, 0.07, 0.05, 0]) - opening / 2
    lower_x = xs[[5, 4, 3, 2, 1]]
    lower = bend(lower_x) + 0.09 + opening / 2 - 0.03 * (np.abs(lower_x) / half)
    p[48:55] = np.c_[xs, upper]
    p[55:60] = np.c_[lower_x, lower]
    inner_x = half * np.array([-0.85, -0.35, 0, 0.35, 0.85])
    inner_upper = bend(inner_x) - opening / 2
    inner_lower_x = inner_x[[3, 2, 1]]
    p[60:65] = np.c_[inner_x, inner_upper]
    p[65:68] = np.c_[inner_lower_x, bend(inner_lower_x) + opening / 2]
    return p


def _pose_matrix(rng: np.random.Generator, size: int, roll_range: float) -> tuple[np.ndarray, float]:
    roll = rng.uniform(-roll_range, roll_range)
    scale = size * rng.uniform(0.17, 0.24)
    angle = np.deg2rad(roll)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    rot[:, 0] *= rng.uniform(0.9, 1.0)  # a hint of yaw: the face narrows
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size + np.array([0, -0.05 * size])
    return np.c_[rot, centre], roll


def draw_face(person: Person, points_unit: np.ndarray, matrix: np.ndarray, size: int, rng: np.random.Generator,
              rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render one face; returns the RGB image and its 68 points in pixels. Without `rotation` the unit frame
    maps to pixels by the 2 x 3 `matrix`; with it the whole head (landmarks, skin, hair, ears) is first given
    its depth (`face_depth`, `head_depth`), turned by the 3 x 3 `rotation` and seen through a pinhole camera
    whose focal length is the image side (the camera `head_pose` assumes)."""
    scale = np.linalg.norm(matrix[:, 0])

    def to_px(q, depth):
        if rotation is not None:
            turned = np.c_[q, depth] @ rotation.T * scale
            q = turned[:, :2] * size / (size + turned[:, 2:]) / scale
        return q @ matrix[:, :2].T + matrix[:, 2]

    def region(boundary, centre):  # the outline on screen of a star-shaped patch of the head
        patch = np.concatenate([centre + (boundary - centre) * t for t in np.linspace(0.1, 1, 10)])
        return cv2.convexHull(to_px(patch, head_depth(patch)).astype(np.float32))[:, 0]

    pts = to_px(points_unit, face_depth(points_unit))
    background = np.empty((size, size, 3), np.float64)
    ramp = np.linspace(0, 1, size)[:, None]
    c0, c1 = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    background[:] = (c0 * (1 - ramp) + c1 * ramp)[:, None, :]
    image = np.clip(background + rng.normal(0, 6, background.shape), 0, 255).astype(np.uint8)
    ipt = lambda q: np.round(q * 16).astype(np.int32)  # noqa: E731 - sub-pixel drawing, shift=4
    draw = dict(lineType=cv2.LINE_AA, shift=4)
    arc = np.linspace(0, np.pi, 25)
    crown = np.c_[np.cos(arc) * -1.05 * person.face_width, -0.2 - 1.1 * np.sin(arc)]
    cv2.fillPoly(image, [ipt(region(np.r_[crown, points_unit[[16, 0]]], np.array([0.0, -0.5])))], person.hair.tolist(), **draw)
    skin = person.skin.tolist()
    for side in (1, -1):  # ears, behind the face's outline
        ear = np.array([[side * person.face_width * 1.02, -0.25]])
        cv2.ellipse(image, tuple(ipt(to_px(ear, head_depth(ear))[0])), tuple(ipt(np.array([0.1, 0.22]) * scale).tolist()),
                    0, 0, 360, skin, -1, **draw)
    forehead = np.c_[np.cos(arc) * -person.face_width, -0.2 - 0.85 * np.sin(arc)]
    outline = region(np.r_[points_unit[0:17], forehead[::-1]], np.array([0.0, -0.2]))
    cv2.fillPoly(image, [ipt(outline)], skin, **draw)
    shade = (person.skin * 0.55).tolist()
    # the jaw line where it is the face's outline: a jaw point turned behind the cheek lies inside it
    on_outline = [cv2.pointPolygonTest(outline, tuple(map(float, p)), True) < 0.05 * scale for p in pts[0:17]]
    runs = np.split(np.arange(17), np.flatnonzero(np.diff(on_outline)) + 1)
    cv2.polylines(image, [ipt(pts[run]) for run in runs if on_outline[run[0]] and len(run) > 1], False, shade, 1, **draw)
    brow_px = max(1, int(scale * 0.06))
    for a, b in ((17, 22), (22, 27)):
        cv2.polylines(image, [ipt(pts[a:b])], False, (person.hair * 0.8).tolist(), brow_px, **draw)
    for a in (36, 42):  # shaded sockets: the dark eye band a face detector looks for
        eye = pts[a:a + 6]
        socket = (eye - eye.mean(axis=0)) * np.array([1.5, 2.6]) + eye.mean(axis=0) - [0, 0.3 * np.ptp(eye[:, 1])]
        cv2.fillPoly(image, [ipt(cv2.convexHull(socket.astype(np.float32))[:, 0])], (person.skin * 0.6).tolist(), **draw)
    for a in (36, 42):
        eye = pts[a:a + 6]
        cv2.fillPoly(image, [ipt(eye)], (235, 235, 235), **draw)
        centre = eye.mean(axis=0)
        radius = 0.8 * (eye[:, 1].max() - eye[:, 1].min()) / 2
        cv2.circle(image, tuple(ipt(centre)), int(radius * 16), person.iris.tolist(), -1, **draw)
        cv2.circle(image, tuple(ipt(centre)), int(radius * 8), (15, 15, 15), -1, **draw)
        cv2.polylines(image, [ipt(eye)], True, (40, 30, 30), 1, **draw)
    cv2.polylines(image, [ipt(pts[27:31])], False, shade, 1, **draw)
    cv2.polylines(image, [ipt(pts[31:36])], False, shade, 1, **draw)
    lips = (person.skin * np.array([0.85, 0.45, 0.45])).tolist()
    cv2.fillPoly(image, [ipt(pts[48:60])], lips, **draw)
    cv2.fillPoly(image, [ipt(np.r_[pts[60:65], pts[65:68]])], (60, 20, 25), **draw)
    light = np.linspace(rng.uniform(0.65, 1.0), rng.uniform(0.95, 1.3), size)
    light = light[None, :] if rng.random() < 0.5 else light[:, None]
    image = image.astype(np.float64) * light[..., None] * rng.uniform(0.8, 1.15)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.0)) + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), pts


def close_eyes(points: np.ndarray) -> np.ndarray:
    """The 68 unit-frame points with each upper lid lowered onto its lower lid (closed eyes)."""
    closed = points.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        closed[upper, 1] = closed[lower, 1] = (points[upper, 1] + points[lower, 1]) / 2
    return closed


def head_depth(points: np.ndarray) -> np.ndarray:
    """The depth (away from the camera) of the head's surface under unit-frame points: a hand-made head of
    rough human proportions whose sides go back, the lower face sloping back to the chin and the forehead
    back to the crown."""
    x, y = points[:, 0], points[:, 1]
    z = 2.05 * (1 - np.sqrt(np.clip(1 - (x / 1.1) ** 2, 0, None)))
    return z + 0.35 * np.clip(y - 0.3, 0, None) + 1.2 * np.clip(-0.7 - y, 0, None) ** 2


def face_depth(points: np.ndarray) -> np.ndarray:
    """A depth for each of the 68 unit-frame points of `face_points`: the head's surface (`head_depth`; in
    outer-eye-corner distances the jaw's ends 0.85 behind the eye corners, the chin level with them) with the
    nose standing out (its tip 0.45 before the eye corners) and the eyes a little in. Not kerakp's fitted 3-D
    face, so a pose fitted to these faces does not fit its own model."""
    z = head_depth(points)
    z[27:31] -= np.linspace(0.0, 0.12, 4)                              # the nose stands out
    z[31:36] -= 0.05
    z[36:48] += 0.05                                                   # the eyes sit a little in
    return z


def posed_face(rng: np.random.Generator, yaw: float, pitch: float, roll: float, person: Person | None = None,
               size: int = 200, eyes_closed: bool = False, expression: str = "neutral") -> dict:
    """One synthetic face turned by a known (yaw, pitch, roll) in degrees (`kerakp.analysis` conventions): the
    whole head drawn turned in 3-D (`draw_face`); `eyes_closed` lowers the upper lids onto the lower ones."""
    from kerakp.analysis import rotation_from

    person = person or random_person(rng)
    unit = face_points(person, expression, rng)
    unit = close_eyes(unit) if eyes_closed else unit
    matrix = np.c_[np.eye(2) * size * 0.21, [size / 2, size / 2 - 0.04 * size]]   # 0.21 image sides per unit
    image, points = draw_face(person, unit, matrix, size, rng, rotation_from(yaw, pitch, roll))
    return {"image": image, "points": points, "pose": (yaw, pitch, roll)}


def synthetic_face(rng: np.random.Generator, person: Person | None = None, expression: str | None = None,
                   size: int = 160, roll_range: float = 25.0) -> dict:
    """One synthetic face: image (RGB uint8), points (68, 2), expression and roll in degrees."""
    person = person or random_person(rng)
    expression = expression or EXPRESSIONS[rng.integers(len(EXPRESSIONS))]
    matrix, roll = _pose_matrix(rng, size, roll_range)
    image, points = draw_face(person, face_points(person, expression, rng), matrix, size, rng)
    return {"image": image, "points": points, "expression": expression, "roll": roll}


def write_synthetic_set(out_dir, num_images: int = 600, images_per_person: int = 6, size: int = 160,
                        roll_range: float = 25.0, seed: int = 0, progress: bool = True, overwrite: bool = False) -> Path:
    """Write a synthetic set in the YTF-68 layout into the folder `out_dir` (whole, or not at all; an existing
    folder only with `overwrite`); returns the path of its `landmarks.csv`."""
    from tqdm import tqdm

    from kerakp.io import refuse_existing, replacing

    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    rng = np.random.default_rng(seed)
    rows, attributes = [], []
    person = None
    with replacing(out_dir, folder=True) as staging:
        (staging / "images").mkdir()
        for i in tqdm(range(num_images), desc="synthetic faces", disable=None if progress else True, unit="img"):
            if i % images_per_person == 0:
                person = random_person(rng)
            name = f"Synth_Person_{i // images_per_person:04d}_{i % images_per_person:02d}.jpg"
            face = synthetic_face(rng, person, size=size, roll_range=roll_range)
            if not cv2.imwrite(str(staging / "images" / name), cv2.cvtColor(face["image"], cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write {staging / 'images' / name}")
            rows.append([name, *face["points"].ravel().round(3)])
            attributes.append({"image": name, "person": name.rsplit("_", 1)[0], "expression": face["expression"],
                               "roll": round(face["roll"], 2)})
        header = [""] + [str(i) for i in range(136)]
        pd.DataFrame(rows, columns=header).to_csv(staging / "landmarks.csv", index=False)
        pd.DataFrame(attributes).to_csv(staging / "attributes.csv", index=False)
    return out_dir / "landmarks.csv"


MOTIONS = ("move", "still")


def pose_at(t: float, motion: str, side: int) -> tuple[float, float, np.ndarray]:
    """Roll (radians), zoom and centre of the face at time `t` in 0..1: `move` drifts side to side, rolls 12
    degrees each way and zooms 15 % in and out over the clip; `still` keeps the first pose."""
    if motion == "still":
        t = 0.0
    wave = np.sin(2 * np.pi * t)
    zoom = 1.0 + 0.15 * np.sin(4 * np.pi * t)
    return np.deg2rad(12 * wave), zoom, np.array([side / 2 + 0.12 * side * wave, side / 2 - 0.05 * side])


def write_video(path, frames, fps: float = 30.0, overwrite: bool = False) -> Path:
    """Write (RGB image, (K, 2) points) frames as a video (MJPG `.avi` or mp4v `.mp4`) and their points as
    `<path>.csv` (frame, x0, y0, ...), whole or not at all."""
    from kerakp.io import refuse_existing, replacing, write_csv

    path = Path(path)
    refuse_existing(path, overwrite)
    refuse_existing(path.with_name(path.name + ".csv"), overwrite)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    rows, writer = [], None
    with replacing(path) as tmp:
        open(tmp, "wb").close()   # an unwritable folder fails here, naming the path
        for i, (image, points) in enumerate(frames):
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, (image.shape[1], image.shape[0]))
                if not writer.isOpened():
                    raise KerakpError(f"{path}: OpenCV cannot write {path.suffix or 'this'} videos (use .avi or .mp4)")
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            rows.append([i, *np.asarray(points).ravel().round(3)])
        if writer is not None:
            writer.release()
    count = (len(rows[0]) - 1) // 2 if rows else 68
    write_csv(pd.DataFrame(rows, columns=["frame"] + [f"{a}{k}" for k in range(count) for a in "xy"]), path.with_name(path.name + ".csv"))
    return path


def synthetic_video_frames(frames: int = 120, width: int = 640, height: int = 480, seed: int = 0,
                           motion: str = "move", noise: float = 2.0, closed: frozenset = frozenset()):
    """(RGB frame, 68 points) of one synthetic face: the same scene every frame, posed by `pose_at`, smiling
    in the middle third when it moves, its eyes closed in the frames numbered in `closed`, with fresh sensor
    noise (`noise` grey levels) in each frame."""
    if motion not in MOTIONS:
        raise KerakpError(f"unknown motion '{motion}' (known: {', '.join(MOTIONS)})")
    rng = np.random.default_rng(seed)
    person = random_person(rng)
    side = min(width, height)
    pad = (width - side) // 2
    sensor = np.random.default_rng([seed, 3])
    for i in range(frames):
        t = i / max(1, frames - 1)
        expression = "smile" if motion == "move" and 1 / 3 <= t < 2 / 3 else "neutral"
        angle, zoom, centre = pose_at(t, motion, side)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * side * 0.2 * zoom
        frame_rng = np.random.default_rng([seed, 1])  # the same background and lighting in every frame
        shape_rng = np.random.default_rng([seed, 2])  # the same mouth opening for each expression
        unit = face_points(person, expression, shape_rng)
        image, points = draw_face(person, close_eyes(unit) if i in closed else unit, np.c_[rotation, centre], side, frame_rng)
        image = cv2.copyMakeBorder(image, 0, height - side, pad, width - side - pad, cv2.BORDER_REPLICATE)
        image = np.clip(image + sensor.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
        yield image, points + [pad, 0]


def turning_video_frames(frames: int = 90, width: int = 640, height: int = 480, seed: int = 0, max_yaw: float = 80.0,
                         noise: float = 2.0):
    """(RGB frame, 68 points, yaw in degrees) of one synthetic head turning from frontal to `max_yaw` and back
    (yaw = `max_yaw` sin(pi t)), drawn in 3-D (`draw_face`) in the same scene every frame, with fresh sensor
    noise: a head turn whose truth (every point where it lies on the 3-D face) is known in every frame."""
    from kerakp.analysis import rotation_from

    rng = np.random.default_rng(seed)
    person, side = random_person(rng), min(width, height)
    pad = (width - side) // 2
    unit = face_points(person, "neutral", np.random.default_rng([seed, 2]))
    matrix = np.c_[np.eye(2) * side * 0.2, [side / 2, side / 2 - 0.05 * side]]
    sensor = np.random.default_rng([seed, 3])
    for i in range(frames):
        yaw = max_yaw * np.sin(np.pi * i / max(1, frames - 1))
        image, points = draw_face(person, unit, matrix, side, np.random.default_rng([seed, 1]), rotation_from(yaw, 0.0, 0.0))
        image = cv2.copyMakeBorder(image, 0, height - side, pad, width - side - pad, cv2.BORDER_REPLICATE)
        yield np.clip(image + sensor.normal(0, noise, image.shape), 0, 255).astype(np.uint8), points + [pad, 0], yaw


def photo_video_frames(image: np.ndarray, points: np.ndarray, frames: int = 120, width: int = 640, height: int = 480,
                       motion: str = "move", noise: float = 2.0, seed: int = 0):
    """(RGB frame, points) of a labelled photo warped along the path of `pose_at` (its face about a third of
    the frame high), on a blurred copy of itself, with fresh sensor noise: a real face whose truth is known
    in every frame."""
    from kerakp.data.geometry import points_box

    box = points_box(points)
    side = min(width, height)
    base = side * 0.35 / max(box[2] - box[0], box[3] - box[1])
    backdrop = cv2.GaussianBlur(cv2.resize(image, (width, height)), (0, 0), 15)
    sensor = np.random.default_rng(seed)
    centre = (box[:2] + box[2:]) / 2
    for i in range(frames):
        angle, zoom, target = pose_at(i / max(1, frames - 1), motion, side)
        matrix = cv2.getRotationMatrix2D(tuple(centre), -np.degrees(angle), base * zoom)
        matrix[:, 2] += target + [(width - side) // 2, 0] - centre
        frame = cv2.warpAffine(image, matrix, (width, height), dst=backdrop.copy(), borderMode=cv2.BORDER_TRANSPARENT)
        frame = np.clip(frame + sensor.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        yield frame, points @ matrix[:, :2].T + matrix[:, 2]


def write_synthetic_video(path, frames: int = 120, width: int = 640, height: int = 480, fps: float = 30.0,
                          seed: int = 0, overwrite: bool = False, motion: str = "move") -> Path:
    """A video of one synthetic face (`synthetic_video_frames`), with its landmarks per frame in `<path>.csv`."""
    if motion not in MOTIONS:
        raise KerakpError(f"unknown motion '{motion}' (known: {', '.join(MOTIONS)})")
    return write_video(path, synthetic_video_frames(frames, width, height, seed, motion), fps, overwrite)
