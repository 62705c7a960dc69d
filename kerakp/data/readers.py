"""Readers for labelled face sets. Each returns a `LandmarkSet` in original-image pixels (NaN = missing).

Supported layouts (`load_dataset` detects which from the path):
- `ytf68`: a CSV whose first column (empty header) names an image and whose next 2K columns are
  x0, y0, ..., x{K-1}, y{K-1}; images beside it or in a folder named after the CSV's prefix.
- `pts`: a folder of image + `.pts` pairs (300-W), 1-based coordinates.
- `csv`: `image_name,point_1_x,point_1_y,...` (the 5-point seed format; -1 marks a missing value).
- `asf`: a folder of image + `.asf` pairs (IMM 58), coordinates relative to the image size.
- `kaggle`: the Kaggle Facial Keypoints CSV: 30 named coordinate columns (empty = missing) and an `Image`
  column of 96 x 96 grayscale pixels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.data.geometry import points_box
from kerakp.errors import KerakpError
from kerakp.quiet import native_stderr_silenced
from kerakp.schemas import Schema, convert_points, get_schema, schema_for_points

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ImageRows:
    """Images stored as rows of arrays (in memory, or read from a file as needed), read one at a time: a subset or a
    join keeps references to the rows, never copies of the pixels, so a packed set larger than memory
    trains in bounded memory."""

    def __init__(self, parts: list[np.ndarray], rows: np.ndarray | None = None):
        self.parts = parts
        self.rows = rows if rows is not None else np.stack(
            [np.zeros(len(parts[0]), int), np.arange(len(parts[0]))], axis=1) if len(parts) == 1 else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            part, row = self.rows[key]
            return np.array(self.parts[part][row])            # a writable copy of its own (a pack's rows are read-only bytes)
        return ImageRows(self.parts, self.rows[np.asarray(key, dtype=int)])

    @staticmethod
    def join(items: list) -> "ImageRows":
        parts, rows = [], []
        for item in items:
            item = item if isinstance(item, ImageRows) else ImageRows([np.asarray(item)])
            rows.append(item.rows + [len(parts), 0])
            parts += item.parts
        return ImageRows(parts, np.concatenate(rows))


@dataclass
class LandmarkSet:
    """Images with keypoints (N, K, 2) in original pixels and a person id per image.

    Images are files (`paths`) or, for formats that embed them, decoded RGB arrays (`pixels`, with `paths`
    naming where each came from). `boxes` (N, 4), when set, are the landmark boxes to crop around instead
    of the keypoints' own box (for faces that fill the image and have missing points)."""

    schema: Schema
    paths: list[Path]
    keypoints: np.ndarray
    persons: list[str]
    boxes: np.ndarray | None = None
    source: str = ""
    names: list[str] = field(default_factory=list)
    pixels: np.ndarray | ImageRows | None = None

    def __post_init__(self):
        if not self.names:
            self.names = [p.name for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The RGB image of one face."""
        return read_image(self.paths[index]) if self.pixels is None else self.pixels[index]

    def as_markup(self, target: Schema) -> "LandmarkSet":
        """The same faces with their points converted to another markup (`convert_points`)."""
        if target.name == self.schema.name:
            return self
        return replace(self, schema=target, keypoints=convert_points(self.keypoints, self.schema, target))

    def crop_box(self, index: int) -> np.ndarray | None:
        """The landmark box a training crop is centred on."""
        return points_box(self.keypoints[index]) if self.boxes is None else self.boxes[index]

    def subset(self, indices) -> "LandmarkSet":
        indices = list(indices)
        return LandmarkSet(
            self.schema,
            [self.paths[i] for i in indices],
            self.keypoints[indices],
            [self.persons[i] for i in indices],
            None if self.boxes is None else self.boxes[indices],
            self.source,
            [self.names[i] for i in indices],
            None if self.pixels is None else self.pixels[indices],
        )


def join_sets(sets: list[LandmarkSet]) -> LandmarkSet:
    """Sets of one markup as one: images from files or embedded pixels, not a mix; each face keeps its crop box."""
    first = sets[0]
    if len({s.schema.name for s in sets}) > 1:
        raise KerakpError(f"cannot join markups {', '.join(sorted({s.schema.name for s in sets}))}")
    embedded = {s.pixels is not None for s in sets}
    if len(embedded) > 1:
        raise KerakpError("cannot join sets with embedded images to sets of image files")
    if len(sets) == 1:
        return first
    boxes = None if all(s.boxes is None for s in sets) else np.stack([s.crop_box(i) for s in sets for i in range(len(s))])
    return LandmarkSet(
        first.schema,
        [p for s in sets for p in s.paths],
        np.concatenate([s.keypoints for s in sets]),
        [f"{s.source}:{person}" for s in sets for person in s.persons],
        boxes,
        " + ".join(s.source for s in sets),
        [n for s in sets for n in s.names],
        (ImageRows.join([s.pixels for s in sets]) if any(isinstance(s.pixels, ImageRows) for s in sets)
         else np.concatenate([s.pixels for s in sets])) if embedded == {True} else None,
    )


def person_of(file_name: str) -> str:
    """Person id from a file name: `Luis_Fonsi_21.jpg` -> `Luis_Fonsi`, `helen_232194_1.jpg` -> `helen_232194`."""
    stem = Path(file_name).stem
    return re.sub(r"_\d+$", "", stem) or stem


def photo_of(file_name: str) -> str:
    """Source photo of a 300-W face: `helen_232194_1.jpg` -> `helen_232194`; `lfpw_image_0262.jpg` stays whole."""
    stem = Path(file_name).stem
    return re.sub(r"(?<=\d)_\d+$", "", stem)


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


def detect_format(path: Path) -> tuple[str, Path]:
    """Guess the layout of a data path; returns (format, the file or folder to read)."""
    if path.is_dir():
        if (path / "pack.json").is_file():
            return "pack", path
        if any(path.glob("*.pts")):
            return "pts", path
        if any(path.glob("*.asf")):
            return "asf", path
        csvs = sorted(path.glob("*.csv"))
        if len(csvs) == 1:
            return detect_format(csvs[0])
        keypoint_csvs = [c for c in csvs if "keypoints" in c.name or c.name == "landmarks.csv"]
        if len(keypoint_csvs) == 1:
            return detect_format(keypoint_csvs[0])
        raise KerakpError(f"{path}: cannot tell the data format (no .pts files, {len(csvs)} CSV files); pass --format")
    if path.suffix.lower() == ".csv":
        with open(path, errors="replace") as handle:
            first = handle.readline(1 << 16)
        if first.startswith("image_name"):
            return "csv", path
        return ("kaggle" if "Image" in first.strip().split(",") else "ytf68"), path
    raise KerakpError(f"{path}: unknown data format (expected a CSV file or a folder of .pts or .asf files)")


def read_packed(folder, schema: str | None = None) -> LandmarkSet:
    """A packed set (`kerakp.data.pack`)."""
    from kerakp.data.pack import read_pack

    return read_pack(folder, schema)


READERS = {"ytf68": read_ytf68, "pts": read_pts_folder, "csv": read_point_csv, "asf": read_asf_folder,
           "kaggle": read_kaggle, "pack": read_packed}   # the data formats (kerakp.data.writers writes all but pack)
FORMATS = ("auto", *READERS)


def load_dataset(path, format: str = "auto", schema: str | None = None) -> LandmarkSet:
    """Read a labelled set in any supported layout."""
    path = Path(path)
    if not path.exists():
        raise KerakpError(f"{path}: no such file or folder")
    if format not in FORMATS:
        raise KerakpError(f"unknown data format '{format}' (known: {', '.join(FORMATS)})")
    if format == "auto":
        format, path = detect_format(path)
    elif path.is_dir() and format not in ("pts", "asf", "pack"):
        format, path = format, detect_format(path)[1]
    return READERS[format](path, schema=schema)


def read_image(path) -> np.ndarray:
    """Decode an image file as RGB uint8; a clear error for a missing or corrupt file."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise KerakpError(f"{path}: image not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        with native_stderr_silenced():   # libjpeg's own complaints about damaged files
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:   # OpenCV asserts on some malformed headers instead of returning None
        image = None
    if image is None or image.size == 0:
        raise KerakpError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_files(paths) -> list[tuple[str, Path]]:
    """(name, path) of every image in `paths` (files, or folders searched recursively with names relative to
    the folder), in order; one line for a path that does not exist or a search that finds no image."""
    items = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            items += [(str(p.relative_to(path)), p) for p in found]
        elif path.is_file():
            items.append((str(path), path))
        else:
            raise KerakpError(f"{path}: no such image or folder")
    if not items:
        raise KerakpError("no images found in " + ", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths)))
    return items


def model_subset(data: LandmarkSet, split: dict, subset: str) -> LandmarkSet:
    """The part of `data` a model held out for validation (`val`), trained on (`train`), or `all`, by the
    person split recorded with the model (`ModelInfo.split`)."""
    if subset == "all":
        return data
    if subset not in ("val", "train"):
        raise KerakpError(f"unknown subset '{subset}' (known: all, val, train)")
    if not split:
        raise KerakpError("this model records no validation split; use --subset all")
    train_idx, val_idx = split_by_person(data, split["val_fraction"], split["seed"])
    chosen = val_idx if subset == "val" else train_idx
    if not chosen:
        raise KerakpError(f"the '{subset}' subset of this data is empty")
    return data.subset(chosen)


def split_by_person(data: LandmarkSet, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Training and validation indices with no person in both; deterministic for (fraction, seed)."""
    persons = sorted(set(data.persons))
    if val_fraction <= 0 or len(persons) < 2:
        return list(range(len(data))), []
    order = np.random.default_rng(seed).permutation(len(persons))
    wanted, chosen, count = val_fraction * len(data), set(), 0
    per_person = pd.Series(data.persons).value_counts()
    for i in order:
        if count >= wanted or len(chosen) == len(persons) - 1:
            break
        chosen.add(persons[i])
        count += per_person[persons[i]]
    val = [i for i, p in enumerate(data.persons) if p in chosen]
    train = [i for i, p in enumerate(data.persons) if p not in chosen]
    return train, val
