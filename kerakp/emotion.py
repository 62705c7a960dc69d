"""Expression tags (positive / neutral / negative) from landmark geometry.

Features, in a face-aligned frame (rotated so the outer eye corners are level, so head roll does not
change them) and in units of the eye-corner distance s:
- w: mouth width, mouth corners' x distance / s;
- h: mouth opening, lower-lip bottom y minus upper-lip top y, / s;
- c: corner lift, mean corner y minus the inner upper lip's y, / s (negative when the corners rise;
  image y points down). Markups without an inner-lip point use the midpoint of the outer lip centres.

The default `EmotionRule` is the published one: positive if c < -0.015 and w > 0.7; negative if c > 0.02
or h > 0.32; else neutral. `fit_rule` calibrates its four thresholds on labelled faces.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import yaml

from kerakp.errors import KerakpError
from kerakp.schemas import Schema

TAGS = ("positive", "neutral", "negative")
LABEL_ALIASES = {"smile": "positive", "happy": "positive", "frown": "negative", "sad": "negative"}


@dataclass(frozen=True)
class EmotionRule:
    """Thresholds of the tag rule (defaults: the published values)."""

    positive_c_below: float = -0.015
    positive_w_above: float = 0.7
    negative_c_above: float = 0.02
    negative_h_above: float = 0.32

    def tag(self, features: np.ndarray) -> np.ndarray:
        """Tags for (N, 3) features (w, h, c); NaN features give an empty tag."""
        w, h, c = np.asarray(features, dtype=np.float64).T
        tags = np.full(len(w), "neutral", dtype=object)
        tags[(c > self.negative_c_above) | (h > self.negative_h_above)] = "negative"
        tags[(c < self.positive_c_below) & (w > self.positive_w_above)] = "positive"
        tags[np.isnan(features).any(axis=1)] = ""
        return tags

    def to_dict(self) -> dict:
        return asdict(self)


def load_rule(path=None) -> EmotionRule:
    """The rule from a YAML file of `EmotionRule` keys (all optional; `EmotionRule`'s defaults are the
    published rule), or kerakp's fitted default (kerakp/recipes/emotion.yaml)."""
    if path is None:
        from importlib import resources

        path = resources.files("kerakp") / "recipes" / "emotion.yaml"
    path = Path(str(path))
    if not path.is_file():
        raise KerakpError(f"{path}: emotion config not found")
    values = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in fields(EmotionRule)}
    if not isinstance(values, dict) or set(values) - known:
        raise KerakpError(f"{path}: expected keys among {', '.join(sorted(known))}")
    try:
        return EmotionRule(**{k: float(v) for k, v in values.items()})
    except (TypeError, ValueError):
        raise KerakpError(f"{path}: thresholds must be numbers") from None


def mouth_points(schema: Schema) -> dict[str, int]:
    """The indices the features need; a clear error naming what this markup lacks."""
    names = ("left_eye_outer", "right_eye_outer", "mouth_left", "mouth_right", "upper_lip_top", "lower_lip_bottom")
    missing = [n for n in names if n not in schema.parts]
    if missing:
        raise KerakpError(f"markup '{schema.name}' cannot be tagged: it has no {', '.join(missing)} points")
    points = {n: schema.point(n) for n in names}
    if "upper_lip_inner" in schema.parts:
        points["upper_lip_inner"] = schema.point("upper_lip_inner")
    return points


def features(points: np.ndarray, schema: Schema, aligned: bool = True) -> np.ndarray:
    """(N, 3) features w, h, c of (N, K, 2) landmarks in pixels, in the eye-aligned frame (or, with
    `aligned=False`, in the image frame as the published rule computed them)."""
    idx = mouth_points(schema)
    points = np.asarray(points, dtype=np.float64)
    eye_line = points[:, idx["right_eye_outer"]] - points[:, idx["left_eye_outer"]]
    s = np.linalg.norm(eye_line, axis=-1)
    cos, sin = (eye_line / s[:, None]).T if aligned else (np.ones_like(s), np.zeros_like(s))
    rotation = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)  # undoes the roll
    aligned = np.einsum("nij,nkj->nki", rotation, points)
    x, y = aligned[..., 0], aligned[..., 1]
    rows = np.arange(len(points))
    lip_ref = (y[:, idx["upper_lip_inner"]] if "upper_lip_inner" in idx
               else (y[:, idx["upper_lip_top"]] + y[:, idx["lower_lip_bottom"]]) / 2)
    w = (x[rows, idx["mouth_right"]] - x[rows, idx["mouth_left"]]) / s
    h = (y[rows, idx["lower_lip_bottom"]] - y[rows, idx["upper_lip_top"]]) / s
    c = ((y[rows, idx["mouth_left"]] + y[rows, idx["mouth_right"]]) / 2 - lip_ref) / s
    return np.stack([w, h, c], axis=1)


