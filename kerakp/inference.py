"""The one inference path: face box -> crop -> model -> decode -> back to original pixels.

`Predictor` is used by `evaluate`, `predict`, `annotate`, `live` and every later consumer. Box sources:
- `detector`: the faces of a detector from `kerakp.detect.DETECTORS` (default BlazeFace), mapped to landmark
  boxes by the model's calibration for that detector; with `fallback="full"` also the whole image, where the
  detector finds nothing or nothing the model reads consistently (`doubt`); the whole image then replaces a
  detected face only if it reads clearly more consistently (`margin` times its disagreement at most);
- `oracle`: the tight box of the ground-truth landmarks (for diagnosis; reports label it);
- `full`: the whole image (always, for models trained with `face_box: image`, which take one pass).
After the first pass, each further pass re-crops around the previous prediction's landmark box, which is
exactly how training crops are made (for a model trained `upright`, turned so the previous prediction's outer
eye corners lie level, as its training crops were turned by their labels'). A last read of that crop and its
mirror (`flip_test`), each shifted by the model's fitted `point_offsets`, gives the landmarks (the mean of the
two readings) and the confidence proxy (their disagreement). With `turn` (degrees), a face is flip-tested once
more with its crop turned each way by `turn` around its centre, and the landmarks are the mean of the three
(test-time augmentation: four more model reads per face; not for models that read the whole image).

`predict_faces` returns every face of each image (several people); `predict_batch` one face per image: of the
candidates the model reads about as consistently as the most consistent one (a false detection or a face
outside the crop reads inconsistently), the detector's surest, which is what `evaluate` scores against an
image's one labelled face.

`fit_point_offsets` measures those offsets on labelled training images: per reading (direct, mirrored) and
point, the median residual in crop fractions. They remove what a model reads consistently off its labels,
such as a markup whose points sit a pixel to one side of their mirror image (ytf68): a model trained with
flips reads both a little off, one trained without reads the mirrored crop two pixels off.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from kerakp.codecs import decode_regression
from kerakp.data.augment import DARK, expose
from kerakp.data.geometry import (
    box_crop_matrix,
    box_iou,
    box_side,
    level_turn,
    points_box,
    sureness,
    transform_points,
    view_turn,
    warp,
    whole_image_box,
)
from kerakp.detect import DEFAULT_DETECTOR, Detector, calibration_for, get_detector
from kerakp.errors import KerakpError
from kerakp.runtime import open_model
from kerakp.schemas import Schema

BOX_SOURCES = ("detector", "oracle", "full")
DEFAULT_TURN = 12.0  # degrees (BENCHMARKS.md, "Turned reads")
REJECT = 0.15        # the flip disagreement (times `sureness`) past which a read is no face (`consistent`)


def consistent(points: np.ndarray | None, flip_nme: float, norm, reject: float = REJECT) -> bool:
    """Whether the model read a face consistently: its flip disagreement at most `reject`, measured over the larger
    of the read's normalising distance (`norm`, a pair of points) and `FRONTAL_NORM` times its box side (times its
    `sureness`), so a face turned towards profile, whose outer eye corners close up, is held to the same standard
    as a frontal one."""
    box = None if points is None else points_box(points)
    if norm is None or box is None:
        return flip_nme <= reject
    return box_side(box) > 0 and flip_nme * sureness(points, norm) <= reject   # a read collapsed to a point is no face


@dataclass(frozen=True)
class Candidate:
    """A first-pass landmark box, the detector's score for it (NaN elsewhere), whether a detector gave it, the
    turn (degrees) its eyes ask for (`Predictor.view`'s rule; 0 where no detector saw eyes), and whether it is
    `doubtful` (only a detector's turned look found it): then its read is kept only where `consistent`."""

    box: np.ndarray
    score: float
    detected: bool
    turn: float = 0.0
    doubtful: bool = False


@dataclass
class Prediction:
    """Keypoints (K, 2) in original pixels (None when no face was found), their box, whether a detector's
    box gave them, the flip disagreement (a confidence proxy: lower is surer) and the detector's score
    (NaN where the box came from elsewhere)."""

    points: np.ndarray | None
    box: np.ndarray | None
    detected: bool
    flip_nme: float = float("nan")
    score: float = float("nan")
    spread: np.ndarray | None = None   # (K,) per point, the distance between the two reads over the eye distance


class Predictor:
    """Runs a landmark model (`.keras`, `.tflite` or `.onnx`, see `kerakp.runtime`) on whole images."""

    def __init__(self, model, box: str = "detector", passes: int = 2, fallback: str | None = None,
                 detector: str | Detector = DEFAULT_DETECTOR, batch_size: int = 32, candidates: int = 3,
                 doubt: float = 0.06, margin: float = 0.7, turn: float = DEFAULT_TURN, overlap: float = 0.5,
                 max_roll: float = 15.0, dark: float = DARK, tie: float = 0.01):
        if box not in BOX_SOURCES:
            raise KerakpError(f"unknown box source '{box}' (known: {', '.join(BOX_SOURCES)})")
        if isinstance(model, (str, Path)):
            model = open_model(model)
        self.model, self.info = model, model.info
        self.schema: Schema = self.info.schema
        self.input_size: int = self.info.crop.size
        self.crop_scale: float = self.info.crop.scale
        self.whole_image = self.info.crop.whole_image
        self.upright = self.info.crop.upright and not self.whole_image
        if self.whole_image:  # trained on whole images: every read crops the whole image, unturned
            box, passes, turn = "full", 1, 0.0
        self.box, self.passes, self.fallback, self.batch_size = box, max(0, passes), fallback, batch_size
        self.candidates, self.doubt, self.margin, self.turn, self.tie = max(1, candidates), doubt, margin, turn, tie
        self.overlap, self.max_roll, self.dark = overlap, max_roll, dark
        self.crops_read = 0   # model reads so far, one a crop (the live loop counts its own with it)
        self.detector = self._calibration = None
        if self.box == "detector":
            self.detector = get_detector(detector) if isinstance(detector, str) else detector
        offsets = self.info.point_offsets
        self.offsets = np.asarray(offsets, np.float64) if offsets else np.zeros((2, self.schema.num_points, 2))

    @property
    def calibration(self):
        """The model's box calibration for the detector, looked up (and warned about, if missing) when first used."""
        if self._calibration is None:
            self._calibration = calibration_for(self.info, self.detector)
        return self._calibration

    def run_model(self, crops: np.ndarray) -> np.ndarray:
        """Model outputs for a batch of crops (inference mode, whatever the model's file format)."""
        return np.asarray(self.model.predict_on_batch(crops.astype(np.float32)))

    def face_boxes(self, image: np.ndarray, truth: np.ndarray | None = None, limit: int | None = None,
                   detector=None) -> list[Candidate]:
        """First-pass landmark boxes: the oracle's, the whole image's, or the faces of the detector (or of
        another of the same kind, such as the live loop's) up to `limit`, surest first."""
        if self.box == "oracle":
            if truth is None:
                raise KerakpError("--box oracle needs ground-truth landmarks")
            return [Candidate(points_box(truth), np.nan, True)]
        if self.box == "full":
            return [Candidate(whole_image_box(*image.shape[:2], self.crop_scale), np.nan, False)]
        faces = (detector or self.detector).faces(image)[:limit]
        return [Candidate(self.calibration.apply(face.box, face.eyes), face.score, True,
                          0.0 if face.eyes is None else self.turn_for(level_turn(face.eyes, (0, 1))), face.turned)
                for face in faces]

    def fallback_boxes(self, image: np.ndarray) -> list[Candidate]:
        """Where else to look when the detector's faces are missing or doubtful: the whole image."""
        if self.box != "detector" or self.fallback != "full":
            return []
        return [Candidate(whole_image_box(*image.shape[:2], self.crop_scale), np.nan, False)]

    def view(self, points: np.ndarray) -> tuple[np.ndarray, float]:
        """Where the next read crops around predicted landmarks: their box, and the turn (degrees) that sets
        their outer eye corners level (`view_turn`: less so near profile) for a model trained `upright`; for any other model, the turn that brings
        a head rolled further than `max_roll` back to `max_roll` (its training tilts)."""
        return points_box(points), self.turn_for(view_turn(points, self.schema.norm) if self.schema.norm else 0.0)

    def turn_for(self, level: float) -> float:
        """The turn for a face whose eye line needs `level` degrees to lie level (`view`'s rule)."""
        return level if self.upright else float(np.sign(level) * max(0.0, abs(level) - self.max_roll))

    def final_views(self, images: list[np.ndarray], candidates: list[Candidate],
                    passes: int | None = None) -> list[tuple[np.ndarray, float]]:
        """Where the flip test reads, per (image, first-pass candidate): around the landmarks refined through
        all passes (`view`; `passes` in place of the predictor's own); with no passes (`passes=0`, the fast
        setting), the candidate's own box turned by its eyes; the whole image for a model trained on it."""
        passes = self.passes if passes is None or self.whole_image else passes
        if passes == 0:
            return [(c.box, c.turn) for c in candidates]
        refined = self.refine(images, [c.box for c in candidates], passes)
        return [(whole_image_box(*image.shape[:2], self.crop_scale), 0.0) if self.whole_image else self.view(points)
                for image, points in zip(images, refined)]

    def read_both(self, images: list[np.ndarray], views: list[tuple[np.ndarray, float]], angle: float = 0.0,
                  offsets: bool = False):
        """Per (image, view) pair: `read_pair` of its crop (turned by `angle` degrees more), and the crop matrices."""
        crops, matrices = zip(*(self.crop(image, box, turn + angle) for image, (box, turn) in zip(images, views)))
        return (*self.read_pair(crops, offsets), matrices)

    def read_pair(self, crops, offsets: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The model's points on each crop and the mirrored points on its mirror image (both N, K, 2, crop
        pixels), shifted by the fitted `point_offsets` when `offsets`."""
        points = self.read_crops(list(crops) + [c[:, ::-1] for c in crops])
        direct, mirrored = points[:len(crops)], self.schema.flip_points(points[len(crops):], self.input_size)
        if offsets:
            direct, mirrored = direct + self.offsets[0] * self.input_size, mirrored + self.offsets[1] * self.input_size
        return direct, mirrored

    def flip_test(self, images: list[np.ndarray], views: list[tuple[np.ndarray, float]],
                  angle: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (image, view) pair: the mean of the two offset readings of `read_both` (K, 2, original pixels),
        the NME between them (infinity where they collapse) and their per-point distance (N, K) over the
        normalising distance (`point_spread`)."""
        direct, mirrored, matrices = self.read_both(images, views, angle, offsets=True)
        spreads = point_spread(direct, mirrored, self.schema, self.input_size)
        with warnings.catch_warnings():      # a collapsed reading is all NaN: its score becomes infinity below
            warnings.simplefilter("ignore", RuntimeWarning)
            scores = np.nanmean(spreads, axis=1)
        means = [transform_points(np.linalg.inv(m), (d + r) / 2) for m, d, r in zip(matrices, direct, mirrored)]
        return np.stack(means), np.nan_to_num(scores, nan=np.inf, posinf=np.inf), spreads

    def crop(self, image: np.ndarray, box: np.ndarray, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Model-input crop around a landmark box, turned by `angle` degrees about its centre (a dark one
        exposed, `kerakp.data.augment.expose`), and the matrix that made it."""
        matrix = box_crop_matrix(box, self.crop_scale, self.input_size, angle)
        return expose(warp(image, matrix, self.input_size), self.dark), matrix

    def read_crops(self, crops) -> np.ndarray:
        """The model's points (N, K, 2) in crop pixels for a sequence of crops, `batch_size` at a time."""
        self.crops_read += len(crops)
        outputs = np.concatenate([self.run_model(np.stack(crops[j:j + self.batch_size]))
                                  for j in range(0, len(crops), self.batch_size)])
        return decode_regression(outputs, self.input_size)

    def refine(self, images: list[np.ndarray], boxes: list, passes: int | None = None) -> list[np.ndarray | None]:
        """Landmarks from first-pass landmark boxes (None = no face): each pass crops around the last
        prediction's `view` (the first: the box, unturned), runs the model, decodes and maps back to original
        pixels."""
        views, points = [(box, 0.0) for box in boxes], [None] * len(images)
        live = [i for i, box in enumerate(boxes) if box is not None]
        for _ in range(passes or self.passes):
            if not live:
                break
            crops, matrices = zip(*(self.crop(images[i], *views[i]) for i in live))
            for i, matrix, out in zip(live, matrices, self.read_crops(crops)):
                points[i] = transform_points(np.linalg.inv(matrix), out)
                views[i] = self.view(points[i])
        return points

    def track(self, image: np.ndarray, points: np.ndarray, mirror: bool = False) -> np.ndarray:
        """Landmarks (K, 2, original pixels) from one read of the crop around earlier landmarks (`view`),
        shifted by the direct reading's `point_offsets`: the live loop's read of a tracked frame; with `mirror`,
        the flip test of that crop (two reads)."""
        if mirror:
            return self.flip_test([image], [self.view(points)])[0][0]
        crop, matrix = self.crop(image, *self.view(points))
        return transform_points(np.linalg.inv(matrix), self.read_crops([crop])[0] + self.offsets[0] * self.input_size)

    def read_candidates(self, images: list[np.ndarray], found: list[list[Candidate]],
                        passes: int | None = None) -> list[list[Prediction]]:
        """Refine every image's candidates through all passes (`passes` in place of the predictor's own), then
        read each result once more with `flip_test`: per image, a Prediction per candidate (flip-averaged
        landmarks and their disagreement), a `doubtful` candidate's only where `consistent`."""
        flat = [(images[i], candidate) for i, some in enumerate(found) for candidate in some]
        if not flat:
            return [[] for _ in images]
        faces, candidates = map(list, zip(*flat))
        means, scores, spreads = self.flip_test(faces, self.final_views(faces, candidates, passes))
        read = iter(Prediction(points, points_box(points), c.detected, float(score), c.score, spread)
                    for points, score, c, spread in zip(means, scores, candidates, spreads))
        reads = [[(next(read), c) for c in some] for some in found]
        return [[p for p, c in some if not c.doubtful or consistent(p.points, p.flip_nme, self.schema.norm)] for some in reads]

    def choose(self, images: list[np.ndarray], found: list[list[Candidate]]) -> list[Prediction]:
        """Per image, of the candidates the model reads about as consistently as the most consistent (within `tie`
        of its flip disagreement), the detector's surest; an empty Prediction where none. A model that reads
        every real face alike (a distilled student) would otherwise pick among them by noise."""
        chosen = []
        for read in self.read_candidates(images, found):
            best = min((p.flip_nme for p in read), default=np.inf)
            close = [p for p in read if p.flip_nme <= best + self.tie]
            chosen.append(max(close, key=lambda p: (np.nan_to_num(p.score, nan=-1.0), -p.flip_nme)) if close
                          else Prediction(None, None, False, np.inf))
        return chosen

    def predict_batch(self, images: list[np.ndarray], truths: list | None = None) -> list[Prediction]:
        """One face per image of a list. The detector's surest `candidates` faces come first; where none is
        found, or none reads consistently (`doubt`), the fallback boxes compete with them and win by reading at
        most `margin` times the detector's disagreement: a whole image can hold a face-like pattern that reads
        a little more consistently than a real but hard face."""
        found = [self.face_boxes(img, None if truths is None else truths[i], self.candidates) for i, img in enumerate(images)]
        results = self.choose(images, found)
        fallbacks = [self.fallback_boxes(img) for img in images]
        retry = [i for i, first in enumerate(results) if fallbacks[i] and (first.points is None or first.flip_nme > self.doubt)]
        for i, second in zip(retry, self.choose([images[i] for i in retry], [fallbacks[i] for i in retry])):
            if second.points is not None and (results[i].points is None or second.flip_nme < results[i].flip_nme * self.margin):
                results[i] = second
        return self.read_turned(images, results) if self.turn else results

    def predict_faces(self, images: list[np.ndarray], max_faces: int | None = None) -> list[list[Prediction]]:
        """Every face of each image, surest first (the detector's score; at most `max_faces`): each detected face
        read through all passes and the flip test, where two land on one face (their boxes overlap by more than
        `overlap`) the more consistent read kept. Where no face is detected, the fallback box (the whole image)
        is read. `max_faces` 1 is `predict_batch`: per image the one face `choose` keeps."""
        if max_faces == 1:
            return [[face] if face.points is not None else [] for face in self.predict_batch(images)]
        found = [self.face_boxes(image) or self.fallback_boxes(image) for image in images]
        faces = []
        for read in self.read_candidates(images, found):
            kept = []
            for face in sorted(read, key=lambda p: p.flip_nme):
                if all(box_iou(face.box, other.box) <= self.overlap for other in kept):
                    kept.append(face)
            faces.append(sorted(kept, key=lambda p: (-np.nan_to_num(p.score), p.flip_nme))[:max_faces])
        if self.turn:
            flat = self.read_turned([image for image, some in zip(images, faces) for _ in some], [f for some in faces for f in some])
            faces = [flat[start:start + len(some)] for start, some in zip(np.cumsum([0] + [len(f) for f in faces]), faces)]
        return faces

    def read_turned(self, images: list[np.ndarray], results: list[Prediction]) -> list[Prediction]:
        """The results' landmarks averaged with the flip tests of their crops (`view`) turned by -`turn` and
        +`turn` degrees more (the box and score stay those of the unturned read). Each point's `spread`
        becomes the mean flip disagreement of the three flip tests plus twice the mean distance of their three
        means from the result (over its eye distance): more reads, a surer ranking of doubtful points."""
        found = [i for i, result in enumerate(results) if result.points is not None]
        if not found:
            return results
        faces, views = [images[i] for i in found], [self.view(results[i].points) for i in found]
        turned = [self.flip_test(faces, views, angle) for angle in (-self.turn, self.turn)]
        for j, i in enumerate(found):
            reads = np.stack([results[i].points, turned[0][0][j], turned[1][0][j]])
            results[i].points = reads.mean(axis=0)
            apart = point_spread(reads, np.broadcast_to(results[i].points, reads.shape), self.schema, self.input_size).mean(axis=0)
            results[i].spread = (results[i].spread + turned[0][2][j] + turned[1][2][j]) / 3 + 2 * apart
        return results

    def predict(self, image: np.ndarray, truth: np.ndarray | None = None) -> Prediction:
        return self.predict_batch([image], None if truth is None else [truth])[0]


def point_spread(direct: np.ndarray, mirrored: np.ndarray, schema: Schema, size: float) -> np.ndarray:
    """(N, K) distance between two reads of each point over the markup's normalising distance in the second
    read (the crop side for a markup without one); its mean over the points is the reads' NME."""
    norm = (np.linalg.norm(mirrored[:, schema.norm[0]] - mirrored[:, schema.norm[1]], axis=-1) if schema.norm
            else np.full(len(mirrored), float(size)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.linalg.norm(direct - mirrored, axis=-1) / norm[:, None]


def fit_point_offsets(model, images, keypoints, passes: int = 2, offsets=None) -> tuple[list, list]:
    """(2, K, 2) offsets in crop fractions: per reading of the flip test (direct, mirrored) and point, the
    median of label - reading over labelled images, read from the labels' own boxes (or the whole image, for a
    model trained on it) through all passes; and, with those offsets (or the `offsets` given, kept as they
    are), each point's median flip disagreement (`point_spread`): the scale of its confidence."""
    predictor = Predictor(model, box="oracle", passes=passes)
    pairs, reads = zip(images, keypoints), []
    while chunk := list(islice(pairs, predictor.batch_size)):
        batch, truths = map(list, zip(*chunk))
        first = [predictor.face_boxes(image, truth)[0] for image, truth in zip(batch, truths)]
        direct, mirrored, matrices = predictor.read_both(batch, predictor.final_views(batch, first))
        labels = np.stack([transform_points(m, truth) for m, truth in zip(matrices, truths)])
        reads.append(np.stack([direct, mirrored, labels], axis=1))
    if not reads:
        return [], []
    direct, mirrored, labels = np.moveaxis(np.concatenate(reads), 1, 0)    # each (N, K, 2) in crop pixels
    size = predictor.input_size
    fitted = (np.nanmedian(np.stack([labels - direct, labels - mirrored], axis=1) / size, axis=0)
              if offsets is None else np.asarray(offsets, np.float64))
    spread = point_spread(direct + fitted[0] * size, mirrored + fitted[1] * size, predictor.schema, size)
    return fitted.tolist(), np.nanmedian(spread, axis=0).tolist()
