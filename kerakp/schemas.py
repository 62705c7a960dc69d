"""Landmark markups: point count, names, flip permutation and the indices other modules need.

Each markup is one `Schema`; `get_schema(name)` looks it up. Indices are 0-based and refer to the image
as seen (iBUG convention: point 36 is the outer corner of the eye on the image's left side).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kerakp.errors import KerakpError


@dataclass(frozen=True)
class Schema:
    """One markup's metainfo.

    `flip` is the permutation to apply after mirroring an image horizontally: `points[flip]` puts each
    mirrored point back under the index that names its side. `norm` is the pair of points whose distance
    normalises errors (outer eye corners). `parts` maps semantic names (for example `mouth_left`,
    `left_eye`) to point indices; modules that need a part look it up and fail clearly when it is absent.
    """

    name: str
    num_points: int
    flip: tuple[int, ...]
    norm: tuple[int, int]
    parts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    names: tuple[str, ...] = ()

    def __post_init__(self):
        if sorted(self.flip) != list(range(self.num_points)):
            raise ValueError(f"schema {self.name}: flip is not a permutation of {self.num_points} points")
        if self.names and len(self.names) != self.num_points:
            raise ValueError(f"schema {self.name}: {len(self.names)} names for {self.num_points} points")

    def part(self, name: str) -> tuple[int, ...]:
        """Indices of a named part; a clear error if this markup does not have it."""
        if name not in self.parts:
            raise KerakpError(f"markup '{self.name}' has no '{name}' points (has: {', '.join(self.parts)})")
        return self.parts[name]

    def point(self, name: str) -> int:
        """Index of a single named point (a part of length one)."""
        (index,) = self.part(name)
        return index

    def flip_points(self, points: np.ndarray, width: float) -> np.ndarray:
        """Mirror (..., K, 2) pixel coordinates of an image `width` pixels wide and re-index by `flip`."""
        mirrored = np.array(points, dtype=np.float64, copy=True)
        mirrored[..., 0] = width - 1 - mirrored[..., 0]
        return mirrored[..., list(self.flip), :]


def _mirror_pairs(num_points: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _ibug68() -> Schema:
    pairs = [(i, 16 - i) for i in range(8)]                      # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                # brows
    pairs += [(31, 35), (32, 34)]                                # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips
    pairs += [(60, 64), (61, 63), (67, 65)]                      # inner lips
    parts = {
        "jaw": tuple(range(0, 17)),
        "left_brow": tuple(range(17, 22)),
        "right_brow": tuple(range(22, 27)),
        "nose_bridge": tuple(range(27, 31)),
        "nose_lower": tuple(range(31, 36)),
        "left_eye": tuple(range(36, 42)),
        "right_eye": tuple(range(42, 48)),
        "outer_lips": tuple(range(48, 60)),
        "inner_lips": tuple(range(60, 68)),
        "left_eye_outer": (36,),
        "right_eye_outer": (45,),
        "nose_tip": (30,),
        "mouth_left": (48,),
        "mouth_right": (54,),
        "upper_lip_top": (51,),
        "lower_lip_bottom": (57,),
        "upper_lip_inner": (62,),
        "lower_lip_inner": (66,),
    }
    return Schema("ibug68", 68, _mirror_pairs(68, pairs), (36, 45), parts)


def _five_point() -> Schema:
    names = ("left_eye_outer", "right_eye_outer", "nose_tip", "mouth_left", "mouth_right")
    parts = {name: (i,) for i, name in enumerate(names)}
    parts.update(left_eye=(0,), right_eye=(1,))
    return Schema("five", 5, _mirror_pairs(5, [(0, 1), (3, 4)]), (0, 1), parts, names)


SCHEMAS: dict[str, Schema] = {s.name: s for s in (_ibug68(), _five_point())}


def get_schema(name: str) -> Schema:
    """Look up a markup by name; a clear error names the known ones."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KerakpError(f"unknown markup '{name}' (known: {', '.join(SCHEMAS)})") from None


def schema_for_points(num_points: int) -> Schema:
    """The registered markup with this many points (for files that do not name their markup)."""
    matches = [s for s in SCHEMAS.values() if s.num_points == num_points]
    if len(matches) != 1:
        raise KerakpError(f"no single known markup has {num_points} points")
    return matches[0]
