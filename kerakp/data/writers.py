"""Writers: a `LandmarkSet` in any layout the readers take, optionally as compact face crops.

`write_dataset` builds the whole set in a temporary folder beside `out` and renames it into place at the
end, so a failure leaves nothing half-written. Layouts (see `kerakp.data.readers`):
- `ytf68`: `landmarks.csv` (empty header, then 0..2K-1: x0, y0, ...) and `images/`;
- `csv`: `landmarks.csv` (`image_name,point_1_x,...`, -1 = missing) and `images/`;
- `pts`: image + `.pts` pairs (1-based), every point labelled;
- `asf`: image + `.asf` pairs (relative coordinates), every point labelled;
- `kaggle`: one `training.csv` of 96 x 96 grayscale faces (write crops with `crop_size=96`).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from kerakp.data.geometry import box_crop_matrix, transform_points, warp
from kerakp.data.readers import KAGGLE_SIZE, READERS, LandmarkSet
from kerakp.errors import KerakpError
from kerakp.io import writable_folder
from kerakp.schemas import Schema, convert_points, get_schema

WRITE_FORMATS = tuple(name for name in READERS if name != "pack")   # packs: kerakp.data.pack


def _fmt(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}".rstrip("0").rstrip(".")


def _require_complete(points: np.ndarray, fmt: str, name: str) -> None:
    if np.isnan(points).any():
        raise KerakpError(f"{name}: has missing points, which the {fmt} format cannot store (use csv or ytf68)")


def _image_file(out_dir: Path, name: str, image: np.ndarray | None, source: Path, quality: int = 95) -> None:
    """Write a (cropped or embedded) image (JPEG at `quality`), or copy the source file unchanged."""
    target = out_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        shutil.copyfile(source, target)
        return
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if target.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
        raise KerakpError(f"{target}: could not write the image (unknown extension?)")


def _crop(data: LandmarkSet, index: int, size: int, context: float) -> tuple[np.ndarray, np.ndarray]:
    box = data.crop_box(index)
    if box is None:
        raise KerakpError(f"{data.names[index]}: no labelled points to crop around")
    matrix = box_crop_matrix(box, context, size)
    return warp(data.image(index), matrix, size), transform_points(matrix, data.keypoints[index])


def _table(names: list[str], points: np.ndarray, fmt: str) -> pd.DataFrame:
    flat = points.reshape(len(points), -1)
    if fmt == "csv":
        columns = [f"point_{i}_{a}" for i in range(1, points.shape[1] + 1) for a in "xy"]
        frame = pd.DataFrame(np.where(np.isnan(flat), -1.0, flat), columns=columns).map(_fmt)
        frame.insert(0, "image_name", names)
    else:
        frame = pd.DataFrame(flat, columns=[str(i) for i in range(flat.shape[1])]).map(_fmt)
        frame.insert(0, "", names)
    return frame


def _pts_text(points: np.ndarray) -> str:
    lines = ["version: 1", f"n_points: {len(points)}", "{"] + [f"{_fmt(x + 1)} {_fmt(y + 1)}" for x, y in points]
    return "\n".join(lines + ["}"]) + "\n"


def _asf_text(points: np.ndarray, width: int, height: int, host: str) -> str:
    count = len(points)
    rows = [f"0 \t0 \t{x / width:.8f} \t{y / height:.8f} \t{i} \t{max(i - 1, 0)} \t{min(i + 1, count - 1)}"
            for i, (x, y) in enumerate(points)]
    return "\n".join(["# written by kerakp", str(count), *rows, host]) + "\n"


def _kaggle_table(data: LandmarkSet, images: list[np.ndarray], points: np.ndarray, schema: Schema) -> pd.DataFrame:
    columns = [f"{name}_{a}" for name in schema.names for a in "xy"]
    frame = pd.DataFrame(points.reshape(len(points), -1), columns=columns).map(_fmt)
    pixels = []
    for name, image in zip(data.names, images):
        if image.shape[:2] != (KAGGLE_SIZE, KAGGLE_SIZE):
            raise KerakpError(f"{name}: the kaggle format holds {KAGGLE_SIZE}x{KAGGLE_SIZE} faces; add --crop {KAGGLE_SIZE}")
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        pixels.append(" ".join(map(str, gray.ravel())))
    frame["Image"] = pixels
    return frame


def write_dataset(data: LandmarkSet, out, fmt: str, markup: str | None = None, crop_size: int | None = None,
                  context: float = 2.0, progress: bool = True, quality: int = 95) -> Path:
    """Write `data` as `fmt` into the new folder `out` (optionally converted to `markup`, optionally as
    `crop_size` x `crop_size` crops of `context` times the landmark box, JPEG at `quality`); returns the
    file to read back."""
    out = Path(out)
    if fmt not in WRITE_FORMATS:
        raise KerakpError(f"unknown output format '{fmt}' (known: {', '.join(WRITE_FORMATS)})")
    if out.exists():
        raise KerakpError(f"{out}: already exists; choose a new folder")
    target = get_schema(markup) if markup else (get_schema("kaggle15") if fmt == "kaggle" else data.schema)
    if fmt == "kaggle" and target.name != "kaggle15":
        raise KerakpError(f"the kaggle format holds the kaggle15 markup, not {target.name}")
    convert_points(data.keypoints[:1], data.schema, target)  # an impossible conversion fails before any work
    writable_folder(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".kerakp-convert-{out.name}-", dir=out.parent))
    try:
        images, points = [], np.empty((len(data), target.num_points, 2))
        for i in tqdm(range(len(data)), desc=f"writing {fmt}", unit="img", disable=None if progress else True):
            image, source_points = (_crop(data, i, crop_size, context) if crop_size
                                    else (data.pixels[i] if data.pixels is not None else None, data.keypoints[i]))
            points[i] = convert_points(source_points, data.schema, target)
            name = data.names[i]
            if fmt == "kaggle":
                images.append(image if image is not None else data.image(i))
                continue
            folder = staging / "images" if fmt in ("ytf68", "csv") else staging
            _image_file(folder, name, image, data.paths[i], quality)
            if fmt in ("pts", "asf"):
                _require_complete(points[i], fmt, name)
                stem = (staging / name).with_suffix("")
                if fmt == "pts":
                    stem.with_suffix(".pts").write_text(_pts_text(points[i]))
                else:
                    height, width = (image if image is not None else data.image(i)).shape[:2]
                    stem.with_suffix(".asf").write_text(_asf_text(points[i], width, height, Path(name).name))
        if fmt == "kaggle":
            _kaggle_table(data, images, points, target).to_csv(staging / "training.csv", index=False)
        elif fmt in ("ytf68", "csv"):
            _table(data.names, points, fmt).to_csv(staging / "landmarks.csv", index=False)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"kaggle": out / "training.csv", "ytf68": out / "landmarks.csv", "csv": out / "landmarks.csv"}.get(fmt, out)
