"""3-D face profiling (as 300W-LP was made, Zhu et al. 2016): a labelled iBUG-68 face turned in 3-D to a new yaw
of 15-90 degrees and a small pitch, its photo warped to match, its 68 points labelled where the turned 3-D points
project (the 3-D convention: the far jaw lies where it is, behind the cheek) with whether each is seen.

- Lift: the face's pose (`kerakp.analysis.head_pose`) and a scaled orthographic fit of the posed mean face
  (`face3d`) give each labelled point a depth (its x, y stay the label's). A head ellipsoid (`HEAD_CENTRE`,
  `HEAD_AXES`, in mean-face units) gives forehead, crown, temple and neck points around the face that turn with
  it; a ring a little outside the ellipsoid's outline, before and after the turn, bounds the head (hair and
  background beyond it stretch to follow); points on a padded image border stay put.
- Turn: about the head's centre, orthographic; the face moves sideways as a head turning on its neck does.
- Warp: a Delaunay mesh of those points in the source image, the background first, then the head's triangles far
  to near (painter's order), back-facing ones left out, as one dense `cv2.remap`. A point is seen when no nearer
  triangle is drawn over it (a z-buffer test on the same mesh).
- A face is dropped and counted when its pose cannot be fitted (`unfit`), when a background triangle flips or a
  triangle whose smooth surface faces the camera flips (`folded`: its labels contradict the head's shape), or when
  a drawn triangle is stretched more than `STRETCH_LIMIT` times (`torn`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from kerakp.analysis import visibility_table, euler, face3d, head_pose, rotation_from
from kerakp.errors import KerakpError
from kerakp.schemas import get_schema

HEAD_CENTRE = np.array([0.0, -0.3, 0.85])   # the head ellipsoid in mean-face units (eye distance 1, z away)
HEAD_AXES = np.array([0.98, 1.45, 1.15])
RING = 32                 # points on a ring just outside the head's silhouette ...
RING_SCALE = 1.15         # ... this many times its size (from the head's centre)
BORDER = 5                # points per side of the padded image border (corners included)
STRETCH_LIMIT = 10.0      # a drawn triangle magnified more than this tears the image ...
TORN_AREA = 0.005         # ... when it covers this share of the face's box area or more
FOLD_FACING = 0.7         # a triangle whose smooth normal faces the camera this much must not flip
FOLD_AREA = 0.01          # ... unless it is smaller than this share of the face's box area
HIDDEN_DEPTH = 0.05       # a point this far (mean-face units) behind the surface drawn over it is hidden
REASONS = ("unfit", "folded", "torn")


@dataclass
class Profiled:
    """A turned face: the image (same size as its source), its 68 points in it, whether each is seen, and its
    head pose (yaw, pitch, roll) in degrees."""

    image: np.ndarray
    points: np.ndarray
    visible: np.ndarray
    pose: tuple[float, float, float]


@dataclass
class ProfileReport:
    """What a profiling run made: source faces, turned faces written and dropped (by reason), seconds taken."""

    sources: int = 0
    written: int = 0
    dropped: dict = field(default_factory=lambda: {reason: 0 for reason in REASONS})
    seconds: float = 0.0

    def line(self) -> str:
        drops = ", ".join(f"{count} {reason}" for reason, count in self.dropped.items())
        per_face = self.seconds / max(1, self.written + sum(self.dropped.values()))
        return f"{self.written} profiled faces from {self.sources} ({drops}; {1000 * per_face:.0f} ms per turned face)"


class Dropped(Exception):
    """A turned face that cannot be made (`reason`: one of `REASONS`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@lru_cache(maxsize=1)
def head_points() -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) points on the head ellipsoid's front around the mean face (forehead, crown, temples, neck), on a
    grid 0.22 units apart and at least 0.15 outside the face's outline, and their (P, 3) outward normals."""
    grid = np.mgrid[-1.0:1.01:0.22, -1.0:1.01:0.15].reshape(2, -1).T                 # (u, v) on the unit disc
    grid = grid[np.hypot(*grid.T) <= 0.9]
    xy = HEAD_CENTRE[:2] + grid * HEAD_AXES[:2]
    hull = cv2.convexHull(face3d()[:, :2].astype(np.float32))
    keep = np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), True) < -0.15 for x, y in xy])
    grid, xy = grid[keep], xy[keep]
    z = HEAD_CENTRE[2] - HEAD_AXES[2] * np.sqrt(1 - (grid ** 2).sum(axis=1))
    points = np.c_[xy, z]
    normals = (points - HEAD_CENTRE) / HEAD_AXES ** 2
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def _outline(rotation: np.ndarray) -> np.ndarray:
    """2 x 2 matrix taking the unit circle to the outline of the head ellipsoid turned by `rotation` (about its
    centre, seen orthographically)."""
    linear = (rotation @ np.diag(HEAD_AXES))[:2]
    values, vectors = np.linalg.eigh(linear @ linear.T)
    return vectors @ np.diag(np.sqrt(values)) @ vectors.T