def normalise_labels(labels) -> np.ndarray:
    """Map label words (smile, frown, ...) onto TAGS; a clear error for any other word."""
    out = np.array([LABEL_ALIASES.get(str(v).strip().lower(), str(v).strip().lower()) for v in labels], dtype=object)
    unknown = sorted(set(out) - set(TAGS))
    if unknown:
        raise KerakpError(f"unknown expression labels {unknown} (known: {', '.join(TAGS)}, {', '.join(LABEL_ALIASES)})")
    return out


def confusion(truth, predicted) -> dict[str, dict[str, int]]:
    """counts[true tag][predicted tag]."""
    return {t: {p: int(np.sum((np.asarray(truth) == t) & (np.asarray(predicted) == p))) for p in TAGS} for t in TAGS}


def accuracy(truth, predicted) -> float:
    return float(np.mean(np.asarray(truth) == np.asarray(predicted)))


def _candidates(values: np.ndarray, steps: int) -> np.ndarray:
    """Thresholds midway between consecutive quantiles, so a fitted threshold keeps a margin on both sides."""
    marks = np.unique(np.quantile(values, np.linspace(0, 1, steps + 1)))
    return (marks[:-1] + marks[1:]) / 2 if len(marks) > 1 else marks


def fit_rule(feats: np.ndarray, labels, steps: int = 32) -> EmotionRule:
    """Thresholds maximising accuracy on labelled features: a grid search over each feature's quantiles, then
    each threshold moved to the middle of the range of values that score as well (the widest margin)."""
    labels = np.asarray(labels)
    w, h, c = feats.T
    grids = {"positive_c_below": _candidates(c, steps), "positive_w_above": _candidates(w, steps),
             "negative_c_above": _candidates(c, steps), "negative_h_above": np.append(_candidates(h, steps), 2 * h.max())}
    is_pos, is_neg, is_neu = labels == "positive", labels == "negative", labels == "neutral"
    best, best_score = EmotionRule(), -1.0
    c_grid, w_grid = grids["positive_c_below"], grids["positive_w_above"]
    positive = (c[None, None, :] < c_grid[:, None, None]) & (w[None, None, :] > w_grid[None, :, None])  # (C, W, N)
    for nc in grids["negative_c_above"]:
        for nh in grids["negative_h_above"]:
            negative = (c > nc) | (h > nh)
            correct = (positive & is_pos) | (~positive & negative & is_neg) | (~positive & ~negative & is_neu)
            scores = correct.mean(axis=-1)
            i, j = np.unravel_index(np.argmax(scores), scores.shape)
            if scores[i, j] > best_score:
                best_score = scores[i, j]
                best = EmotionRule(float(c_grid[i]), float(w_grid[j]), float(nc), float(nh))
    for name, grid in grids.items():
        ties = np.array([accuracy(labels, replace(best, **{name: float(v)}).tag(feats)) >= best_score for v in grid])
        lo = hi = int(np.flatnonzero(grid == getattr(best, name))[0])
        while lo > 0 and ties[lo - 1]:
            lo -= 1
        while hi < len(grid) - 1 and ties[hi + 1]:
            hi += 1
        best = replace(best, **{name: float(grid[lo] + grid[hi]) / 2})
    return best


