"""Packed training sets: every face as a fixed-size crop around its landmarks, in one file.

`kerakp pack DATA OUT --size N` writes `OUT/images.npy` (N faces x size x size x 3, uint8; with `--quality Q`,
JPEG-encoded instead: `OUT/images.jpg.bin` and its offsets, a few times smaller, decoded as read),
`OUT/keypoints.npy` (their points in crop pixels) and `OUT/pack.json` (markup, names, persons, where they came
from, the crop's context). `load_dataset(OUT)` reads it back like any set, with the same persons (so the same
validation split) and markup; images are read from the file one at a time (`PackedImages` in `ImageRows`), so
a set of any size trains in the memory of its decode cache. A crop `context` times the landmark box's side leaves room for the recipe's
augmentation: pick `size` at least the input size times context / crop_scale (192 px, 2.0, 1.25: 308).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kerakp.data.dataset import ImageRows, LandmarkSet
from kerakp.data.geometry import box_crop_matrix, transform_points, warp
from kerakp.errors import KerakpError
from kerakp.schemas import get_schema

MANIFEST = "pack.json"


class PackedImages:
    """The images of a pack, read from its file one at a time (positioned reads, not a memory map, so the
    pages read do not stay in the process's memory): raw rows of `images.npy`, or JPEG bytes of
    `images.jpg.bin` between `offsets`, decoded to RGB."""

    def __init__(self, path: Path, count: int, shape: tuple = (), start: int = 0, offsets: np.ndarray | None = None):
        self.path, self.count, self.shape, self.start, self.offsets = path, count, shape, start, offsets
        self.file = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row: int) -> np.ndarray:
        if self.file is None:            # opened lazily: a data worker process opens its own
            self.file = os.open(self.path, os.O_RDONLY)
        if self.offsets is None:
            size = int(np.prod(self.shape))
            return np.frombuffer(os.pread(self.file, size, self.start + row * size), np.uint8).reshape(self.shape)
        begin, end = int(self.offsets[row]), int(self.offsets[row + 1])
        encoded = np.frombuffer(os.pread(self.file, end - begin, begin), np.uint8)
        return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def __getstate__(self):              # a data worker process opens the file itself
        return {**self.__dict__, "file": None}

    def __del__(self):
        if getattr(self, "file", None) is not None:
            os.close(self.file)


def write_pack(data: LandmarkSet, out, size: int, context: float = 2.0, quality: int | None = None,
               progress: bool = True, overwrite: bool = False) -> Path:
    """Write `data` packed into the folder `out` (whole, or not at all; JPEG at `quality` if given); returns
    the folder."""
    from kerakp.io import refuse_existing, replacing

    if size < 16 or context <= 0:
        raise KerakpError("--size must be at least 16 pixels and --context positive")
    out = Path(out)
    refuse_existing(out, overwrite)
    with replacing(out, folder=True) as staging:
        raw = None if quality else np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8,
                                                             shape=(len(data), size, size, 3))
        offsets, encoded = [0], open(staging / "images.jpg.bin", "wb") if quality else None
        points = np.empty(data.keypoints.shape, np.float32)
        for i in tqdm(range(len(data)), desc="packing", unit="img", disable=None if progress else True):
            box = data.crop_box(i)
            if box is None:
                raise KerakpError(f"{data.names[i]}: no labelled points to crop around")
            matrix = box_crop_matrix(box, context, size)
            crop = warp(data.image(i), matrix, size)
            if quality:
                jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
                encoded.write(jpeg.tobytes())
                offsets.append(offsets[-1] + len(jpeg))
            else:
                raw[i] = crop
            points[i] = transform_points(matrix, data.keypoints[i])
        if quality:
            encoded.close()
            np.save(staging / "offsets.npy", np.array(offsets, np.int64))
        else:
            raw.flush()
            del raw
        np.save(staging / "keypoints.npy", points)
        manifest = {"format": "kerakp pack 1", "markup": data.schema.name, "size": size, "context": context,
                    "quality": quality, "source": data.source, "names": data.names, "persons": data.persons}
        (staging / MANIFEST).write_text(json.dumps(manifest))
    return out


def read_pack(folder, schema: str | None = None) -> LandmarkSet:
    """A packed set (`write_pack`), its images read from the file one at a time (`PackedImages`)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("quality"):
            offsets = np.load(folder / "offsets.npy")
            images = PackedImages(folder / "images.jpg.bin", len(offsets) - 1, offsets=offsets)
        else:
            header = np.load(folder / "images.npy", mmap_mode="r")      # only for its shape and data offset
            images = PackedImages(folder / "images.npy", len(header), header.shape[1:], header.offset)
            del header
        points = np.load(folder / "keypoints.npy").astype(np.float64)
        names, persons = manifest["names"], manifest["persons"]
    except (OSError, ValueError, KeyError) as err:
        raise KerakpError(f"{folder}: not a readable kerakp pack ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not len(names) == len(persons) == len(images) == len(points):
        raise KerakpError(f"{folder}: its files disagree on the number of faces")
    markup = get_schema(schema or manifest["markup"])
    return LandmarkSet(markup, [folder / name for name in names], points, list(persons), source=str(folder),
                       names=list(names), pixels=ImageRows([images]))
