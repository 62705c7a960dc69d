"""Readers for labelled face sets, one per layout of `kerakp.data.formats.FORMATS`. Each returns a `LandmarkSet`
in original-image pixels (NaN = missing).

Layouts:
- `ytf68`: a CSV whose first column (empty header) names an image and whose next 2K columns are
  x0, y0, ..., x{K-1}, y{K-1}; images beside it or in a folder named after the CSV's prefix.
- `pts`: a folder of image + `.pts` pairs (300-W), 1-based coordinates.
- `csv`: `image_name,point_1_x,point_1_y,...` (the 5-point seed format; -1 marks a missing value).
- `asf`: a folder of image + `.asf` pairs (IMM 58), coordinates relative to the image size.
- `kaggle`: the Kaggle Facial Keypoints CSV: 30 named coordinate columns (empty = missing) and an `Image`
  column of 96 x 96 grayscale pixels.
- `aflw21`: `file,yaw,x1,y1,...,x21,y21` in crop pixels, blank where a point is not visible (AFLW 21 as the
  3DDFA benchmarks release it); images under the CSV's folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.data.dataset import LandmarkSet, person_of, photo_of
from kerakp.data.images import IMAGE_SUFFIXES, read_image
from kerakp.errors import KerakpError
from kerakp.schemas import Schema, get_schema, schema_for_points


def _parse_numbers(values, where: str) -> np.ndarray:
    """Numbers from strings; NaN marks a missing value, an infinite one is an error naming `where`."""
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        for value in values:
            try:
                float(value)
            except (TypeError, ValueError, OverflowError):
                raise KerakpError(f"{where}: cannot parse '{value}' as a number") from None
        raise
    if np.isinf(numbers).any():
        raise KerakpError(f"{where}: an infinite value ({values[int(np.flatnonzero(np.isinf(numbers))[0])]})")
    return numbers


def _check_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise KerakpError(f"{where}: image not found: {path}")
    return path


def read_table(path, numbers: bool = False) -> pd.DataFrame:
    """A CSV as strings; a row with fewer or more values than the header is an error naming the row.
    With `numbers`, the columns after the first are parsed by pandas when every value is a plain number or
    empty (NaN), which keeps a 100,000-row label file small; otherwise they stay strings, so that the caller's
    row-by-row parse names the bad value."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise KerakpError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle)
            header = next(rows, [])
            for number, row in enumerate(rows, 2):
                if row and len(row) != len(header):
                    raise KerakpError(f"{path} row {number}: {len(row)} values, the header has {len(header)}")
        if not header:
            raise KerakpError(f"{path}: empty file, no header")
        if numbers:
            frame = pd.read_csv(path, dtype={header[0]: str}, keep_default_na=False, na_values=[""])
            if all(dtype.kind in "fi" for dtype in frame.dtypes.iloc[1:]):
                return frame
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as err:
        raise KerakpError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None


def _rows_to_points(frame: pd.DataFrame, path: Path, missing: float | None) -> np.ndarray:
    """Parse the coordinate columns of every row, naming the row (1-based, header = row 1) on error."""
    values = frame.iloc[:, 1:]
    if all(dtype.kind in "fi" for dtype in values.dtypes):   # parsed by read_table(numbers=True)
        coords = values.to_numpy(np.float64)
        infinite = np.isinf(coords)
        if infinite.any():
            row = int(np.flatnonzero(infinite.any(axis=1))[0])
            raise KerakpError(f"{path} row {row + 2}: an infinite value ({coords[row][infinite[row]][0]})")
    else:
        coords = np.empty((len(frame), frame.shape[1] - 1), dtype=np.float64)
        for row, texts in enumerate(values.itertuples(index=False)):
            texts = [v if v.strip() != "" else "nan" for v in texts]
            coords[row] = _parse_numbers(texts, f"{path} row {row + 2}")
    if missing is not None:
        coords[coords == missing] = np.nan
    return coords.reshape(len(frame), -1, 2)


def _image_dir_for(csv_path: Path, first_name: str) -> Path:
    prefix = csv_path.stem.split("_")[0]
    for folder in (csv_path.parent / prefix, csv_path.parent / "images", csv_path.parent):
        if (folder / first_name).is_file():
            return folder
    return csv_path.parent


