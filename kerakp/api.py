"""`Landmarker`: the one object that carries every verb (predict, evaluate, export, track, train, ...), the
`Face` it returns, and the packaged models (`presets`). The command line only parses options and calls it.

    >>> from kerakp import Landmarker
    >>> faces = Landmarker().predict("photo.jpg")      # the packaged 300-W model, BlazeFace detector
    >>> faces[0].points, faces[0].box, faces[0].score
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from kerakp.errors import KerakpError
from kerakp.inference import DEFAULT_TURN, Prediction, Predictor
from kerakp.zoo import model_path, presets  # noqa: F401  (presets: re-exported as kerakp.presets())

@dataclass
class Face:
    """One face: `points` (K, 2) in original-image pixels, `box` (x0, y0, x1, y1) around them, `score` the
    face detector's confidence in 0..1 (0 where no detector gave the box: the whole image was read; 1 for a
    tracked face), `detected` whether a detector's box gave it, `flip_nme` how far the model's reads of the
    face and of its mirror image disagree (NME; lower is surer), `confidence` (K,) per point in 0..1
    (`kerakp.analysis.confidence`; NaN where not measured), and `image_shape` of the image it came from.
    `pose`, `openness` and `aligned` analyse it (`kerakp.analysis`)."""

    points: np.ndarray
    box: np.ndarray
    score: float
    detected: bool
    flip_nme: float
    markup: str = "ibug68"
    id: int | None = None      # a tracked face's id (`Landmarker.track`), stable from frame to frame
    confidence: np.ndarray | None = None
    image_shape: tuple = ()

    @classmethod
    def from_prediction(cls, prediction: Prediction, markup: str, image_shape: tuple = (), scale=()) -> "Face":
        from kerakp.analysis import confidence

        score = prediction.score if prediction.detected and np.isfinite(prediction.score) else 0.0
        sure = (confidence(prediction.spread, scale) if prediction.spread is not None
                else np.full(len(prediction.points), np.nan))
        return cls(prediction.points, prediction.box, float(score), prediction.detected, prediction.flip_nme, markup,
                   confidence=sure, image_shape=tuple(image_shape))

    @property
    def pose(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees: yaw positive when the face turns to its own left, pitch when it looks
        up, roll when its eye line turns clockwise on screen (`kerakp.analysis.head_pose`)."""
        from kerakp.analysis import head_pose
        from kerakp.schemas import get_schema

        if not self.image_shape:
            raise KerakpError("this face does not know the size of its image, which its head pose needs")
        return head_pose(self.points, self.image_shape, get_schema(self.markup))

    @property
    def openness(self) -> dict[str, float]:
        """Eye aspect ratio per eye (about 0.3 open, under 0.2 closed) and mouth openness (iBUG 68)."""
        from kerakp.analysis import openness
        from kerakp.schemas import get_schema

        return openness(self.points, get_schema(self.markup))

    def aligned(self, image: np.ndarray, size: int = 112) -> np.ndarray:
        """The face as a `size` x `size` crop aligned by its eyes, nose tip and mouth corners to the ArcFace
        template (`kerakp.analysis.aligned`)."""
        from kerakp.analysis import aligned
        from kerakp.schemas import get_schema

        return aligned(image, self.points, get_schema(self.markup), size)[0]

    def to_dict(self) -> dict:
        """The face as a flat row: box, score, detected, flip_nme, then x0, y0, ... (the predictions CSV's columns)."""
        row = {"x_min": self.box[0], "y_min": self.box[1], "x_max": self.box[2], "y_max": self.box[3],
               "score": self.score, "detected": int(self.detected), "flip_nme": self.flip_nme}
        return {**{k: float(v) if k != "detected" else v for k, v in row.items()},
                **{f"{a}{i}": float(p[j]) for i, p in enumerate(self.points) for j, a in enumerate("xy")}}

    def draw(self, image: np.ndarray, color=(0, 255, 0), radius: int = 2) -> np.ndarray:
        """Draw the points and the box onto `image` (RGB or BGR, in place) and return it."""
        import cv2

        for x, y in self.points:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(image, (int(round(x)), int(round(y))), radius, color, -1, cv2.LINE_AA)
        x0, y0, x1, y1 = np.round(self.box).astype(int)
        cv2.rectangle(image, (x0, y0), (x1, y1), color, 1, cv2.LINE_AA)
        return image


@dataclass
class ImageFaces:
    """The faces found in one image of `Landmarker.predict_many` (none, where `error` says why it was skipped)."""

    name: str
    path: Path | None
    faces: list[Face] = field(default_factory=list)
    error: str = ""


