"""Writers, one per layout of `kerakp.data.formats.FORMATS` that can be written: each opens a folder for a markup
(or goes on with one it wrote, `append`), takes the faces one at a time (`add(Face)`: a name, the image to write
or None to copy its source file, the points in its pixels), and `close` returns the path to read the set back from.

- `ytf68`: `landmarks.csv` (empty header, then 0..2K-1: x0, y0, ...) and `images/`;
- `csv`: `landmarks.csv` (`image_name,point_1_x,...`, -1 = missing) and `images/`;
- `pts`: image + `.pts` pairs (1-based), every point labelled;
- `asf`: image + `.asf` pairs (relative coordinates), every point labelled;
- `kaggle`: one `training.csv` of 96 x 96 grayscale faces (write crops with `crop_size=96`).
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kerakp.data.images import read_image
from kerakp.data.readers import KAGGLE_SIZE
from kerakp.errors import KerakpError
from kerakp.schemas import Schema


@dataclass(frozen=True)
class Face:
    """One face to write: its file name, its image (None: copy `source` unchanged), its points in that image's
    pixels, and the JPEG quality of a written image."""

    name: str
    image: np.ndarray | None
    source: Path
    points: np.ndarray
    quality: int = 95

    def pixels(self) -> np.ndarray:
        return self.image if self.image is not None else read_image(self.source)


def _fmt(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}".rstrip("0").rstrip(".")


def _image_file(folder: Path, face: Face) -> None:
    """Write a face's (cropped or embedded) image (JPEG at its quality), or copy its source file unchanged."""
    target = folder / face.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if face.image is None:
        shutil.copyfile(face.source, target)
        return
    params = [cv2.IMWRITE_JPEG_QUALITY, face.quality] if target.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(target), cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR), params):
        raise KerakpError(f"{face.name}: could not write the image (unknown extension?)")  # not the staging path


class TableLayout:
    """The CSV layouts: images in `images/` and one label CSV (`landmarks.csv`, or the Kaggle `training.csv` with
    the faces' pixels in it), a row appended per face; `missing` (the point CSV's -1) or an empty field for a
    missing value."""

    file = "landmarks.csv"

    def __init__(self, folder: Path, schema: Schema, append: bool = False, missing: float | None = None):
        self.folder, self.schema, self.missing = Path(folder), schema, missing
        target = self.folder / self.file
        fresh = not (append and target.is_file())
        self.handle = open(target, "a" if not fresh else "w", newline="")
        self.rows = csv.writer(self.handle)
        if fresh:
            self.rows.writerow(self.header())

    def header(self) -> list[str]:
        count = self.schema.num_points
        if self.missing is None:
            return [""] + [str(i) for i in range(2 * count)]
        return ["image_name"] + [f"point_{i}_{a}" for i in range(1, count + 1) for a in "xy"]

    def row(self, face: Face) -> list[str]:
        _image_file(self.folder / "images", face)
        flat = face.points.reshape(-1)
        return [face.name] + [_fmt(self.missing if self.missing is not None and np.isnan(v) else v) for v in flat]

    def add(self, face: Face) -> None:
        self.rows.writerow(self.row(face))

    def keep(self, names: set[str]) -> None:
        """Drop the rows of faces not in `names` (resuming after a hard kill that wrote one chunk too many)."""
        self.handle.close()
        with open(self.folder / self.file, newline="") as handle:
            lines = list(csv.reader(handle))
        with open(self.folder / self.file, "w", newline="") as handle:
            csv.writer(handle).writerows([lines[0]] + [row for row in lines[1:] if self.name_of(row) in names])
        self.handle = open(self.folder / self.file, "a", newline="")
        self.rows = csv.writer(self.handle)

    def name_of(self, row: list[str]) -> str:
        return row[0]

    def close(self) -> Path:
        self.handle.close()
        return self.folder / self.file


class PointCsvLayout(TableLayout):
    def __init__(self, folder: Path, schema: Schema, append: bool = False):
        super().__init__(folder, schema, append, missing=-1.0)


class KaggleLayout(TableLayout):
    """`training.csv`: the named coordinate columns, then each 96 x 96 face's grey levels."""

    file = "training.csv"

    def keep(self, names: set[str]) -> None:
        raise KerakpError("the kaggle layout names no faces, so a labelling run in it cannot resume; pass --overwrite")

    def header(self) -> list[str]:
        return [f"{name}_{a}" for name in self.schema.names for a in "xy"] + ["Image"]

    def row(self, face: Face) -> list[str]:
        image = face.pixels()
        if image.shape[:2] != (KAGGLE_SIZE, KAGGLE_SIZE):
            raise KerakpError(f"{face.name}: the kaggle format holds {KAGGLE_SIZE}x{KAGGLE_SIZE} faces; add --crop {KAGGLE_SIZE}")
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        return [_fmt(v) for v in face.points.reshape(-1)] + [" ".join(map(str, gray.ravel()))]


class FileLayout:
    """The folder layouts: each image beside its annotation file (`.pts`, or `.asf` for IMM), every point labelled."""

    def __init__(self, folder: Path, schema: Schema, append: bool = False, suffix: str = ".pts"):
        self.folder, self.schema, self.suffix = Path(folder), schema, suffix

    def add(self, face: Face) -> None:
        if np.isnan(face.points).any():
            raise KerakpError(f"{face.name}: has missing points, which the {self.suffix[1:]} format cannot store (use csv or ytf68)")
        _image_file(self.folder, face)
        if self.suffix == ".pts":
            text = _pts_text(face.points)
        else:
            height, width = face.pixels().shape[:2]
            text = _asf_text(face.points, width, height, Path(face.name).name)
        (self.folder / face.name).with_suffix(self.suffix).write_text(text)

    def keep(self, names: set[str]) -> None:
        """A face written again overwrites its own files: nothing to drop."""

    def close(self) -> Path:
        return self.folder


class AsfLayout(FileLayout):
    def __init__(self, folder: Path, schema: Schema, append: bool = False):
        super().__init__(folder, schema, append, ".asf")


def _pts_text(points: np.ndarray) -> str:
    lines = ["version: 1", f"n_points: {len(points)}", "{"] + [f"{_fmt(x + 1)} {_fmt(y + 1)}" for x, y in points]
    return "\n".join(lines + ["}"]) + "\n"


def _asf_text(points: np.ndarray, width: int, height: int, host: str) -> str:
    count = len(points)
    rows = [f"0 \t0 \t{x / width:.8f} \t{y / height:.8f} \t{i} \t{max(i - 1, 0)} \t{min(i + 1, count - 1)}"
            for i, (x, y) in enumerate(points)]
    return "\n".join(["# written by kerakp", str(count), *rows, host]) + "\n"
