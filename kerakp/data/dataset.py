"""The data model: a `LandmarkSet` (images with keypoints in original pixels and a person per image), joins of
sets, and the split of a set by person that validation and every model's recorded split use."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.data.geometry import level_turn, points_box
from kerakp.data.images import read_image
from kerakp.errors import KerakpError
from kerakp.schemas import CORRESPONDENCES, Schema, carry_points, convert_points, groups_of, supervised


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
    of the keypoints' own box (for faces that fill the image and have missing points); `turns` (N,), when set,
    the degrees an upright crop turns a face whose labels cannot level it (partial labels: the fitted mean face's)."""

    schema: Schema
    paths: list[Path]
    keypoints: np.ndarray
    persons: list[str]
    boxes: np.ndarray | None = None
    source: str = ""
    names: list[str] = field(default_factory=list)
    pixels: np.ndarray | ImageRows | None = None
    turns: np.ndarray | None = None

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

    def crop_turn(self, index: int) -> float:
        """Degrees that turn the face's crop level (`upright`): by its labelled normalising pair (the outer eye
        corners), else by `turns`, else none."""
        pair = self.schema.norm
        if pair and not np.isnan(self.keypoints[index][list(pair)]).any():
            return level_turn(self.keypoints[index], pair)
        return float(self.turns[index]) if self.turns is not None and np.isfinite(self.turns[index]) else 0.0

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
            None if self.turns is None else self.turns[indices],
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
        None if all(s.turns is None for s in sets) else
        np.concatenate([s.turns if s.turns is not None else np.full(len(s), np.nan) for s in sets]),
    )


def supervising(sets: list[LandmarkSet], target: Schema) -> list[LandmarkSet]:
    """Sets of `target`'s markup and of markups with a correspondence to it (`kerakp.schemas.CORRESPONDENCES`),
    each held in `supervised(target, groups)` so they join: a 68-point model trains on AFLW 21 this way."""
    groups = groups_of([s.schema for s in sets], target)
    if not groups and all(s.schema.name == target.name for s in sets):
        return sets
    markup = supervised(target, groups)
    return [replace(s, schema=markup, keypoints=carry_points(s.keypoints, s.schema, target, groups)) for s in sets]


def can_supervise(source: Schema, target: Schema) -> bool:
    """Whether a set of `source` trains a `target` model as it is (the same markup, or a correspondence)."""
    return source.name == target.name or (source.name, target.name) in CORRESPONDENCES


def person_of(file_name: str) -> str:
    """Person id from a file name: `Luis_Fonsi_21.jpg` -> `Luis_Fonsi`, `helen_232194_1.jpg` -> `helen_232194`."""
    stem = Path(file_name).stem
    return re.sub(r"_\d+$", "", stem) or stem


def photo_of(file_name: str) -> str:
    """Source photo of a 300-W face: `helen_232194_1.jpg` -> `helen_232194`; `lfpw_image_0262.jpg` stays whole."""
    stem = Path(file_name).stem
    return re.sub(r"(?<=\d)_\d+$", "", stem)


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