def _ring(rotation: np.ndarray, size: float) -> np.ndarray:
    """(RING, 2) points on the turned head's outline grown `size` times, about its centre."""
    angles = np.linspace(0, 2 * np.pi, RING, endpoint=False)
    return size * np.c_[np.cos(angles), np.sin(angles)] @ _outline(rotation).T


@dataclass
class Lift:
    """A face's 3-D points in its camera frame (mean-face units), its rotation, and the orthographic scale and
    shift from that frame to its image's pixels."""

    points: np.ndarray     # (68, 3)
    rotation: np.ndarray
    scale: float
    shift: np.ndarray

    def pixels(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points[:, :2] + self.shift


def lift(points: np.ndarray, image_shape) -> Lift:
    """A labelled face's 3-D points: the label's x, y and the depth of the mean face at the face's pose, scaled
    and shifted onto it (raises `Dropped("unfit")` when no pose fits)."""
    schema = get_schema("ibug68")
    pose = head_pose(points, image_shape, schema)
    if not np.all(np.isfinite(pose)):
        raise Dropped("unfit")
    rotation = rotation_from(*pose)
    model = face3d() @ rotation.T
    q, p = model[:, :2] - model[:, :2].mean(axis=0), points - points.mean(axis=0)
    scale = float((q * p).sum() / (q * q).sum())
    residual = np.sqrt(((scale * q - p) ** 2).sum(axis=1).mean())
    if scale <= 0 or residual > 0.2 * scale:    # labels that the mean face does not fit: not a face's shape
        raise Dropped("unfit")
    shift = points.mean(axis=0) - scale * model[:, :2].mean(axis=0)
    return Lift(np.c_[(points - shift) / scale, model[:, 2]], rotation, scale, shift)


def _delaunay(points: np.ndarray, width: int, height: int, pad: float) -> np.ndarray:
    """(T, 3) vertex indices of the Delaunay triangles of (V, 2) points, each counter-clockwise on screen; a point
    within a pixel of an earlier one is no vertex."""
    subdiv = cv2.Subdiv2D((int(-pad - 2), int(-pad - 2), int(width + 2 * pad + 4), int(height + 2 * pad + 4)))
    index = {}
    for i, (x, y) in enumerate(points):
        key = (np.float32(x), np.float32(y))
        if key in index or any(abs(x - points[j, 0]) < 1 and abs(y - points[j, 1]) < 1 for j in index.values()):
            continue
        index[key] = i
        subdiv.insert((float(x), float(y)))
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    tris = np.array([[index.get((np.float32(x), np.float32(y)), -1) for x, y in tri] for tri in corners], int)
    tris = tris[(tris >= 0).all(axis=1)]
    return np.where((_signed_area(points[tris]) < 0)[:, None], tris[:, [0, 2, 1]], tris)


def _signed_area(tri: np.ndarray) -> np.ndarray:
    """Twice the signed area of (T, 3, 2) triangles, positive counter-clockwise on screen (y down: clockwise
    on paper)."""
    a, b = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def _stretch(linear: np.ndarray) -> np.ndarray:
    """The largest singular value of each of (T, 2, 2) matrices (inf for a NaN one: a degenerate triangle)."""
    with np.errstate(invalid="ignore"):
        frobenius, det = (linear ** 2).sum(axis=(1, 2)), np.linalg.det(linear)
        largest = np.sqrt((frobenius + np.sqrt(np.maximum(frobenius ** 2 - 4 * det ** 2, 0))) / 2)
    return np.nan_to_num(largest, nan=np.inf)


def _affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affine maps taking each of (T, 3, 2) source triangles onto its target (NaN when degenerate)."""
    s = np.stack([source[:, 1] - source[:, 0], source[:, 2] - source[:, 0]], axis=2)     # (T, 2, 2) columns
    t = np.stack([target[:, 1] - target[:, 0], target[:, 2] - target[:, 0]], axis=2)
    det = np.linalg.det(s)
    ok = np.abs(det) > 1e-9
    linear = np.full_like(s, np.nan)
    linear[ok] = t[ok] @ np.linalg.inv(s[ok])
    shift = target[:, 0] - np.einsum("tij,tj->ti", linear, source[:, 0])
    return np.concatenate([linear, shift[:, :, None]], axis=2)


def turn_face(image: np.ndarray, points: np.ndarray, yaw: float, pitch: float) -> Profiled:
    """`image` with its face (68 iBUG points) turned to head pose (`yaw`, `pitch`, its own roll) in degrees
    (`kerakp.analysis` conventions); raises `Dropped` with the reason when it cannot be made."""
    height, width = image.shape[:2]
    face = lift(np.asarray(points, np.float64), image.shape)
    roll = euler(face.rotation)[2]
    target = rotation_from(yaw, pitch, roll)
    centre = face.rotation @ HEAD_CENTRE
    caps, cap_normals = head_points()
    rigid = np.r_[face.points, caps @ face.rotation.T]                  # (R, 3) in the source's camera frame
    turned = (rigid - centre) @ (target @ face.rotation.T).T + centre
    # the ring lies RING_SCALE times further out than the farthest head point, in the source and turned alike
    size = RING_SCALE * max(1.0, np.linalg.norm((rigid[:, :2] - centre[:2]) @ np.linalg.inv(_outline(face.rotation)).T,
                                                axis=1).max())
    moving = [face.pixels(rigid), face.pixels(_ring(face.rotation, size) + centre[:2])]
    moved = [face.pixels(turned), face.pixels(_ring(target, size) + centre[:2])]
    every = np.concatenate(moving + moved)
    pad = math.ceil(max(0.0, -every.min(), (every[:, 0] - width + 1).max(), (every[:, 1] - height + 1).max())
                    + 0.5 * max(width, height))
    border = _border(width, height, pad)
    source, goal = np.concatenate([*moving, border]), np.concatenate([*moved, border])
    depth = np.r_[turned[:, 2], np.full(RING, centre[2]), np.full(len(border), np.inf)]
    kind = np.r_[np.zeros(len(rigid), int), np.ones(RING, int), np.full(len(border), 2)]   # head, ring, border
    normals = np.r_[visibility_table()[:, :3], cap_normals] @ target.T   # smooth outward normals, turned

    tris = _delaunay(source, width, height, pad)
    area, box = _signed_area(goal[tris]), np.ptp(goal[:68], axis=0).prod()
    background = (kind[tris] == 2).any(axis=1)
    on_head = (kind[tris] == 0).all(axis=1)
    facing = normals[np.where(on_head[:, None], tris, 0)][:, :, 2].mean(axis=1) < -FOLD_FACING
    if (background & (area <= 0)).any() or (on_head & facing & (area < -FOLD_AREA * box)).any():
        raise Dropped("folded")
    drawn = background | (area > 0)
    sized = drawn & (np.abs(area) > TORN_AREA * box)
    if (_stretch(_affine(source[tris[sized]], goal[tris[sized]])[:, :, :2]) > STRETCH_LIMIT).any():
        raise Dropped("torn")

    order = np.flatnonzero(drawn)   # the background first, then far to near
    order = order[np.argsort(-np.where(background[order], np.inf, depth[tris[order]].mean(axis=1)), kind="stable")]
    warped, ids = _warp(image, source, goal, tris[order], pad)
    near = np.where(background[order, None], 0.0, depth[tris[order]])
    planes = _affine(goal[tris[order]], np.stack([near, np.zeros_like(near)], axis=2))[:, 0]   # depth = a x + b y + c
    planes[background[order] | np.isnan(planes).any(axis=1)] = [0, 0, np.inf]
    labels = goal[:68]
    cells = np.clip(np.round(labels + pad).astype(int), 0, [ids.shape[1] - 1, ids.shape[0] - 1])
    top = ids[cells[:, 1], cells[:, 0]]               # the triangle drawn over each point, -1 none
    cover = np.where(top[:, None] >= 0, planes[top], [0, 0, np.inf])
    visible = (cover * np.c_[labels, np.ones(68)]).sum(axis=1) >= turned[:68, 2] - HIDDEN_DEPTH
    return Profiled(warped, labels, visible, (float(yaw), float(pitch), float(roll)))


def _border(width: int, height: int, pad: int) -> np.ndarray:
    """(4 (BORDER - 1), 2) points around the image padded by `pad` on every side, corners included."""
    x0, y0, x1, y1 = -pad, -pad, width - 1 + pad, height - 1 + pad
    t = np.linspace(0, 1, BORDER)[:-1]
    return np.concatenate([np.c_[x0 + (x1 - x0) * t, np.full_like(t, y0)], np.c_[np.full_like(t, x1), y0 + (y1 - y0) * t],
                           np.c_[x1 - (x1 - x0) * t, np.full_like(t, y1)], np.c_[np.full_like(t, x0), y1 - (y1 - y0) * t]])


def _warp(image: np.ndarray, source: np.ndarray, target: np.ndarray, tris: np.ndarray, pad: int):
    """`image` warped through the mesh (`tris` indexing `source` and `target` points, drawn in that order: a later
    one covers an earlier one) as one dense remap, and the (H + 2 pad, W + 2 pad) map of which triangle (its
    place in `tris`, -1 none) is drawn at each pixel of the padded frame."""
    height, width = image.shape[:2]
    ids = np.full((height + 2 * pad, width + 2 * pad), -1, np.int32)
    for t, tri in enumerate(tris):
        cv2.fillConvexPoly(ids, np.round((target[tri] + pad) * 16).astype(np.int32), t, cv2.LINE_8, 4)
    backward = np.concatenate([_affine(target[tris], source[tris]), [[[1, 0, 0], [0, 1, 0]]]])   # last: unchanged
    inside = ids[pad:pad + height, pad:pad + width]
    m = backward[np.where(inside < 0, len(tris), inside)].astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2] + pad
    map_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2] + pad
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    return cv2.remap(padded, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101), ids


def target_poses(source_yaw: float, count: int, rng: np.random.Generator, yaws=(15.0, 90.0), pitch: float = 15.0,
                 source_pitch: float = 0.0) -> list[tuple[float, float]]:
    """`count` (yaw, pitch) a face is turned to: yaw magnitudes spread over `yaws` (one draw per equal band), towards
    the side the face already turns (either side, at random, for a face within 10 degrees of frontal), and its
    pitch moved up to `pitch` degrees either way."""
    side = np.sign(source_yaw) if abs(source_yaw) >= 10 else rng.choice([-1.0, 1.0])
    low, high = yaws
    bands = low + (high - low) * (np.arange(count) + rng.uniform(size=count)) / count
    return [(float(side * y), float(source_pitch + rng.uniform(-pitch, pitch))) for y in bands]


def profiled_name(name: str, person: str, copy: int) -> str:
    """The file name of a turned copy: under a folder named after its source file, named `<person>_<copy>.jpg`, so
    `kerakp.data.dataset.person_of` (which strips one `_<number>`) reads the source face's person again."""
    return f"{Path(name).with_suffix('')}/{person}_{copy}.jpg"


def profile_set(data, out, per_face: int = 3, seed: int = 0, yaws=(15.0, 90.0), pitch: float = 15.0,
                progress: bool = True, overwrite: bool = False) -> ProfileReport:
    """Write `per_face` turned copies of every face of the iBUG-68 set `data` into the new folder `out`, whole or not
    at all, in the ytf68 layout (`landmarks.csv` + `images/`, which `kerakp train --extra-data` reads; each copy
    keeps its source face's person, `profiled_name`) with `visibility.csv` (image, yaw, pitch, roll, v0..v67: 1 seen,
    0 hidden); returns the counts (dropped faces by reason) and the time taken."""
    import pandas as pd
    from tqdm import tqdm

    from kerakp.data.formats import FORMATS
    from kerakp.data.writers import Face
    from kerakp.io import refuse_existing, replacing

    if data.schema.name != "ibug68":
        raise KerakpError(f"{data.source}: markup {data.schema.name}; profiling turns iBUG-68 faces (ibug68)")
    low, high = yaws
    if not 0 <= low <= high <= 90:
        raise KerakpError(f"yaw range {low:g}-{high:g}: choose 0 <= min <= max <= 90 degrees")
    out = Path(out)
    refuse_existing(out, overwrite)
    rng = np.random.default_rng(seed)
    report, rows = ProfileReport(sources=len(data)), []
    start = time.perf_counter()
    with replacing(out, folder=True) as staging:
        writer = FORMATS["ytf68"].write(staging, data.schema)
        for i in tqdm(range(len(data)), desc="profiling", unit="face", disable=None if progress else True):
            points = data.keypoints[i]
            if np.isnan(points).any():
                report.dropped["unfit"] += per_face
                continue
            image = data.image(i)
            source_yaw, source_pitch, _ = np.nan_to_num(head_pose(points, image.shape, data.schema))
            poses = target_poses(source_yaw, per_face, rng, yaws, pitch, source_pitch)
            for copy, (yaw, turn_pitch) in enumerate(poses):
                try:
                    face = turn_face(image, points, yaw, turn_pitch)
                except Dropped as drop:
                    report.dropped[drop.reason] += 1
                    continue
                name = profiled_name(data.names[i], data.persons[i], copy)
                writer.add(Face(name, face.image, data.paths[i], face.points))
                rows.append([name, *np.round(face.pose, 2), *face.visible.astype(int)])
                report.written += 1
        writer.close()
        if not rows:
            raise KerakpError(f"{data.source}: no face could be profiled ({report.line()})")
        columns = ["image", "yaw", "pitch", "roll"] + [f"v{k}" for k in range(68)]
        pd.DataFrame(rows, columns=columns).to_csv(staging / "visibility.csv", index=False)
        report.seconds = time.perf_counter() - start
    return report
