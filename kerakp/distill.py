"""Distillation: a student trained on what a teacher model reads in every crop the student sees.

Each training crop is read by the teacher too, at the teacher's own input size and from the same region of the
same image (the same augmentation matrix, rescaled), before the student's copy is degraded (low light, noise,
blur, a small face: `Augment`); the teacher's flip-averaged reading, with its fitted offsets, is the target,
moved `teacher_weight` of the way from the label where a label exists (with `teacher_turn`, the mean of that
reading and those of the crop turned each way, as the default path reads a face). So the student learns from as
many views as it trains epochs, not from one reading per photo, and can read degraded faces that its teacher only
saw clean. Unlabelled images (`unlabelled`) count too: the teacher's default path finds and labels each one
once (`teacher_labels`, kept in the run folder as `unlabelled.csv` for `--resume`), those labels only place
the crops, and every crop of them is read by the teacher alone. Images of the validation persons are left out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.data.augment import expose
from kerakp.data.dataset import LandmarkSet, person_of, photo_of
from kerakp.data.geometry import about_centre, resize_matrix, rotation, transform_points, warp
from kerakp.data.images import image_files, read_image
from kerakp.data.sequence import KeypointSequence
from kerakp.errors import KerakpError
from kerakp.inference import Predictor
from kerakp.schemas import with_derived

UNLABELLED_FILE = "unlabelled.csv"


class Teacher:
    """A model (any runtime, or a preset's name) that reads crops for a student (`read`)."""

    def __init__(self, model, weight: float, turn: float = 0.0):
        self.predictor = Predictor(model, box="oracle", turn=0.0)
        self.model, self.info, self.weight = self.predictor.model, self.predictor.info, weight
        self.angles = (0.0, turn, -turn) if turn else (0.0,)   # the default path's turned reads, when `turn`

    def check(self, data: LandmarkSet) -> None:
        if data.schema.name != self.info.markup:
            raise KerakpError(f"{data.source}: markup {data.schema.name}, but the teacher reads {self.info.markup}")
        if self.info.crop.whole_image:
            raise KerakpError("the teacher reads whole images (face_box: image); distillation reads face crops")

    def read(self, images: list[np.ndarray], matrices, size: int, scale: float) -> np.ndarray:
        """(N, K, 2) the teacher's flip-averaged points, in the pixels of the `size` crops that `matrices` make
        (crop scale `scale`), read from its own crops of the same regions (averaged over its turned crops too)."""
        side = self.info.crop.size
        reads = []
        for angle in self.angles:
            to_teacher = about_centre(rotation(angle), side) @ resize_matrix(size, side, scale / self.info.crop.scale)
            crops = [expose(warp(image, to_teacher @ matrix, side)) for image, matrix in zip(images, matrices)]
            direct, mirrored = self.predictor.read_pair(crops, offsets=True)
            reads.append(transform_points(np.linalg.inv(to_teacher), (direct + mirrored) / 2))
        return np.mean(reads, axis=0)


class DistillSequence(KeypointSequence):
    """`KeypointSequence` whose targets are the teacher's readings of each crop: blended with the label by the
    teacher's weight where `labelled` (per image) and the label exists, the reading alone elsewhere."""

    def __init__(self, data: LandmarkSet, crop, teacher: Teacher, labelled: np.ndarray, **kwargs):
        super().__init__(data, crop, **kwargs)
        self.teacher, self.labelled = teacher, np.asarray(labelled, bool)

    def __getitem__(self, batch: int):
        indices = self.batch_indices(batch)
        crops, points, matrices = zip(*(self.sample(int(i)) for i in indices))
        read = self.teacher.read([self.image(int(i)) for i in indices], matrices, self.input_size, self.crop.scale)
        read = with_derived(read, self.data.schema.derived)   # a mixed set's derived points, as the labels hold them
        labels = np.stack(points)
        blend = np.isfinite(labels) & self.labelled[indices, None, None]
        targets = np.where(blend, (1 - self.teacher.weight) * labels + self.teacher.weight * read, read)
        targets = np.where(np.isfinite(targets), targets, labels)   # a collapsed reading: the label, if any
        return np.stack(crops), ((targets + 0.5) / self.input_size).reshape(len(indices), -1).astype(np.float32)


def teacher_labels(teacher: Teacher, inputs, progress: bool = True) -> pd.DataFrame:
    """The images of `inputs` labelled by the teacher's default path: a row (image, path, x0, y0, ...) per
    image where it detects a face and reads it consistently (its surest face)."""
    from tqdm import tqdm

    predictor, rows = Predictor(teacher.model), []
    columns = [f"{a}{i}" for i in range(teacher.info.schema.num_points) for a in "xy"]
    for name, path in tqdm(image_files(inputs), desc="teacher labels", unit="img", disable=None if progress else True):
        try:
            face = predictor.predict(read_image(path))
        except KerakpError:
            continue   # an unreadable file labels nothing
        if face.points is not None and face.detected and face.flip_nme <= predictor.doubt:
            rows.append({"image": name, "path": str(path), **dict(zip(columns, face.points.ravel()))})
    return pd.DataFrame(rows, columns=["image", "path", *columns])


def taught_set(labels: pd.DataFrame, schema, held_out: LandmarkSet) -> LandmarkSet | None:
    """`teacher_labels` as a set, without the images of `held_out`'s persons or files; None when none is left."""
    persons, files = set(held_out.persons), {Path(p).resolve() for p in held_out.paths}
    keep = [not ({person_of(name), photo_of(name)} & persons) and Path(path).resolve() not in files
            for name, path in zip(labels["image"], labels["path"])]
    labels = labels[keep]
    if labels.empty:
        return None
    points = labels[[f"{a}{i}" for i in range(schema.num_points) for a in "xy"]].to_numpy(np.float64)
    return LandmarkSet(schema, [Path(p) for p in labels["path"]], points.reshape(len(labels), -1, 2),
                       [person_of(n) for n in labels["image"]], source="unlabelled", names=list(labels["image"]))