@dataclass
class Predictions:
    """Per-image results of `Landmarker.predict_many`, in input order; `table()` is the `kerakp predict` CSV."""

    images: list[ImageFaces]
    markup: str
    one_per_image: bool

    @property
    def skipped(self) -> list[ImageFaces]:
        return [image for image in self.images if image.error]

    def table(self, pose: bool = False, confidence: bool = False):
        """One row per face (image, face, found, detected, x0, y0, ...; face 0 the largest; an image without a
        face one row with found 0), or per image without the face column when `one_per_image`; `pose` adds
        yaw, pitch, roll and `confidence` c0, c1, ... (each point's confidence)."""
        import pandas as pd

        from kerakp.schemas import get_schema

        count = get_schema(self.markup).num_points
        rows = []
        for image in self.images:
            if image.error:
                continue
            by_size = sorted(image.faces, key=lambda face: -np.prod(face.box[2:] - face.box[:2]))
            for k, face in enumerate(by_size or [None]):
                points = np.full((count, 2), np.nan) if face is None else face.points
                row = {"image": image.name, "face": k, "found": int(face is not None),
                       "detected": int(face is not None and face.detected)}
                row.update({f"{a}{i}": round(float(points[i, j]), 2) for i in range(count) for j, a in enumerate("xy")})
                if pose:
                    row.update(zip(("yaw", "pitch", "roll"), np.round(face.pose, 2) if face is not None else [np.nan] * 3))
                if confidence:
                    row.update({f"c{i}": round(float(face.confidence[i]), 3) if face is not None else np.nan for i in range(count)})
                rows.append(row)
        columns = ["image", "face", "found", "detected"] + [f"{a}{i}" for i in range(count) for a in "xy"]
        columns += (["yaw", "pitch", "roll"] if pose else []) + ([f"c{i}" for i in range(count)] if confidence else [])
        frame = pd.DataFrame(rows, columns=columns)
        return frame.drop(columns="face") if self.one_per_image else frame

    def to_csv(self, path, overwrite: bool = False, pose: bool = False, confidence: bool = False) -> Path:
        """Write `table()` atomically; an existing file only with `overwrite`."""
        from kerakp.io import refuse_existing, write_csv

        refuse_existing(path, overwrite)
        return write_csv(self.table(pose, confidence), path)