def read_ytf68(csv_path, image_dir=None, schema: str | None = None) -> LandmarkSet:
    """Read the YTF-68 layout: file name column + x0,y0..x{K-1},y{K-1} in pixels."""
    csv_path = Path(csv_path)
    frame = read_table(csv_path, numbers=True)
    if frame.shape[1] < 3 or (frame.shape[1] - 1) % 2:
        raise KerakpError(f"{csv_path}: expected a name column plus 2K coordinate columns, got {frame.shape[1]} columns")
    the_schema = get_schema(schema) if schema else schema_for_points((frame.shape[1] - 1) // 2)
    if frame.shape[1] != 1 + 2 * the_schema.num_points:
        raise KerakpError(f"{csv_path}: {frame.shape[1]} columns, markup {the_schema.name} needs {1 + 2 * the_schema.num_points}")
    if len(frame) == 0:
        raise KerakpError(f"{csv_path}: no rows")
    names = frame.iloc[:, 0].tolist()
    folder = Path(image_dir) if image_dir else _image_dir_for(csv_path, names[0])
    keypoints = _rows_to_points(frame, csv_path, missing=None)
    paths = [_check_image(folder / name, f"{csv_path} row {i + 2}") for i, name in enumerate(names)]
    return LandmarkSet(the_schema, paths, keypoints, [person_of(n) for n in names], source=str(csv_path), names=names)


def read_pts_file(path: Path, num_points: int | None = None) -> np.ndarray:
    """One 300-W `.pts` file as (K, 2) 0-based pixel coordinates."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    try:
        start, end = lines.index("{"), lines.index("}")
    except ValueError:
        raise KerakpError(f"{path}: not a .pts file (no '{{' ... '}}' block)") from None
    header = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[:start])}
    rows = lines[start + 1:end]
    try:
        expected = int(header.get("n_points", len(rows)))
    except ValueError:
        raise KerakpError(f"{path}: n_points is not a whole number ({header['n_points']!r})") from None
    if len(rows) != expected or (num_points and expected != num_points):
        raise KerakpError(f"{path}: {len(rows)} points listed, header says {expected}"
                          + (f", markup needs {num_points}" if num_points else ""))
    points = np.empty((len(rows), 2))
    for i, row in enumerate(rows):
        values = row.split()
        if len(values) != 2:
            raise KerakpError(f"{path} line {start + 2 + i + 1}: expected 'x y', got '{row}'")
        points[i] = _parse_numbers(values, f"{path} line {start + 2 + i + 1}")
    return points - 1.0


def _read_annotation_folder(folder, suffix: str, read_pair, person, schema: str | None) -> LandmarkSet:
    """A folder of annotation files (`suffix`) each naming one image: `read_pair(file)` gives the image
    path and its (K, 2) pixel keypoints, `person(image_path)` the person id."""
    folder = Path(folder)
    files = sorted(folder.glob(f"*{suffix}"))
    if not files:
        raise KerakpError(f"{folder}: no {suffix} files")
    paths, keypoints = zip(*(read_pair(f) for f in files))
    counts = {len(k) for k in keypoints}
    if len(counts) != 1:
        raise KerakpError(f"{folder}: {suffix} files disagree on the number of points ({sorted(counts)})")
    the_schema = get_schema(schema) if schema else schema_for_points(counts.pop())
    return LandmarkSet(the_schema, list(paths), np.stack(keypoints), [person(p) for p in paths], source=str(folder))


def _pts_pair(pts: Path) -> tuple[Path, np.ndarray]:
    images = [pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).is_file()]
    if not images:
        raise KerakpError(f"{pts}: no image with the same name ({'/'.join(IMAGE_SUFFIXES)})")
    return images[0], read_pts_file(pts)


def read_pts_folder(folder, schema: str | None = None) -> LandmarkSet:
    """Read a folder of image + `.pts` pairs (300-W); the person id is the source photo (`photo_of`)."""
    return _read_annotation_folder(folder, ".pts", _pts_pair, lambda p: photo_of(p.name), schema)


def read_point_csv(csv_path, image_dir=None, schema: str | None = None) -> LandmarkSet:
    """Read `image_name,point_1_x,point_1_y,...` (-1 = missing) with images beside the CSV or in image_dir."""
    csv_path = Path(csv_path)
    frame = read_table(csv_path, numbers=True)
    expected = ["image_name"] + [f"point_{i}_{a}" for i in range(1, (frame.shape[1] - 1) // 2 + 1) for a in "xy"]
    if list(frame.columns) != expected or frame.shape[1] < 3:
        raise KerakpError(f"{csv_path}: header must be image_name,point_1_x,point_1_y,...; got {','.join(frame.columns[:4])}...")
    the_schema = get_schema(schema) if schema else schema_for_points((frame.shape[1] - 1) // 2)
    names = frame["image_name"].tolist()
    folder = Path(image_dir) if image_dir else _image_dir_for(csv_path, names[0] if names else "")
    if not names:
        raise KerakpError(f"{csv_path}: no rows")
    keypoints = _rows_to_points(frame, csv_path, missing=-1.0)
    paths = [_check_image(folder / name, f"{csv_path} row {i + 2}") for i, name in enumerate(names)]
    return LandmarkSet(the_schema, paths, keypoints, [person_of(n) for n in names], source=str(csv_path), names=names)


def read_asf_file(path: Path) -> tuple[np.ndarray, str]:
    """One IMM `.asf` file: (K, 2) relative coordinates ordered by point number, and the host image name."""
    lines = [line.split("#")[0].strip() for line in path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    try:
        count = int(lines[0])
        if not 0 < count <= len(lines) - 2:
            raise ValueError
        points = np.full((count, 2), np.nan)
        for row in (line.split() for line in lines[1:1 + count]):
            if not 0 <= int(row[4]) < count:
                raise ValueError
            points[int(row[4])] = _parse_numbers(row[2:4], str(path))
        host = lines[1 + count]
    except (IndexError, ValueError):
        raise KerakpError(f"{path}: not an .asf shape file (point count, {'{'}path type x y point from to{'}'} lines, host image)") from None
    if np.isnan(points).any():
        raise KerakpError(f"{path}: point numbers do not cover 0..{count - 1}")
    return points, host


def _asf_pair(asf: Path) -> tuple[Path, np.ndarray]:
    """The host image of an `.asf` file and its points in pixels (the image is decoded for its size)."""
    relative, host = read_asf_file(asf)
    image = _check_image(asf.parent / host, str(asf))
    height, width = read_image(image).shape[:2]
    with np.errstate(over="ignore"):
        points = relative * [width, height]
    if not np.isfinite(points).all():
        raise KerakpError(f"{asf}: a point lies beyond any image (.asf coordinates are fractions of the image size)")
    return image, points


def read_asf_folder(folder, schema: str | None = None) -> LandmarkSet:
    """Read a folder of image + `.asf` pairs (IMM); the person id is the number before the dash (`01-1m`)."""
    return _read_annotation_folder(folder, ".asf", _asf_pair, lambda p: p.stem.split("-")[0], schema)


KAGGLE_SIZE = 96


def read_kaggle(csv_path, schema: str | None = None) -> LandmarkSet:
    """Read a Kaggle Facial Keypoints CSV (training.csv layout; test.csv rows have no keypoints).

    Each row is its own person (the competition gives no identities); its face fills the image, so its
    recipe trains on whole images (`face_box: image` in kerakp/recipes/kaggle15.yaml)."""
    csv_path = Path(csv_path)
    frame = read_table(csv_path)
    the_schema = get_schema("kaggle15")
    columns = [f"{name}_{axis}" for name in the_schema.names for axis in "xy"]
    if "Image" not in frame.columns:
        raise KerakpError(f"{csv_path}: no 'Image' column (not a Kaggle Facial Keypoints file)")
    lacking = [c for c in columns if c not in frame.columns]
    if lacking and len(lacking) != len(columns):
        raise KerakpError(f"{csv_path}: missing keypoint columns {', '.join(lacking[:4])}{'...' if len(lacking) > 4 else ''}")
    pixels = np.empty((len(frame), KAGGLE_SIZE, KAGGLE_SIZE), dtype=np.uint8)
    for row, text in enumerate(frame["Image"]):
        values = text.split()
        if len(values) != KAGGLE_SIZE * KAGGLE_SIZE:
            raise KerakpError(f"{csv_path} row {row + 2}: Image has {len(values)} pixels, expected {KAGGLE_SIZE}x{KAGGLE_SIZE}")
        grey = _parse_numbers(values, f"{csv_path} row {row + 2} Image")
        if np.isnan(grey).any() or grey.min() < 0 or grey.max() > 255:
            raise KerakpError(f"{csv_path} row {row + 2}: Image pixels must be numbers from 0 to 255")
        pixels[row] = grey.reshape(KAGGLE_SIZE, KAGGLE_SIZE)
    if lacking:
        keypoints = np.full((len(frame), the_schema.num_points, 2), np.nan)
    else:
        keypoints = _rows_to_points(frame[["Image", *columns]], csv_path, missing=None)
    ids = frame["ImageId"].tolist() if "ImageId" in frame.columns else [str(i + 1) for i in range(len(frame))]
    names = [f"{i}.png" for i in ids]
    return LandmarkSet(the_schema, [csv_path.with_name(n) for n in names], keypoints, [f"row{i}" for i in ids],
                       None, str(csv_path), names, np.repeat(pixels[..., None], 3, axis=-1))


def read_aflw21(csv_path, schema: str | None = None) -> LandmarkSet:
    """Read AFLW 21 (partial labels: blank = not visible). Each face is its own person (a split by image); its crop
    box and its upright turn are those of the 3-D mean face fitted to its visible points (`kerakp.data.face3d`),
    since a profile's visible points alone make a narrow box and may lack an eye. A point outside its image is dropped, a face with fewer than two points that
    fit is skipped; both are counted in one warning."""
    import warnings

    from kerakp.data.face3d import fit_mean_face
    from kerakp.data.geometry import level_turn, points_box

    csv_path = Path(csv_path)
    frame = read_table(csv_path, numbers=True)
    the_schema = get_schema("aflw21")
    columns = ["file", "yaw"] + [f"{a}{i}" for i in range(1, 22) for a in "xy"]
    if list(frame.columns) != columns:
        raise KerakpError(f"{csv_path}: header must be file,yaw,x1,y1,...,x21,y21; got {','.join(frame.columns[:4])}...")
    yaws = _parse_numbers(frame["yaw"].tolist(), f"{csv_path} column yaw")
    keypoints = _rows_to_points(frame.drop(columns="yaw"), csv_path, missing=None)
    paths = [_check_image(csv_path.parent / name, f"{csv_path} row {i + 2}") for i, name in enumerate(frame["file"])]
    sizes = np.array([_image_size(p) for p in paths])                          # (N, 2) width, height
    outside = ((keypoints < 0) | (keypoints > sizes[:, None, :] - 1)).any(axis=-1)
    keypoints[outside] = np.nan
    fits = [fit_mean_face(k, the_schema, -yaw)[0] for k, yaw in zip(keypoints, yaws)]   # AFLW's yaw sign is kerakp's negated
    ibug = get_schema("ibug68")
    kept = [i for i, fit in enumerate(fits) if not np.isnan(fit).any()]
    if len(kept) < len(frame) or outside.any():
        warnings.warn(f"{csv_path}: {int(outside.sum())} points outside their image dropped, "
                      f"{len(frame) - len(kept)} faces with fewer than two usable points skipped", stacklevel=2)
    if not kept:
        raise KerakpError(f"{csv_path}: no face has two usable points")
    names = [str(frame["file"][i]) for i in kept]
    return LandmarkSet(the_schema, [paths[i] for i in kept], keypoints[kept], [Path(n).stem for n in names],
                       np.stack([points_box(fits[i]) for i in kept]), str(csv_path), names,
                       turns=np.array([level_turn(fits[i], ibug.norm) for i in kept]))


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        raise KerakpError(f"{path}: not a readable image") from None


def read_landmark_table(csv_path) -> tuple[list[str], np.ndarray, Schema]:
    """Names and (N, K, 2) points of a landmark CSV, reading no images: `kerakp predict` output
    (image[, face], found, detected, x0, y0, ...; unfound rows are NaN; a face after the first is named
    `image#face`), the YTF-68 layout, or the point CSV (-1 = missing)."""
    csv_path = Path(csv_path)
    frame = read_table(csv_path)
    missing = -1.0 if frame.columns[0] == "image_name" else None
    if "face" in frame.columns[:2]:
        frame.iloc[:, 0] = [name if face == "0" else f"{name}#{face}" for name, face in zip(frame.iloc[:, 0], frame["face"])]
    frame = frame.drop(columns=[c for c in ("face", "found", "detected") if c in frame.columns[:4]])
    if frame.shape[1] < 3 or (frame.shape[1] - 1) % 2:
        raise KerakpError(f"{csv_path}: expected an image column plus 2K coordinate columns, got {frame.shape[1]} columns")
    the_schema = schema_for_points((frame.shape[1] - 1) // 2)
    if len(frame) == 0:
        raise KerakpError(f"{csv_path}: no rows")
    return frame.iloc[:, 0].tolist(), _rows_to_points(frame, csv_path, missing), the_schema
