"""The data formats: `FORMATS` is the table, one row per layout (how to read it, how to recognise it, how to write
it), and `load_dataset` / `write_dataset` are the two functions that use it. A new layout is one row here."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kerakp.data import readers, writers
from kerakp.data.dataset import LandmarkSet
from kerakp.data.geometry import box_crop_matrix, transform_points, warp
from kerakp.data.pack import MANIFEST, read_pack
from kerakp.errors import KerakpError
from kerakp.io import writable_folder
from kerakp.schemas import convert_points, get_schema


def _first_line(path: Path) -> str:
    with open(path, errors="replace") as handle:
        return handle.readline(1 << 16)


@dataclass(frozen=True)
class DataFormat:
    """One layout: `read(path, schema=None)`; `sniff(path)`, whether a path (a folder for a folder layout, else a
    file) is in it; `write(folder, schema, append)`, its writer (`kerakp.data.writers`; None: not written); whether
    it is a folder of files; the markup it always holds ("" any); and a line for help texts."""

    read: Callable
    sniff: Callable[[Path], bool]
    write: Callable | None
    folder: bool
    markup: str
    summary: str


FORMATS: dict[str, DataFormat] = {   # `auto` tries the rows in this order
    "pack": DataFormat(read_pack, lambda p: (p / MANIFEST).is_file(), None, True, "",
                       "a folder written by `kerakp pack` (face crops in one file)"),
    "pts": DataFormat(readers.read_pts_folder, lambda p: any(p.glob("*.pts")), writers.FileLayout, True, "",
                      "a folder of image + .pts pairs (300-W; 1-based coordinates)"),
    "asf": DataFormat(readers.read_asf_folder, lambda p: any(p.glob("*.asf")), writers.AsfLayout, True, "",
                      "a folder of image + .asf pairs (IMM 58; coordinates relative to the image size)"),
    "csv": DataFormat(readers.read_point_csv, lambda p: _first_line(p).startswith("image_name"), writers.PointCsvLayout,
                      False, "", "image_name,point_1_x,point_1_y,... with -1 for a missing value (the 5-point format)"),
    "kaggle": DataFormat(readers.read_kaggle, lambda p: "Image" in _first_line(p).strip().split(","), writers.KaggleLayout,
                         False, "kaggle15", "the Kaggle Facial Keypoints training.csv (96x96 grayscale faces in it)"),
    "aflw21": DataFormat(readers.read_aflw21, lambda p: _first_line(p).startswith("file,yaw,x1,y1"), None, False,
                         "aflw21", "AFLW 21: file,yaw,x1,y1,... in crop pixels, blank where a point is not visible"),
    "ytf68": DataFormat(readers.read_ytf68, lambda p: True, writers.TableLayout, False, "",
                        "a CSV: an image name, then x0,y0,... in pixels; images beside it or in images/"),
}
WRITABLE = tuple(name for name, spec in FORMATS.items() if spec.write is not None)


def _labels_csv(folder: Path) -> Path:
    """The one CSV of labels in a folder of a file layout."""
    csvs = sorted(folder.glob("*.csv"))
    if len(csvs) != 1:
        csvs = [c for c in csvs if "keypoints" in c.name or c.name == "landmarks.csv"]
    if len(csvs) != 1:
        raise KerakpError(f"{folder}: cannot tell the data format (no .pts files, {len(sorted(folder.glob('*.csv')))} "
                          "CSV files); pass --format")
    return csvs[0]


def detect_format(path: Path) -> tuple[str, Path]:
    """Guess the layout of a data path; returns (format, the file or folder to read)."""
    if path.is_dir():
        for name, spec in FORMATS.items():
            if spec.folder and spec.sniff(path):
                return name, path
        path = _labels_csv(path)
    if path.suffix.lower() != ".csv":
        raise KerakpError(f"{path}: unknown data format (expected a CSV file or a folder of .pts or .asf files)")
    return next(name for name, spec in FORMATS.items() if not spec.folder and spec.sniff(path)), path


def load_dataset(path, format: str = "auto", schema: str | None = None) -> LandmarkSet:
    """Read a labelled set in any supported layout (`FORMATS`; `auto` recognises it)."""
    path = Path(path)
    if not path.exists():
        raise KerakpError(f"{path}: no such file or folder")
    if format != "auto" and format not in FORMATS:
        raise KerakpError(f"unknown data format '{format}' (known: auto, {', '.join(FORMATS)})")
    if format == "auto":
        format, path = detect_format(path)
    elif path.is_dir() and not FORMATS[format].folder:
        path = _labels_csv(path)
    return FORMATS[format].read(path, schema=schema)


def _face(data: LandmarkSet, index: int, target, crop_size: int | None, context: float, quality: int) -> writers.Face:
    """A face of `data` as it is written: cropped to `crop_size` (`context` times its landmark box) or whole, its
    points converted to the markup `target`."""
    image, points = (data.pixels[index] if data.pixels is not None else None), data.keypoints[index]
    if crop_size:
        box = data.crop_box(index)
        if box is None:
            raise KerakpError(f"{data.names[index]}: no labelled points to crop around")
        matrix = box_crop_matrix(box, context, crop_size)
        image, points = warp(data.image(index), matrix, crop_size), transform_points(matrix, points)
    return writers.Face(data.names[index], image, data.paths[index], convert_points(points, data.schema, target), quality)


def write_dataset(data: LandmarkSet, out, fmt: str, markup: str | None = None, crop_size: int | None = None,
                  context: float = 2.0, progress: bool = True, quality: int = 95) -> Path:
    """Write `data` as `fmt` into the new folder `out` (optionally converted to `markup`, optionally as
    `crop_size` x `crop_size` crops of `context` times the landmark box, JPEG at `quality`), whole or not at
    all; returns the file to read back."""
    from tqdm import tqdm

    out = Path(out)
    if fmt not in WRITABLE:
        raise KerakpError(f"unknown output format '{fmt}' (known: {', '.join(WRITABLE)})")
    if out.exists():
        raise KerakpError(f"{out}: already exists; choose a new folder")
    spec = FORMATS[fmt]
    target = get_schema(markup or spec.markup or data.schema.name)
    if spec.markup and target.name != spec.markup:
        raise KerakpError(f"the {fmt} format holds the {spec.markup} markup, not {target.name}")
    convert_points(data.keypoints[:1], data.schema, target)  # an impossible conversion fails before any work
    writable_folder(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".kerakp-convert-{out.name}-", dir=out.parent))
    try:
        writer = spec.write(staging, target)
        for i in tqdm(range(len(data)), desc=f"writing {fmt}", unit="img", disable=None if progress else True):
            writer.add(_face(data, i, target, crop_size, context, quality))
        written = writer.close()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / written.relative_to(staging)