class Landmarker:
    """A landmark model with its inference path (face detector -> crop -> model -> decode -> image pixels).

    Args:
        model: a packaged preset name (`kerakp.presets()`; default "300w") or a `.keras`, `.tflite`, `.onnx`
            file or SavedModel folder.
        detector: the face detector (`kerakp.detect.DETECTORS`: "blazeface" or "haar").
        box: "detector", "full" (the whole image is the face) or "oracle" (ground truth; evaluation only).
        passes, turn, fallback: re-crops per face (0: read the detector's box directly, turned by the eyes it
            saw; with turn 0, the fast setting), degrees of the turned test-time reads (0: none), and whether
            the whole image is read where no face is detected.
        threads: inference threads of a `.tflite` or `.onnx` model.

    Example:
        >>> lm = Landmarker("ytf68")
        >>> for image in lm.predict_many(["a.jpg", "photos/"]).images:
        ...     print(image.name, [face.score for face in image.faces])
    """

    def __init__(self, model=None, *, detector: str = "blazeface", box: str = "detector", passes: int = 2,
                 turn: float = DEFAULT_TURN, fallback: bool = True, threads: int | None = None):
        from kerakp.runtime import open_model

        self.path = model_path(model)
        self.model = open_model(self.path, threads)
        self.info = self.model.info
        self.predictor = Predictor(self.model, box=box, passes=passes, fallback="full" if fallback else None,
                                   detector=detector, turn=turn)

    def __repr__(self) -> str:
        return f"Landmarker({str(self.path)!r}, markup={self.info.markup!r})"

    @staticmethod
    def _image(image) -> np.ndarray:
        from kerakp.data.readers import read_image

        if isinstance(image, (str, Path)):
            return read_image(image)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise KerakpError(f"expected an RGB image as a (height, width, 3) uint8 array, got {image.dtype} {image.shape}")
        return image

    def _faces(self, predictions: list[Prediction], image_shape: tuple = ()) -> list[Face]:
        return [Face.from_prediction(p, self.info.markup, image_shape, self.info.point_spread)
                for p in predictions if p.points is not None]

    def predict(self, image, max_faces: int | None = None) -> list[Face]:
        """Every face in one image (a path, or an RGB uint8 array), surest first (the detector's score);
        `max_faces` 1 gives the one face the model reads most consistently."""
        image = self._image(image)
        return self._faces(self.predictor.predict_faces([image], max_faces)[0], image.shape)

    def predict_many(self, inputs, max_faces: int | None = None, batch: int = 16, progress: bool = False) -> Predictions:
        """Faces of every image in `inputs` (paths of images or folders, searched recursively), read `batch`
        images at a time. An unreadable file is skipped and listed (`Predictions.skipped`), not fatal."""
        from tqdm import tqdm

        from kerakp.data.readers import image_files

        items = [ImageFaces(name, path) for name, path in image_files(inputs)]
        with tqdm(total=len(items), desc="predicting", unit="img", disable=None if progress else True) as bar:
            for start in range(0, len(items), batch):
                chunk, images = [], []
                for item in items[start:start + batch]:
                    try:
                        images.append(self._image(item.path))
                        chunk.append(item)
                    except KerakpError as err:
                        item.error = str(err)
                for item, image, faces in zip(chunk, images, self.predictor.predict_faces(images, max_faces)):
                    item.faces = self._faces(faces, image.shape)
                bar.update(len(items[start:start + batch]))
        return Predictions(items, self.info.markup, max_faces == 1)

    def evaluate(self, data, subset: str = "all", out=None, format: str = "auto", overwrite: bool = False,
                 progress: bool = True) -> dict:
        """End-to-end accuracy on a labelled set (a path any reader takes, or a `LandmarkSet`), on the model's
        validation persons (`subset="val"`), its training part or all; writes metrics.json, per_image.csv,
        ced.png and grid.png into `out` when given. Returns the metrics (the dict metrics.json holds)."""
        import tempfile

        from kerakp.data.readers import LandmarkSet, load_dataset, model_subset
        from kerakp.evaluate import evaluate
        from kerakp.io import refuse_existing

        if out is not None:
            refuse_existing(out, overwrite)
        data = data if isinstance(data, LandmarkSet) else load_dataset(data, format)
        if data.schema.name != self.info.markup:   # a model of a derived markup (nose_tip from imm58)
            try:
                data = data.as_markup(self.info.schema)
            except KerakpError as err:
                raise KerakpError(f"{data.source}: markup {data.schema.name}, but the model predicts {self.info.markup} ({err})") from None
        data = model_subset(data, self.info.split, subset)
        label = f"{self.path.stem} on {subset}"
        if out is not None:
            return evaluate(self.predictor, data, out, label=label, progress=progress)
        with tempfile.TemporaryDirectory() as folder:
            return evaluate(self.predictor, data, Path(folder) / "report", label=label, progress=progress)

    def export(self, format: str = "tflite", quantize: str = "none", out=None, calibration=None,
               overwrite: bool = False) -> Path:
        """Export a `.keras` model (parity-checked against it; see `kerakp.export`); returns the file's path."""
        from kerakp.export import export_model

        return Path(export_model(self.path, format, quantize, out, calibration, overwrite)["file"])

    def fit_detector(self, data, images: int = 400, detector: str | None = None, offsets: bool = True, out=None,
                     format: str = "auto", progress: bool = True) -> "Landmarker":
        """Refit the box calibration of every detector (or one), the point offsets (unless not `offsets`) and the
        points' spread on the training part of `data`; writes the model (in place, or to `out`) and returns a
        Landmarker of it."""
        from kerakp.data.readers import load_dataset, model_subset
        from kerakp.runtime import save_metadata
        from kerakp.train import calibrate_detector, calibrate_points

        if self.info.crop.whole_image:
            raise KerakpError(f"{self.path}: trained on whole images (face_box: image), it uses no detector")
        data = load_dataset(data, format)
        if data.schema.name != self.info.markup:
            raise KerakpError(f"{data.source}: markup {data.schema.name}, but the model predicts {self.info.markup}")
        data = model_subset(data, self.info.split, "train") if self.info.split else data  # no split recorded: every image
        seed = self.info.split.get("seed", 0)
        fitted = calibrate_detector(data, images, seed, progress, names=[detector] if detector else None)
        info = self.info.replace(box_calibration={**self.info.box_calibration, **fitted})
        kept = None if offsets else (self.info.point_offsets or None)   # the spread is fitted with the offsets in use
        fitted_offsets, spread = calibrate_points(self.model, data, images, seed, progress, offsets=kept)
        info = info.replace(point_offsets=fitted_offsets, point_spread=spread)
        return Landmarker(save_metadata(self.path, info, out), detector=self.predictor.detector.name if self.predictor.detector else "blazeface")

    def track(self, source, max_faces: int | None = None, redetect_every: int = 30, mirror: bool = False,
              **filter_options) -> Iterator[tuple[np.ndarray, list[Face]]]:
        """(RGB frame, its faces) for each frame of a camera index or video file, each face tracked with a
        stable `id` and smoothed (`kerakp.live`; `min_cutoff`, `beta`: the One Euro filter's settings;
        `mirror`: read each tracked face's crop and its mirror, twice the model time, as accurate as reading
        every frame alone)."""
        from kerakp.data.geometry import points_box
        from kerakp.live import track

        for frame, tracks in track(self.predictor, source, redetect_every, max_faces, mirror=mirror, **filter_options):
            yield frame, [Face(t.points, points_box(t.points), 1.0, True, float("nan"), self.info.markup, t.id,
                               image_shape=frame.shape) for t in tracks]

    def annotate(self, inputs, out, format: str = "ytf68", max_disagreement: float | None = None,
                 max_faces: int | None = None, progress: bool = True):
        """Label unlabelled images (this model as the teacher) into the new folder `out`, readable by `train`;
        returns the labelled set's path and the per-face table (also `out/annotations.csv`)."""
        from kerakp.annotate import annotate

        return annotate(self.predictor, inputs, out, format, max_disagreement, max_faces, progress)

    def align(self, inputs, out, size: int = 112, max_faces: int | None = None) -> tuple[Path, int]:
        """Aligned `size` x `size` crops (`Face.aligned`) of every face of the images in `inputs`, written into
        the new folder `out` as `<stem>.png` (a second face `<stem>_face1.png`, ...); returns the folder and the
        number of crops."""
        import cv2

        from kerakp.io import replacing

        out = Path(out)
        if out.exists():
            raise KerakpError(f"{out.resolve()}: already exists; choose a new folder")
        results = self.predict_many(inputs, max_faces)
        count = 0
        with replacing(out, folder=True) as staging:
            for item in results.images:
                if item.error or not item.faces:
                    continue
                image = self._image(item.path)
                # an image given by its path is named by its file, one found in a folder by its path in there
                stem = Path(item.name).stem if item.name == str(item.path) else Path(item.name.replace("/", "_")).stem
                for k, face in enumerate(item.faces):
                    crop = cv2.cvtColor(face.aligned(image, size), cv2.COLOR_RGB2BGR)
                    cv2.imwrite(str(staging / (f"{stem}.png" if k == 0 else f"{stem}_face{k}.png")), crop)
                    count += 1
        return out, count

    def emotions(self, inputs, rule=None):
        """Expression tags of the face the model reads best in each image: a table image, tag, w, h, c
        (`kerakp.emotion`)."""
        from kerakp.emotion import tag_table

        images = [image for image in self.predict_many(inputs, max_faces=1).images if not image.error]
        nan = np.full((self.info.schema.num_points, 2), np.nan)
        points = np.stack([image.faces[0].points if image.faces else nan for image in images]) if images else nan[None, :0]
        return tag_table([image.name for image in images], points, self.info.schema, rule)

    def kaggle_submission(self, test_csv, lookup_csv):
        """The Kaggle Facial Keypoints submission table (RowId, Location) for a kaggle15 model."""
        from kerakp.kaggle import submission

        return submission(self.predictor, test_csv, lookup_csv)

    def distill(self, data, config="300w_fast", out="runs/distill", *, images=(), format: str = "auto",
                resume: bool = False, overwrite: bool = False, progress: bool = True, **overrides) -> "Landmarker":
        """Train a student recipe on `data` with this model as its teacher: the teacher reads every crop the
        student sees, and labels `images` (unlabelled images or folders) for it (`kerakp.distill`); returns a
        Landmarker of the student."""
        unlabelled = {"unlabelled": [str(p) for p in images]} if images else {}
        return Landmarker.train(data, config, out, format=format, resume=resume, overwrite=overwrite, progress=progress,
                                **{"teacher": str(self.path), **unlabelled, **overrides})

    @classmethod
    def train(cls, data, config=None, out="runs/train", *, format: str = "auto", resume: bool = False,
              overwrite: bool = False, progress: bool = True, **overrides) -> "Landmarker":
        """Train on a labelled set with a recipe (a YAML path or a packaged recipe's name; keys overridden by
        `overrides`, such as epochs=5); returns a Landmarker of the best model (`out/model.keras`)."""
        from kerakp.config import load_config
        from kerakp.data.readers import load_dataset
        from kerakp.models.backbones import get_backbone_spec
        from kerakp.train import train

        recipe = load_config(config, overrides)
        get_backbone_spec(recipe.backbone)
        dataset = load_dataset(data, format)
        if progress:
            print(f"data: {len(dataset)} images, markup {dataset.schema.name}, from {dataset.source}", flush=True)
        return cls(train(recipe, dataset, out, resume=resume, progress=progress, overwrite=overwrite))
