"""Face detectors, one table of them, and the mapping from a detector's box to the landmark box.

`DETECTORS` maps a name (`--detector`) to a class with a `name`, a `default_calibration` and
`faces(image) -> [DetectedFace(box, score, eyes), ...]`, surest first; boxes are (x0, y0, x1, y1) in image
pixels. A detector box is not a landmark box (Haar's starts at the brows and is wider than the jaw):
`BoxCalibration` holds the offset and scale between the two, which `fit_box_calibration` measures on
labelled training images for every detector, since each draws its boxes differently.

- `blazeface` (default): MediaPipe's short-range BlazeFace, run with LiteRT and decoded here with NumPy
  (SSD anchors, weighted non-maximum suppression). Where it finds nothing it looks again on overlapping
  tiles, for faces under about a tenth of the frame, and where still nothing, takes a second look at its weak
  faces with the image's mirror and the full-range model (faces turned past 60 degrees), then looks at the image
  turned by 15 and 30 degrees either way (profiles it misses upright). Imports no TensorFlow.
- `haar`: OpenCV's frontal-face cascade (misses dark skin and turned faces; kept for comparison).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Protocol

import cv2
import numpy as np

from kerakp.data.geometry import box_iou, points_box
from kerakp.errors import KerakpError, KerakpWarning


@dataclass(frozen=True)
class DetectedFace:
    """One detection: box (x0, y0, x1, y1) and score in 0..1, where the detector saw the eyes ((2, 2): the
    image-left eye first; None for a detector that does not say), and whether only a turned look found it (a
    reader keeps such a face only where the landmark model reads it consistently: smooth backgrounds fool them)."""

    box: np.ndarray
    score: float
    eyes: np.ndarray | None = None
    turned: bool = False


@dataclass
class BoxCalibration:
    """Landmark box from a detector box of width w: centre + (dx, dy) * w, side = scale * w. Where the
    detector saw the eyes and `eyes` holds a fit, the box follows them instead: (dx, dy, log scale) =
    [1, eye midpoint - box centre, right eye - left eye] (in box widths) @ `eyes` (5 x 3), so a face turned in
    the box, or off its centre, gets a box that follows it."""

    dx: float = 0.0
    dy: float = 0.12
    scale: float = 0.85
    samples: int = 0
    eyes: list | None = None

    def apply(self, box: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
        x0, y0, x1, y1 = box
        width, centre = x1 - x0, np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        if eyes is None or self.eyes is None:
            dx, dy, scale = self.dx, self.dy, self.scale
        else:
            dx, dy, log_scale = eye_features(box, eyes) @ np.asarray(self.eyes)
            scale = float(np.exp(log_scale))
        cx, cy = centre + np.array([dx, dy]) * width
        half = scale * width / 2
        return np.array([cx - half, cy - half, cx + half, cy + half])

    def to_dict(self) -> dict:
        return asdict(self)


def eye_features(box: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """[1, eye midpoint - box centre (2), right eye - left eye (2)] in box widths: what `BoxCalibration.eyes`
    maps to the landmark box."""
    width, centre = box[2] - box[0], (np.asarray(box[:2]) + box[2:]) / 2
    return np.r_[1.0, (eyes.mean(axis=0) - centre) / width, (eyes[1] - eyes[0]) / width]


class Detector(Protocol):
    name: str
    default_calibration: BoxCalibration

    def faces(self, image: np.ndarray) -> list[DetectedFace]: ...


class HaarDetector:
    """OpenCV's frontal-face Haar cascade; it gives no confidence, so every face scores 1, largest first."""

    name = "haar"
    default_calibration = BoxCalibration(0.0, 0.12, 0.85)

    def __init__(self, max_side: int = 640, min_face_fraction: float = 0.12):
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise KerakpError(f"OpenCV {cv2.__version__} has no Haar cascades (5.0 dropped them); "
                              "install opencv-python<5, or use --detector blazeface")
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise KerakpError(f"cannot load the Haar cascade {path} (opencv-python >= 5 ships none; install opencv<5)")
        self.max_side, self.min_face_fraction = max_side, min_face_fraction

    def faces(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face found, largest first. An image at most half of `max_side` where none is found gets a
        second look at twice its size (the cascade misses many faces of 30-40 px in small video frames)."""
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
        return [DetectedFace(np.array([x, y, x + w, y + h], dtype=np.float64) / factor, 1.0)
                for x, y, w, h in sorted(faces, key=lambda f: -f[2] * f[3])]


def ssd_anchors(size: int, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(N, 2) anchor centres in input fractions: per (stride, anchors per cell) layer, row by row, each cell's
    centre repeated (MediaPipe's SsdAnchorsCalculator with fixed anchor sizes)."""
    centres = []
    for stride, count in layers:
        cells = size // stride
        grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) + 0.5) / cells
        centres.append(np.repeat(grid, count, axis=0))
    return np.concatenate(centres)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, extras: np.ndarray, iou: float):
    """MediaPipe's weighted non-maximum suppression: the surest box absorbs every box overlapping it by more
    than `iou`, as their score-weighted mean (box and `extras`, such as keypoints), and keeps its own score."""
    order = np.argsort(-scores)
    boxes, scores, extras = boxes[order], scores[order], extras[order]
    kept = []
    remaining = np.ones(len(boxes), bool)
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        low, high = np.maximum(boxes[i, :2], boxes[:, :2]), np.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = np.prod(np.clip(high - low, 0, None), axis=1)
        group = remaining & (inter / np.maximum(areas[i] + areas - inter, 1e-12) > iou)
        group[i] = True
        weights = scores[group][:, None]
        kept.append((np.sum(boxes[group] * weights, 0) / weights.sum(),
                     float(scores[i]), np.sum(extras[group] * weights[..., None], 0) / weights.sum()))
        remaining &= ~group
    return kept