def tag_table(names: list[str], points: np.ndarray, schema: Schema, rule: EmotionRule | None = None):
    """A table image, tag, w, h, c (and, for iBUG 68, the eyes' aspect ratios and the mouth's openness:
    left_eye, right_eye, mouth_open) for the faces' (N, K, 2) points; a face of NaN points gets an empty tag."""
    import pandas as pd

    from kerakp.analysis import openness

    feats = features(points, schema) if len(points) else np.empty((0, 3))
    table = pd.DataFrame({"image": names, "tag": (rule or EmotionRule()).tag(feats),
                          "w": feats[:, 0], "h": feats[:, 1], "c": feats[:, 2]})
    if schema.name == "ibug68":
        with np.errstate(invalid="ignore", divide="ignore"):
            opened = [openness(p, schema) for p in points]
        for column, key in (("left_eye", "left_eye"), ("right_eye", "right_eye"), ("mouth_open", "mouth")):
            table[column] = [o[key] for o in opened]
    return table.round(4)


def landmark_features(landmarks) -> tuple[list[str], np.ndarray]:
    """Image names and (N, 3) features of a landmark CSV (`kerakp predict` output or ground truth)."""
    from kerakp.data.readers import read_landmark_table

    names, points, schema = read_landmark_table(landmarks)
    return names, features(points, schema)


def tag_landmarks(landmarks, rule: EmotionRule | None = None, out=None, overwrite: bool = False):
    """`tag_table` of a landmark CSV (`kerakp predict` output or ground truth), also written to `out` when given
    (an existing file only with `overwrite`)."""
    from kerakp.data.readers import read_landmark_table
    from kerakp.io import refuse_existing, write_csv

    if out is not None:
        refuse_existing(out, overwrite)
    table = tag_table(*read_landmark_table(landmarks), rule)
    if out is not None:
        write_csv(table, out)
    return table


def calibrate(landmarks, labels_path, start: EmotionRule, out=None, overwrite: bool = False) -> tuple[EmotionRule, dict]:
    """Fit the rule's thresholds on labelled faces: the landmark CSV and a labels CSV (an image column and a
    label, expression or tag column). Returns the fitted rule (also written to `out` when given: an existing file
    only with `overwrite`) and, for `before` (`start`) and `after`, the accuracy and confusion counts on these
    faces."""
    from kerakp.data.readers import read_table
    from kerakp.io import refuse_existing

    if out is not None:
        refuse_existing(out, overwrite)
    names, feats = landmark_features(landmarks)
    table = read_table(labels_path)
    column = next((c for c in ("label", "expression", "tag") if c in table.columns), None)
    image_column = next((c for c in ("image", "image_name") if c in table.columns), table.columns[0])
    if column is None:
        raise KerakpError(f"{labels_path}: needs a 'label' or 'expression' column")
    labels = dict(zip(table[image_column], table[column]))
    known = [i for i, name in enumerate(names) if name in labels and not np.isnan(feats[i]).any()]
    if len(known) < 10:
        raise KerakpError(f"{labels_path}: only {len(known)} labelled faces match {landmarks}; need at least 10")
    truth, feats = normalise_labels([labels[names[i]] for i in known]), feats[known]
    after = fit_rule(feats, truth)
    report = {title: {"faces": len(known), "accuracy": accuracy(truth, rule.tag(feats)), "confusion": confusion(truth, rule.tag(feats))}
              for title, rule in (("before", start), ("after", after))}
    if out is not None:
        save_rule(after, out, f"fitted by kerakp emotion calibrate on {landmarks} with {labels_path}")
    return after, report


def save_rule(rule: EmotionRule, path, note: str = "") -> Path:
    """Write a rule's thresholds as YAML (atomically), under a comment line."""
    from kerakp.io import write_text

    return write_text(path, (f"# {note}\n" if note else "") + yaml.safe_dump({k: round(v, 4) for k, v in rule.to_dict().items()}, sort_keys=False))


class TagSmoother:
    """Majority vote over the last `window` tags of a video; a tie keeps the tag shown before."""

    def __init__(self, window: int = 15):
        self.recent: deque[str] = deque(maxlen=max(1, window))
        self.current = ""

    def update(self, tag: str) -> str:
        if tag:
            self.recent.append(tag)
        counts = Counter(self.recent).most_common()
        if counts and (counts[0][0] == self.current or len(counts) == 1 or counts[0][1] > counts[1][1]):
            self.current = counts[0][0]
        return self.current
