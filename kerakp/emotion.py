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
    """The rule from a YAML file of `EmotionRule` keys (all optional), or the published default."""
    if path is None:
        return EmotionRule()
    path = Path(path)
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