@dataclass(frozen=True)
class BlazeFaceModel:
    """A BlazeFace variant: its file, input side and anchor layers ((stride, anchors per cell), ...)."""

    file: str
    size: int
    layers: tuple[tuple[int, int], ...]


BLAZEFACE_SHORT = BlazeFaceModel("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)))
BLAZEFACE_FULL = BlazeFaceModel("face_detection_full_range.tflite", 192, ((4, 1),))


def blazeface_file(name: str):
    """A BlazeFace model file shipped in kerakp (see kerakp/assets/blazeface/NOTICE.md)."""
    return resources.files("kerakp") / "assets" / "blazeface" / name


class BlazeFaceDetector:
    """MediaPipe's BlazeFace: the image letterboxed into the model's square input, boxes and six keypoints
    decoded from anchors, weighted NMS; where no face is sure, also the 3 x 3 overlapping half-size tiles (all
    nine, or `tiles_per_call` of them in turn: a video finds a small face within a few frames at a fraction
    of the cost per empty frame); where still none, with `second_look`, the mirror image and the full-range
    model (two more model runs, `_second`), and then the image turned by each of `turned_looks` degrees in turn
    (`_turned`: up to three runs each)."""

    name = "blazeface"
    default_calibration = BoxCalibration(0.0, 0.06, 0.97)

    def __init__(self, min_score: float = 0.65, iou: float = 0.3, tiles: bool = True, threads: int | None = 1,
                 model: BlazeFaceModel = BLAZEFACE_SHORT, tiles_per_call: int | None = None, sure: float = 0.75,
                 second_look: bool = True, agree: float = 0.5, floor: float = 0.2,
                 turned_looks: tuple[float, ...] = (-15.0, 15.0, -30.0, 30.0)):
        from kerakp.runtime import litert_interpreter

        self.min_score, self.iou, self.tiles, self.model, self.sure = min_score, iou, tiles, model, sure
        self.tiles_per_call, self.next_tile = tiles_per_call, 0
        self.second_look, self.agree, self.floor, self.threads, self._other = second_look, agree, floor, threads, None
        self.turned_looks = tuple(turned_looks)
        with resources.as_file(blazeface_file(model.file)) as path:
            self.interpreter = litert_interpreter(path, threads)
        inputs, outputs = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()
        self.input = inputs["index"]
        # the regressors (16 values per anchor) and the scores (1 per anchor), told apart by their last axis
        self.regressors, self.classifiers = (o["index"] for o in sorted(outputs, key=lambda o: -o["shape"][-1]))
        self.anchors = ssd_anchors(model.size, model.layers)

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image scaled (aspect kept) and centred in the model's square input, in [-1, 1], and the 3 x 3
        matrix from input-edge coordinates back to image pixel centres."""
        size, (height, width) = self.model.size, image.shape[:2]
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = (size - new_w) // 2, (size - new_h) // 2
        small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        square = np.full((size, size, 3), -1.0, np.float32)          # black bars, as MediaPipe pads
        square[top:top + new_h, left:left + new_w] = small.astype(np.float32) / 127.5 - 1.0
        sx, sy = width / new_w, height / new_h
        back = np.array([[sx, 0, -left * sx - 0.5], [0, sy, -top * sy - 0.5], [0, 0, 1]])
        return square, back

    def _run(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (anchors, 8, 2) regressors and (anchors,) scores for one input (the model's graph is fixed at
        batch 1)."""
        self.interpreter.set_tensor(self.input, square[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors).reshape(-1, 8, 2)
        logits = self.interpreter.get_tensor(self.classifiers).reshape(-1)
        return raw, 1 / (1 + np.exp(-np.clip(logits, -80, 80)))

    def _candidates(self, window: tuple[int, int, int, int], image: np.ndarray, min_score: float | None = None):
        """Boxes (n, 4), scores (n,) and keypoints (n, 6, 2) in image pixels of the anchors scoring at least
        `min_score` (default the detector's) in one image window (x, y, width, height), before NMS."""
        x, y, w, h = window
        square, back = self._letterbox(image[y:y + h, x:x + w])
        raw, scores = self._run(square)
        keep = scores >= (self.min_score if min_score is None else min_score)
        decoded = raw[keep] / self.model.size
        centre, half = decoded[:, 0] + self.anchors[keep], decoded[:, 1] / 2
        keypoints = decoded[:, 2:] + self.anchors[keep][:, None]          # (n, 6, 2), offsets from the anchor
        edges = np.concatenate([centre - half, centre + half, keypoints.reshape(-1, 2)]) * self.model.size
        pixels = edges @ back[:2, :2].T + back[:2, 2] + [x, y]
        n = len(centre)
        boxes, scores, keypoints = np.concatenate([pixels[:n], pixels[n:2 * n]], axis=1), scores[keep], pixels[2 * n:].reshape(n, 6, 2)
        # a face cut by a tile's inner edge lies whole in a neighbouring tile: drop the fragment
        height, width = image.shape[:2]
        low = np.where([x > 0, y > 0], [x, y], -np.inf)
        high = np.where([x + w < width, y + h < height], [x + w, y + h], np.inf)
        whole = np.all(boxes[:, :2] >= low - 2, axis=1) & np.all(boxes[:, 2:] <= high + 2, axis=1)
        return boxes[whole], scores[whole], keypoints[whole]

    def _tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The 3 x 3 half-size windows overlapping by half (every face under a quarter of the frame lies
        whole in one), or the next `tiles_per_call` of them."""
        tile_w, tile_h = max(1, width // 2), max(1, height // 2)
        tiles = [(x, y, tile_w, tile_h) for y in (0, height // 4, height - tile_h) for x in (0, width // 4, width - tile_w)]
        if not self.tiles_per_call:
            return tiles
        chosen = [(self.next_tile + k) % len(tiles) for k in range(self.tiles_per_call)]
        self.next_tile = (chosen[-1] + 1) % len(tiles)
        return [tiles[k] for k in chosen]

    def faces(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face scoring at least `min_score`, surest first. Where no face in the whole image scores
        `sure`, the tiles are read too and all detections merged (a small face, or a weak false one). Where
        nothing is found, the `second_look`, and then the `turned_looks`."""
        return self._look(image, self.tiles) or self._turned(image)

    def _look(self, image: np.ndarray, tiles: bool) -> list[DetectedFace]:
        """The faces of the whole image (and of the tiles, with `tiles`), else of the second look."""
        height, width = image.shape[:2]
        low = min(self.floor, self.min_score) if self.second_look else self.min_score
        whole = self._candidates((0, 0, width, height), image, low)
        found = [tuple(part[whole[1] >= self.min_score] for part in whole)]
        if tiles and not (found[0][1] >= self.sure).any():
            found += [self._candidates(window, image) for window in self._tiles(height, width)]
        faces = self._merged(*(np.concatenate(parts) for parts in zip(*found)))
        if faces or not self.second_look:
            return faces
        return self._second(image, self._merged(*whole))

    def _merged(self, boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray) -> list[DetectedFace]:
        """Weighted NMS of candidates, as faces whose eyes are the first two keypoints (image-left first)."""
        return [DetectedFace(box, score, np.stack(sorted(points[:2], key=lambda p: p[0])))
                for box, score, points in weighted_nms(boxes, scores, keypoints, self.iou)]

    def _second(self, image: np.ndarray, whole: list[DetectedFace]) -> list[DetectedFace]:
        """A second look where the first found nothing (a turned face often scores 0.4-0.65): the weak faces
        (from `floor`) of the whole image, of its mirror image and of the full-range model; a face of either
        short-range look is kept where its mean score over the three looks (0 for a look that saw nothing there)
        reaches `agree`, with that score, its box and eyes the short-range model's (the ones the calibration was
        fitted on). One look at a lower threshold finds false faces in smooth backgrounds that the other model
        does not see; `agree` 0.5 adds about none (0.4: 3 % of them), BENCHMARKS.md "Faces found by head yaw"."""
        height, width = image.shape[:2]
        boxes, scores, keypoints = self._candidates((0, 0, width, height), np.ascontiguousarray(image[:, ::-1]), self.floor)
        keypoints[..., 0] = width - 1 - keypoints[..., 0]                      # back to the image's own side
        mirrored = self._merged(np.c_[width - 1 - boxes[:, 2], boxes[:, 1], width - 1 - boxes[:, 0], boxes[:, 3]],
                                scores, keypoints)
        if self._other is None:   # the full-range model, loaded at its first use
            self._other = BlazeFaceDetector(self.floor, self.iou, False, self.threads, BLAZEFACE_FULL, second_look=False,
                                            turned_looks=())
        looks = [whole, mirrored, self._other._merged(*self._other._candidates((0, 0, width, height), image))]
        kept = []
        for face in whole + mirrored:
            score = np.mean([max((f.score for f in look if box_iou(face.box, f.box) > self.iou), default=0.0) for look in looks])
            if score >= self.agree:
                kept.append((face, score))
        if not kept:
            return []
        return self._merged(np.stack([f.box for f, _ in kept]), np.array([s for _, s in kept]),
                            np.stack([f.eyes for f, _ in kept]))

    def _turned(self, image: np.ndarray) -> list[DetectedFace]:
        """The last look where nothing was found: the image turned by each of `turned_looks` degrees in turn, whole
        on a canvas that holds it (no tiles, with the second look), until one finds faces; their box centres and
        eyes turned back (boxes keep their size). A profile BlazeFace misses upright is often found turned: on AFLW
        training faces past 60 degrees padded to 240 px, 32 of the 63 it missed (BENCHMARKS.md "Head poses")."""
        height, width = image.shape[:2]
        for angle in self.turned_looks:
            matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
            cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
            size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
            matrix[:, 2] += [(size[0] - width) / 2, (size[1] - height) / 2]   # on a canvas that holds all of it
            found = self._look(cv2.warpAffine(image, matrix, size), tiles=False)
            if found:
                back = cv2.invertAffineTransform(matrix)
                turn = lambda points: points @ back[:, :2].T + back[:, 2]
                faces = []
                for f in found:
                    centre, half = turn((f.box[:2] + f.box[2:]) / 2), (f.box[2:] - f.box[:2]) / 2
                    faces.append(DetectedFace(np.r_[centre - half, centre + half], f.score,
                                              np.stack(sorted(turn(f.eyes), key=lambda p: p[0])), turned=True))
                return faces
        return []


DETECTORS = {"blazeface": BlazeFaceDetector, "haar": HaarDetector}
DEFAULT_DETECTOR = "blazeface"


def get_detector(name: str, **options) -> Detector:
    """A detector of the table by name; one line naming the known ones for any other."""
    if name not in DETECTORS:
        raise KerakpError(f"unknown detector '{name}' (known: {', '.join(DETECTORS)})")
    return DETECTORS[name](**options)


def calibration_for(info, detector: Detector) -> BoxCalibration:
    """A model's fitted calibration for this detector (`info`: its `ModelInfo`); without one, a one-line
    warning and the detector's own defaults."""
    fitted = info.box_calibration.get(detector.name)
    if fitted is None:
        warnings.warn(f"this model has no box calibration for the {detector.name} detector; using its defaults "
                      f"(refit: kerakp fit-detector MODEL --data DATA)", KerakpWarning, stacklevel=2)
        return detector.default_calibration
    return BoxCalibration(**fitted)


def fit_box_calibration(detector: Detector, images, keypoints, min_overlap: float = 0.4) -> BoxCalibration:
    """Median offset and scale between detector boxes and landmark boxes on labelled images (per image, the
    detected face nearest the labelled one, if its centre lies within `min_overlap` box widths), and, for a
    detector that sees the eyes, the least-squares fit of the same from where it saw them (`BoxCalibration`). A
    face with a point unlabelled (AFLW's hidden points) is passed over: its labelled points' box is not its
    landmark box."""
    rows, features = [], []
    for image, points in zip(images, keypoints):
        target = points_box(points)
        if target is None or np.isnan(points).any():
            continue
        centre = (target[:2] + target[2:]) / 2
        nearest = min(detector.faces(image), key=lambda f: np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre),
                      default=None)
        if nearest is None:
            continue
        box = nearest.box
        width = box[2] - box[0]
        side = max(target[2] - target[0], target[3] - target[1])
        offset = centre - (box[:2] + box[2:]) / 2
        if abs(offset[0]) < min_overlap * width and abs(offset[1]) < min_overlap * width:  # the labelled face
            rows.append((offset[0] / width, offset[1] / width, side / width))
            features.append(None if nearest.eyes is None else eye_features(box, nearest.eyes))
    if not rows:
        return BoxCalibration(**{**detector.default_calibration.to_dict(), "samples": 0})
    rows = np.array(rows)
    dx, dy, scale = np.median(rows, axis=0)
    eyes = None
    if all(f is not None for f in features) and len(features) >= 50:   # enough faces for 15 coefficients
        targets = np.c_[rows[:, :2], np.log(rows[:, 2])]
        eyes = np.linalg.lstsq(np.array(features), targets, rcond=None)[0].tolist()
    return BoxCalibration(float(dx), float(dy), float(scale), len(rows), eyes)
