"""What a prediction gives back: `Face` (one face, printing itself in one line, drawing itself), `ImageFaces` (the
faces of one image) and `Predictions` (many images: the predictions table, a notebook table, drawn copies).
`rows` is the table's rows for one image, which every way of predicting many images writes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerakp.errors import KerakpError
from kerakp.inference import Prediction

SEEN = 0.5   # a point whose `Face.visible` is under this is drawn hidden (hollow)


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
    tag: str = ""              # a tracked face's expression tag, with `Landmarker.track(expressions=True)`
    eyes_closed: bool = False  # whether a tracked face is blinking, likewise

    def __repr__(self) -> str:
        """One line: box, score, point count, and the pose, id and tag where known (not the 68 x 2 points)."""
        x0, y0, x1, y1 = (int(round(v)) for v in self.box)
        parts = [f"box=({x0}, {y0}, {x1}, {y1})", f"score={self.score:.2f}", f"{len(self.points)} points ({self.markup})"]
        if self.image_shape:
            try:
                parts.append("yaw/pitch/roll={:.1f}/{:.1f}/{:.1f}".format(*self.pose))
            except KerakpError:   # a markup without the points a pose needs
                pass
        parts += [f"id={self.id}"] if self.id is not None else []
        parts += [f"tag={self.tag}"] if self.tag else []
        return f"Face({', '.join(parts)})"

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
    def visible(self) -> np.ndarray:
        """(K,) probability in 0..1 that each point is seen, not hidden behind the head at its pose: points follow
        the 3-D convention, so a profile's far jaw line is read where it lies, behind the cheek
        (`kerakp.analysis.visibility`; iBUG 68)."""
        from kerakp.analysis import visibility
        from kerakp.schemas import get_schema

        return visibility(self.pose, get_schema(self.markup))

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
        """Draw the points (hollow where hidden, `visible` under 0.5, for iBUG 68) and the box onto `image` (RGB or
        BGR, in place) and return it."""
        from kerakp.drawing import draw_face

        return draw_face(image, self.points, self.box, color, radius, self.seen)

    @property
    def seen(self) -> np.ndarray | None:
        """(K,) whether each point is seen (`visible` 0.5 or more) where this face can tell (iBUG 68, with its
        image's size), else None."""
        if self.markup != "ibug68" or not self.image_shape:
            return None
        return ~(self.visible < SEEN)


@dataclass
class ImageFaces:
    """The faces found in one image of `Landmarker.predict_many` (none, where `error` says why it was skipped)."""

    name: str
    path: Path | None
    faces: list[Face] = field(default_factory=list)
    error: str = ""

    def __repr__(self) -> str:
        return f"ImageFaces({self.name!r}, {f'skipped: {self.error}' if self.error else f'{len(self.faces)} faces'})"


@dataclass
class Predictions:
    """Per-image results of `Landmarker.predict_many`, in input order; `table()` is the `kerakp predict` CSV."""

    images: list[ImageFaces]
    markup: str
    one_per_image: bool

    @property
    def skipped(self) -> list[ImageFaces]:
        return [image for image in self.images if image.error]

    def __repr__(self) -> str:
        faces = sum(len(image.faces) for image in self.images)
        return (f"Predictions({len(self.images)} images, {faces} faces, {len(self.skipped)} skipped, markup {self.markup}; "
                "table() for the rows)")

    def _repr_html_(self) -> str:
        """In a notebook: the first rows of `table()`."""
        return f"<p>{repr(self)}</p>" + self.table().to_html(max_rows=20, max_cols=12, float_format="{:.2f}".format)

    def table(self, pose: bool = False, confidence: bool = False, visibility: bool = False):
        """One row per face (image, face, found, detected, x0, y0, ...; face 0 the largest; an image without a
        face one row with found 0), or per image without the face column when `one_per_image`; `pose` adds
        yaw, pitch, roll, `confidence` c0, c1, ... (each point's confidence) and `visibility` v0, v1, ... (each
        point's probability of being seen, `Face.visible`). Unreadable images have none."""
        import pandas as pd

        extra = Columns(pose, confidence, visibility)
        return pd.DataFrame([row for image in self.images for row in rows(image, self.markup, extra, self.one_per_image)],
                            columns=table_columns(self.markup, extra, self.one_per_image))

    def draw(self, folder, pose: bool = False, overwrite: bool = False) -> Path:
        """Write every image again into the new folder `folder` with its faces drawn (`draw_image`). Written whole
        or not at all; an existing folder only with `overwrite`."""
        from kerakp.io import refuse_existing, replacing

        refuse_existing(folder, overwrite)
        with replacing(folder, folder=True) as staging:
            for item in self.images:
                draw_image(item, staging, self.markup, pose)
        return Path(folder)

    def to_csv(self, path, overwrite: bool = False, pose: bool = False, confidence: bool = False,
               visibility: bool = False) -> Path:
        """Write `table()` atomically; an existing file only with `overwrite`."""
        from kerakp.io import refuse_existing, write_csv

        refuse_existing(path, overwrite)
        return write_csv(self.table(pose, confidence, visibility), path)




@dataclass(frozen=True)
class Columns:
    """The predictions table's optional columns: the head pose (yaw, pitch, roll), each point's confidence
    (c0, c1, ...) and each point's probability of being seen (v0, v1, ...)."""

    pose: bool = False
    confidence: bool = False
    visibility: bool = False


def table_columns(markup: str, extra: Columns = Columns(), one_per_image: bool = False) -> list[str]:
    """The predictions table's columns (`rows`)."""
    from kerakp.schemas import get_schema

    count = get_schema(markup).num_points
    columns = ["image", "face", "found", "detected"] + [f"{a}{i}" for i in range(count) for a in "xy"]
    columns += (["yaw", "pitch", "roll"] if extra.pose else []) + ([f"c{i}" for i in range(count)] if extra.confidence else [])
    columns += [f"v{i}" for i in range(count)] if extra.visibility else []
    return [c for c in columns if c != "face"] if one_per_image else columns


def rows(image: ImageFaces, markup: str, extra: Columns = Columns(), one_per_image: bool = False) -> list[dict]:
    """The predictions table's rows for one image (`Predictions.table`): one per face, largest first, in image
    pixels rounded to 0.01; one with `found` 0 and no points for an image without a face; none for an unreadable
    one."""
    from kerakp.schemas import get_schema

    if image.error:
        return []
    count = get_schema(markup).num_points
    found = []
    for k, face in enumerate(sorted(image.faces, key=lambda face: -np.prod(face.box[2:] - face.box[:2])) or [None]):
        points = np.full((count, 2), np.nan) if face is None else face.points
        row = {"image": image.name, "face": k, "found": int(face is not None), "detected": int(face is not None and face.detected)}
        row.update({f"{a}{i}": round(float(points[i, j]), 2) for i in range(count) for j, a in enumerate("xy")})
        if extra.pose:
            row.update(zip(("yaw", "pitch", "roll"), np.round(face.pose, 2) if face is not None else [np.nan] * 3))
        if extra.confidence:
            row.update({f"c{i}": round(float(face.confidence[i]), 3) if face is not None else np.nan for i in range(count)})
        if extra.visibility:
            seen = face.visible if face is not None else np.full(count, np.nan)
            row.update({f"v{i}": round(float(seen[i]), 3) for i in range(count)})
        if one_per_image:
            del row["face"]
        found.append(row)
    return found


def draw_image(image: ImageFaces, folder: Path, markup: str, pose: bool = False) -> None:
    """The image written again into `folder` (by its name: a file given alone by its file name, one found in a
    folder by its path in there) with its faces drawn: points and box, and the head's axes with `pose`. An
    unreadable image is skipped."""
    import cv2

    from kerakp.data.images import read_image
    from kerakp.drawing import draw_pose
    from kerakp.schemas import get_schema

    if image.error:
        return
    picture = cv2.cvtColor(read_image(image.path), cv2.COLOR_RGB2BGR)
    for face in image.faces:
        face.draw(picture)
        if pose:
            draw_pose(picture, face.points, get_schema(markup))
    target = Path(folder) / (Path(image.name).name if image.name == str(image.path) else image.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), picture):
        raise KerakpError(f"{target.name}: OpenCV cannot write this kind of image")
