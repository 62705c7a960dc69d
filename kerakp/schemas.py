"""Landmark markups: point count, names, flip permutation and the indices other modules need.

Each markup is one `Schema`; `get_schema(name)` looks it up. Indices are 0-based and refer to the image
as seen (iBUG convention: point 36 is the outer corner of the eye on the image's left side).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kerakp.errors import KerakpError


@dataclass(frozen=True)
class Schema:
    """One markup's metainfo.

    `flip` is the permutation to apply after mirroring an image horizontally: `points[flip]` puts each
    mirrored point back under the index that names its side. `norm` is the pair of points whose distance
    normalises errors (outer eye corners; None for a single point, see `kerakp.metrics`). `parts` maps semantic names (for example `mouth_left`,
    `left_eye`) to point indices; modules that need a part look it up and fail clearly when it is absent.
    Part names follow the image: `left_*` is on the image's left. `names` are the markup's own point names
    (column names of its file format); markups whose points all have a part name in `canonical` can be
    made from any other markup that has those parts (`convert_points`). `derived` lists the groups of points
    whose means follow the markup's own points (`supervised`: a mixed training set's extra labels).
    """

    name: str
    num_points: int
    flip: tuple[int, ...]
    norm: tuple[int, int] | None
    parts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    canonical: tuple[str, ...] = ()
    derived: tuple[tuple[int, ...], ...] = ()

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
        "left_eye_inner": (39,),
        "right_eye_inner": (42,),
        "left_brow_outer": (17,),
        "left_brow_inner": (21,),
        "right_brow_inner": (22,),
        "right_brow_outer": (26,),
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
    return Schema("five", 5, _mirror_pairs(5, [(0, 1), (3, 4)]), (0, 1), parts, names, canonical=names)


def _imm58() -> Schema:
    """IMM 58 (Stegmann et al.): the .asf paths are jaw 0-12 (image left to right), the image-right eye
    13-20 and image-left eye 21-28 (each from its outer corner over the top), brows 29-33 (image right) and
    34-38 (image left, each from the inner end), mouth 39-46 (image-left corner, upper lip, image-right
    corner, lower lip) and nose 47-57 (an open path around it, 52 at its base below the tip)."""
    pairs = [(i, 12 - i) for i in range(6)]                      # jaw
    pairs += [(13 + i, 21 + i) for i in range(8)]                # eyes
    pairs += [(29 + i, 34 + i) for i in range(5)]                # brows
    pairs += [(39, 43), (40, 42), (44, 46)]                      # mouth
    pairs += [(47 + i, 57 - i) for i in range(5)]                # nose
    parts = {
        "jaw": tuple(range(0, 13)),
        "right_eye": tuple(range(13, 21)),
        "left_eye": tuple(range(21, 29)),
        "right_brow": tuple(range(29, 34)),
        "left_brow": tuple(range(34, 39)),
        "mouth": tuple(range(39, 47)),
        "nose": tuple(range(47, 58)),
        "right_eye_outer": (13,), "right_eye_inner": (17,), "left_eye_outer": (21,), "left_eye_inner": (25,),
        "right_brow_inner": (29,), "right_brow_outer": (33,), "left_brow_inner": (34,), "left_brow_outer": (38,),
        "mouth_left": (39,), "upper_lip_top": (41,), "mouth_right": (43,), "lower_lip_bottom": (45,),
        "nose_tip": (52,),
    }
    return Schema("imm58", 58, _mirror_pairs(58, pairs), (21, 13), parts)


def _kaggle15() -> Schema:
    """Kaggle Facial Keypoints: names are the competition's columns, where left/right are the subject's
    (its `left_eye_center` is on the image's right). Errors are normalised by the eye-centre distance
    (outer corners are missing in most rows)."""
    names = ("left_eye_center", "right_eye_center", "left_eye_inner_corner", "left_eye_outer_corner",
             "right_eye_inner_corner", "right_eye_outer_corner", "left_eyebrow_inner_end", "left_eyebrow_outer_end",
             "right_eyebrow_inner_end", "right_eyebrow_outer_end", "nose_tip", "mouth_left_corner",
             "mouth_right_corner", "mouth_center_top_lip", "mouth_center_bottom_lip")
    canonical = ("right_eye", "left_eye", "right_eye_inner", "right_eye_outer", "left_eye_inner", "left_eye_outer",
                 "right_brow_inner", "right_brow_outer", "left_brow_inner", "left_brow_outer", "nose_tip",
                 "mouth_right", "mouth_left", "upper_lip_top", "lower_lip_bottom")
    parts = {name: (i,) for i, name in enumerate(canonical)}
    flip = _mirror_pairs(15, [(0, 1), (2, 4), (3, 5), (6, 8), (7, 9), (11, 12)])
    return Schema("kaggle15", 15, flip, (1, 0), parts, names, canonical)


def _nose_tip() -> Schema:
    """One point, the nose tip (the IMM nose-tip task); trained on whole images (`face_box: image`)."""
    return Schema("nose_tip", 1, (0,), None, {"nose_tip": (0,)}, ("nose_tip",), canonical=("nose_tip",))


def _aflw21() -> Schema:
    """AFLW's 21 points (Koestinger et al. 2011), labelled only where visible (blank: hidden); "left" is the
    image's left. Errors are normalised by the crop side (AFLW's crops are the face), as the 3DDFA benchmarks do."""
    names = ("left_brow_outer", "left_brow_centre", "left_brow_inner", "right_brow_inner", "right_brow_centre",
             "right_brow_outer", "left_eye_outer", "left_eye_centre", "left_eye_inner", "right_eye_inner",
             "right_eye_centre", "right_eye_outer", "left_ear_lobe", "nose_left", "nose_tip", "nose_right",
             "right_ear_lobe", "mouth_left", "mouth_centre", "mouth_right", "chin")
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19)]
    parts = {name: (i,) for i, name in enumerate(names)}
    parts["left_eye"], parts["right_eye"] = (7,), (10,)
    return Schema("aflw21", 21, _mirror_pairs(21, pairs), None, parts, names)


SCHEMAS: dict[str, Schema] = {s.name: s for s in (_ibug68(), _imm58(), _kaggle15(), _five_point(), _nose_tip(), _aflw21())}

# How a partially labelled markup supervises a model of another: per source point, the target points whose mean
# it is (an empty tuple: no counterpart, it supervises nothing). The literature's mapping of AFLW 21 to iBUG 68.
CORRESPONDENCES: dict[tuple[str, str], tuple[tuple[int, ...], ...]] = {
    ("aflw21", "ibug68"): ((17,), (19,), (21,), (22,), (24,), (26,), (36,), tuple(range(36, 42)), (39,), (42,),
                           tuple(range(42, 48)), (45,), (), (31,), (30,), (35,), (), (48,), tuple(range(60, 68)),
                           (54,), (8,)),
}


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


def convert_points(points: np.ndarray, source: Schema, target: Schema) -> np.ndarray:
    """(..., K, 2) points of `source` as `target` points: each target point is the mean of the source part
    of the same name (an eye centre from the eye contour). NaN stays NaN."""
    if source.name == target.name:
        return np.asarray(points, dtype=np.float64)
    if not target.canonical:
        raise KerakpError(f"cannot convert to markup '{target.name}': its points cannot be made from other markups")
    missing = [n for n in target.canonical if n not in source.parts]
    if missing:
        raise KerakpError(f"cannot convert {source.name} to {target.name}: {source.name} has no {', '.join(missing)}")
    points = np.asarray(points, dtype=np.float64)
    return np.stack([points[..., list(source.parts[n]), :].mean(axis=-2) for n in target.canonical], axis=-2)


def correspondence(source: Schema, target: Schema) -> tuple[tuple[int, ...], ...]:
    """`CORRESPONDENCES` of a source markup onto a target; one line naming both when there is none."""
    try:
        return CORRESPONDENCES[source.name, target.name]
    except KeyError:
        known = ", ".join(f"{a} -> {b}" for a, b in CORRESPONDENCES) or "none"
        raise KerakpError(f"markup {source.name} has no correspondence to {target.name} (known: {known})") from None


def groups_of(sources, target: Schema) -> tuple[tuple[int, ...], ...]:
    """The target's derived points that `sources` markups supervise: each group of several target points
    whose mean a source point is (an eye centre), in a fixed order."""
    found = {group for source in sources if source.name != target.name
             for group in correspondence(source, target) if len(group) > 1}
    return tuple(sorted(found))


def supervised(target: Schema, groups: tuple[tuple[int, ...], ...]) -> Schema:
    """`target` with one more point per group (the group's mean), the markup a mixed training set is held in:
    its flip maps a group to its mirror group, so an augmented flip keeps every label under its name."""
    if not groups:
        return target
    index = {group: target.num_points + i for i, group in enumerate(groups)}
    flip = list(target.flip) + [index.get(tuple(sorted(target.flip[p] for p in g)), index[g]) for g in groups]
    return replace(target, num_points=target.num_points + len(groups), flip=tuple(flip), names=(), canonical=(),
                   derived=tuple(groups))


def with_derived(points: np.ndarray, groups) -> np.ndarray:
    """(..., K, 2) points followed by each group's mean point."""
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([points, *(points[..., list(g), :].mean(axis=-2, keepdims=True) for g in groups)], axis=-2)


def carry_points(points: np.ndarray, source: Schema, target: Schema, groups) -> np.ndarray:
    """(N, K_source, 2) labels as (N, K_target + len(groups), 2) labels of `supervised(target, groups)`: each
    source point lands on its one counterpart or its group's derived point; the rest stay NaN (unlabelled)."""
    points = np.asarray(points, dtype=np.float64)
    out = np.full((len(points), target.num_points + len(groups), 2), np.nan)
    if source.name == target.name:
        out[:, :target.num_points] = points
        return out
    slots = {g: target.num_points + i for i, g in enumerate(groups)}
    for i, group in enumerate(correspondence(source, target)):
        if group:
            out[:, group[0] if len(group) == 1 else slots[group]] = points[:, i]
    return out


def derive_points(points: np.ndarray, source: Schema, target: Schema) -> np.ndarray:
    """(..., K_source, 2) predictions of `source` read as `target` points through the correspondence of target
    onto source (the mean of each group; NaN where a target point has no counterpart): a 68-point model scored on
    AFLW 21's points."""
    points = np.asarray(points, dtype=np.float64)
    if source.name == target.name:
        return points
    groups = correspondence(target, source)
    nan = np.full(points.shape[:-2] + (2,), np.nan)
    return np.stack([points[..., list(g), :].mean(axis=-2) if g else nan for g in groups], axis=-2)
