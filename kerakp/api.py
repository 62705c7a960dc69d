"""`Landmarker`: the one object that carries every verb (predict, evaluate, export, track, train, ...), the
`Face` it returns, and the packaged models (`presets`). The command line only parses options and calls it.

    >>> from kerakp import Landmarker
    >>> faces = Landmarker().predict("photo.jpg")      # the default preset (300w-fast), BlazeFace detector
    >>> faces[0].points, faces[0].box, faces[0].score
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from kerakp.detect import DEFAULT_DETECTOR
from kerakp.errors import KerakpError
from kerakp.inference import DEFAULT_TURN, Predictor
from kerakp.results import Face, ImageFaces, Predictions  # noqa: F401  (Face: re-exported as kerakp.Face)
from kerakp.schemas import CORRESPONDENCES
from kerakp.zoo import model_path, presets  # noqa: F401  (presets: re-exported as kerakp.presets())


class Landmarker:
    """A landmark model with its inference path (face detector -> crop -> model -> decode -> image pixels).

    Args:
        model: a packaged preset name (`kerakp.presets()`; default `kerakp.zoo.DEFAULT_PRESET`, "300w-fast") or a
            `.keras`, `.tflite`, `.onnx` file or SavedModel folder.
        detector: the face detector, a name of `kerakp.detect.DETECTORS` (default `DEFAULT_DETECTOR`).
        box: "detector", "full" (the whole image is the face) or "oracle" (ground truth; evaluation only).
        passes, turn, fallback: re-crops per face (0: read the detector's box directly, turned by the eyes it
            saw; with turn 0, the fast setting), degrees of the turned test-time reads (0: none), and whether
            the whole image is read as a face where the detector finds none (default: no face there; a model
            trained on whole images always reads the whole image).
        threads: inference threads of a `.tflite` or `.onnx` model.

    Example:
        >>> lm = Landmarker("ytf68")
        >>> for image in lm.predict_many(["a.jpg", "photos/"]).images:
        ...     print(image.name, [face.score for face in image.faces])
    """

    def __init__(self, model=None, *, detector: str = DEFAULT_DETECTOR, box: str = "detector", passes: int = 2,
                 turn: float = DEFAULT_TURN, fallback: bool = False, threads: int | None = None):
        from kerakp.runtime import open_model

        self.path = model_path(model)
        self.model = open_model(self.path, threads)
        self.info = self.model.info
        self.options = dict(box=box, passes=passes, fallback="full" if fallback else None, detector=detector, turn=turn)
        self.predictor = Predictor(self.model, **self.options)

    def _spec(self, max_faces: int | None = None):
        """How a worker process builds this Landmarker's predictor (one thread each)."""
        from kerakp.bulk import ReadSpec

        options = {**self.options, "detector": getattr(self.predictor.detector, "name", self.options["detector"])}
        return ReadSpec(str(self.path), options, 1, max_faces)

    def __repr__(self) -> str:
        return f"Landmarker({str(self.path)!r}, markup={self.info.markup!r})"

    @staticmethod
    def _image(image) -> np.ndarray:
        from kerakp.data.images import read_image

        if isinstance(image, (str, Path)):
            return read_image(image)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise KerakpError(f"expected an RGB image as a (height, width, 3) uint8 array, got {image.dtype} {image.shape}")
        return image

    def predict(self, image, max_faces: int | None = None) -> list[Face]:
        """Every face in one image (a path, or an RGB uint8 array), surest first (the detector's score);
        `max_faces` 1 gives the one face `Predictor.choose` keeps (the surest of those read about as consistently as the best)."""
        image = self._image(image)
        return [Face.from_prediction(p, self.info.markup, image.shape, self.info.point_spread)
                for p in self.predictor.predict_faces([image], max_faces)[0] if p.points is not None]

    def predict_many(self, inputs, max_faces: int | None = None, batch: int = 16, progress: bool = False) -> Predictions:
        """Faces of every image in `inputs` (paths of images or folders, searched recursively), read `batch`
        images at a time, held in memory (for many images, `predict_to`). An unreadable file is skipped and
        listed (`Predictions.skipped`), not fatal."""
        from tqdm import tqdm

        from kerakp.bulk import read_all
        from kerakp.data.images import image_files

        items, images = image_files(inputs), []
        with tqdm(total=len(items), desc="predicting", unit="img", disable=None if progress else True) as bar:
            for chunk in read_all(self._spec(max_faces), items, batch, predictor=self.predictor):
                images += chunk
                bar.update(len(chunk))
        return Predictions(images, self.info.markup, max_faces == 1)

    def predict_to(self, out, inputs, max_faces: int | None = None, pose: bool = False, confidence: bool = False,
                   draw=None, batch: int = 16, workers: int | None = None, resume: bool = False, overwrite: bool = False,
                   progress: bool = True, ray: str | None = None, visibility: bool = False) -> dict:
        """The predictions table (`Predictions.table`) of every image in `inputs` streamed to `out` (.csv or
        .parquet) as it is read, by `workers` processes (default `kerakp.bulk.default_workers`: one per core for a
        large run; 1: this process), `batch` images a read; each image drawn into the new folder `draw` when
        given; `pose`, `confidence` and `visibility` add their columns (`Predictions.table`). Ctrl-C leaves `<out>.partial`, which `resume` continues (`kerakp.bulk`). With `ray` ("local",
        "auto" or a cluster's address), Ray actors read the images (`kerakp.distributed`; no `draw` there).
        Returns the counts of this run."""
        from kerakp.bulk import default_workers, predict_table
        from kerakp.results import Columns

        extra = Columns(pose, confidence, visibility)
        if ray is not None:
            from kerakp.distributed import predict_dataset

            if draw is not None:
                raise KerakpError("--draw writes images here; it does not run on Ray")
            return predict_dataset(self._spec(max_faces), self.info.markup, inputs, out, extra, batch,
                                   default_workers() if workers is None else workers,
                                   None if ray == "local" else ray, resume, overwrite, progress)
        return predict_table(self._spec(max_faces), self.info.markup, inputs, out, extra, draw, batch, workers,
                             resume, overwrite, progress, predictor=self.predictor)

    def evaluate(self, data, subset: str = "all", out=None, format: str = "auto", overwrite: bool = False,
                 progress: bool = True, report: bool = False) -> dict:
        """End-to-end accuracy on a labelled set (a path any reader takes, or a `LandmarkSet`), on the model's
        validation persons (`subset="val"`), its training part or all; writes metrics.json, per_image.csv,
        ced.png and grid.png into `out` when given, and with `report` report.html, a page to look through the
        faces (`kerakp.report`). Returns the metrics (the dict metrics.json holds)."""
        import tempfile

        from kerakp.data.dataset import LandmarkSet, model_subset
        from kerakp.data.formats import load_dataset
        from kerakp.evaluate import evaluate
        from kerakp.io import refuse_existing

        if out is not None:
            refuse_existing(out, overwrite)
        data = data if isinstance(data, LandmarkSet) else load_dataset(data, format)
        if data.schema.name != self.info.markup and (data.schema.name, self.info.markup) not in CORRESPONDENCES:
            try:   # a model of a derived markup (nose_tip from imm58); a partial one is scored as it is (`evaluate`)
                data = data.as_markup(self.info.schema)
            except KerakpError as err:
                raise KerakpError(f"{data.source}: markup {data.schema.name}, but the model predicts {self.info.markup} ({err})") from None
        data = model_subset(data, self.info.split, subset)
        label = f"{self.path.stem} on {subset}"
        if out is not None:
            return evaluate(self.predictor, data, out, label=label, progress=progress, report=report)
        if report:
            raise KerakpError("report=True writes report.html into `out`; give an out folder")
        with tempfile.TemporaryDirectory() as folder:
            return evaluate(self.predictor, data, Path(folder) / "report", label=label, progress=progress)

    def export(self, format: str = "tflite", quantize: str = "none", out=None, calibration=None,
               overwrite: bool = False) -> Path:
        """Export a `.keras` model (parity-checked against it; see `kerakp.export`); returns the file's path."""
        from kerakp.export import export_model

        return Path(export_model(self.path, format, quantize, out, calibration, overwrite)["file"])

    def fit_detector(self, data, images: int = 400, detector: str | None = None, offsets: bool = True, out=None,
                     format: str = "auto", progress: bool = True, overwrite: bool = False, extra=()) -> "Landmarker":
        """Refit the box calibration of every detector (or one), the point offsets (unless not `offsets`) and the
        points' spread on the training part of `data`; the box calibration also on up to `images` faces of each
        `extra` set (turned copies from `kerakp profile`: their part a run with `split_extra` trains on). Writes
        the model (in place, or to `out`: an existing file only with `overwrite`) and returns a Landmarker of it
        (`info.describe_fit()` says what was fitted)."""
        from kerakp.data.dataset import model_subset
        from kerakp.data.formats import load_dataset
        from kerakp.io import refuse_existing
        from kerakp.runtime import save_metadata
        from kerakp.train import calibrate_detector, calibrate_points, training_extras

        if out is not None:
            refuse_existing(out, overwrite)
        if self.info.crop.whole_image:
            raise KerakpError(f"{self.path}: trained on whole images (face_box: image), it uses no detector")
        data = load_dataset(data, format)
        if data.schema.name != self.info.markup:
            raise KerakpError(f"{data.source}: markup {data.schema.name}, but the model predicts {self.info.markup}")
        turned = [load_dataset(path) for path in extra]
        for other in turned:
            if other.schema.name != data.schema.name:
                raise KerakpError(f"{other.source}: markup {other.schema.name}, but {data.source} is {data.schema.name}")
        if self.info.split:   # no split recorded: every image
            held_out = set(model_subset(data, self.info.split, "val").persons)
            data, turned = model_subset(data, self.info.split, "train"), training_extras(turned, self.info.split, held_out)
        seed = self.info.split.get("seed", 0)
        fitted = calibrate_detector([data, *turned], images, seed, progress, names=[detector] if detector else None)
        info = self.info.replace(box_calibration={**self.info.box_calibration, **fitted})
        kept = None if offsets else (self.info.point_offsets or None)   # the spread is fitted with the offsets in use
        fitted_offsets, spread = calibrate_points(self.model, data, images, seed, progress, offsets=kept)
        info = info.replace(point_offsets=fitted_offsets, point_spread=spread)
        return Landmarker(save_metadata(self.path, info, out), detector=self.predictor.detector.name if self.predictor.detector else DEFAULT_DETECTOR)

    def track(self, source, max_faces: int | None = None, redetect_every: int = 30, mirror: bool = False,
              expressions: bool = False, rule=None, stats=None, max_frames: int | None = None,
              **filter_options) -> Iterator[tuple[np.ndarray, list[Face]]]:
        """(RGB frame, its faces) for each frame of a camera index or video file, each face tracked with a
        stable `id` and smoothed (`kerakp.tracking`; `min_cutoff`, `beta`: the One Euro filter's settings;
        `mirror`: read each tracked face's crop and its mirror, twice the model time, as accurate as reading
        every frame alone; `expressions`: each face's `tag` (by `rule`, default kerakp's fitted one) and
        `eyes_closed`; `stats`: a `kerakp.tracking.LiveStats` to fill)."""
        from kerakp.data.geometry import points_box
        from kerakp.tracking import track

        for frame, tracks in track(self.predictor, source, redetect_every, max_faces, max_frames=max_frames, stats=stats,
                                   mirror=mirror, expressions=expressions, rule=rule, **filter_options):
            yield frame, [Face(t.points, points_box(t.points), 1.0, True, float("nan"), self.info.markup, t.id,
                               image_shape=frame.shape, tag=t.tag, eyes_closed=t.eyes_closed) for t in tracks]

    def annotate(self, inputs, out, format: str = "ytf68", max_disagreement: float | None = None,
                 max_faces: int | None = None, progress: bool = True, markup: str | None = None, batch: int = 16,
                 workers: int | None = None, resume: bool = False, overwrite: bool = False) -> tuple[Path, dict]:
        """Label unlabelled images (this model as the teacher) into the new folder `out`, readable by `train`, as
        they are read (`kerakp.annotate`; `workers`, `resume` as in `predict_to`); returns the labelled set's path
        and the counts (the per-face table is `out/annotations.csv`)."""
        from kerakp.annotate import annotate

        return annotate(self._spec(max_faces), self.info.markup, inputs, out, format, max_disagreement, markup, batch,
                        workers, resume, overwrite, progress, predictor=self.predictor)

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

    def emotions(self, inputs, rule=None, out=None, overwrite: bool = False):
        """Expression tags of the face the model reads best in each image: a table image, tag, w, h, c
        (`kerakp.emotion`), also written to `out` when given (an existing file only with `overwrite`)."""
        from kerakp.emotion import tag_table
        from kerakp.io import refuse_existing, write_csv

        if out is not None:
            refuse_existing(out, overwrite)
        images = [image for image in self.predict_many(inputs, max_faces=1).images if not image.error]
        nan = np.full((self.info.schema.num_points, 2), np.nan)
        points = np.stack([image.faces[0].points if image.faces else nan for image in images]) if images else nan[None, :0]
        table = tag_table([image.name for image in images], points, self.info.schema, rule)
        if out is not None:
            write_csv(table, out)
        return table

    def kaggle_submission(self, test_csv, lookup_csv, out=None, overwrite: bool = False):
        """The Kaggle Facial Keypoints submission table (RowId, Location) for a kaggle15 model, also written to
        `out` when given (an existing file only with `overwrite`)."""
        from kerakp.io import refuse_existing, write_csv
        from kerakp.kaggle import submission

        if out is not None:
            refuse_existing(out, overwrite)
        table = submission(self.predictor, test_csv, lookup_csv)
        if out is not None:
            write_csv(table, out)
        return table

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
              overwrite: bool = False, progress: bool = True, processes: int = 1, ray: str | None = None,
              **overrides) -> "Landmarker":
        """Train on a labelled set with a recipe (a YAML path or a packaged recipe's name; keys overridden by
        `overrides`, such as epochs=5); returns a Landmarker of the best model (`out/model.keras`). With
        `processes` above 1, or `ray` (a Ray cluster's address), data-parallel over that many local processes or
        one per Ray node, on JAX (`kerakp.launch`)."""
        from kerakp.config import load_config
        from kerakp.data.formats import load_dataset
        from kerakp.train import train

        if processes > 1 or ray:
            from kerakp.launch import train_processes

            return cls(train_processes(data, config, out, overrides, processes=processes, ray=ray, format=format,
                                       resume=resume, overwrite=overwrite, progress=progress))
        recipe = load_config(config, overrides)
        dataset = load_dataset(data, format)
        if progress:
            print(f"data: {len(dataset)} images, markup {dataset.schema.name}, from {dataset.source}", flush=True)
        return cls(train(recipe, dataset, out, resume=resume, progress=progress, overwrite=overwrite))
