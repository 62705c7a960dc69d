"""Landmark accuracy metrics on (N, K, 2) predictions and ground truth in original pixels (NaN = missing).

NME: mean point-to-point error of an image over the distance of the markup's normalising pair (outer eye
corners); a markup without one (a single point) divides by a per-image `scale` instead (the face crop's side). CED: fraction of images with NME <= x. AUC@t: area under the CED on [0, t] divided by t,
which equals the mean of max(0, 1 - NME / t). Failure rate@t: fraction of images with NME > t.
"""
from __future__ import annotations

import numpy as np

from kerakp.errors import KerakpError
from kerakp.schemas import Schema


def point_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Euclidean error per point (N, K); NaN where the truth is missing."""
    return np.linalg.norm(pred - truth, axis=-1)


def normalisers(truth: np.ndarray, schema: Schema, scale=None) -> np.ndarray:
    if schema.norm is None:
        if scale is None:
            raise KerakpError(f"markup '{schema.name}' has no normalising pair; its NME needs a scale per image")
        return np.broadcast_to(np.asarray(scale, dtype=np.float64), truth.shape[:1])
    a, b = schema.norm
    return np.linalg.norm(truth[:, a] - truth[:, b], axis=-1)


def per_image_nme(pred: np.ndarray, truth: np.ndarray, schema: Schema, scale=None) -> np.ndarray:
    return np.nanmean(point_errors(pred, truth), axis=1) / normalisers(truth, schema, scale)


def box_nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image: the mean point error over the square root of the true points' box area (the wide-pose
    literature's measure: it stays defined on a profile, where the outer eye corners meet)."""
    side = np.nanmax(truth, axis=1) - np.nanmin(truth, axis=1)
    return np.nanmean(point_errors(pred, truth), axis=1) / np.sqrt(side[:, 0] * side[:, 1])


def auc(nme: np.ndarray, limit: float) -> float:
    return float(np.mean(np.clip(1.0 - nme / limit, 0.0, None)))


def ced_curve(nme: np.ndarray, limit: float, steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0, limit, steps + 1)
    return x, (nme[None, :] <= x[:, None]).mean(axis=1)


def summarize(pred: np.ndarray, truth: np.ndarray, schema: Schema, scale=None) -> dict:
    """All the headline metrics of a set of predictions."""
    errors = point_errors(pred, truth)
    norm = normalisers(truth, schema, scale)
    nme = np.nanmean(errors, axis=1) / norm
    relative = errors / norm[:, None]
    diffs = (pred - truth)[~np.isnan(truth) & ~np.isnan(pred)]   # a labelled point the model has no counterpart of: unscored
    labelled = relative[~np.isnan(relative)]
    return {
        "images": int(len(nme)),
        "nme": float(np.mean(nme)),
        "nme_median": float(np.median(nme)),
        "mae_px": float(np.mean(np.abs(diffs))),
        "rmse_px": float(np.sqrt(np.mean(diffs ** 2))),
        "mean_point_error_px": float(np.nanmean(errors)),
        "pck@0.05": float(np.mean(labelled <= 0.05)),
        "pck@0.10": float(np.mean(labelled <= 0.10)),
        "auc@0.5": auc(nme, 0.5),
        "auc@0.08": auc(nme, 0.08),
        "failure@0.08": float(np.mean(nme > 0.08)),
    }


def paired_interval(before: np.ndarray, after: np.ndarray, groups, resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of `after - before` per image and its 95 % interval, resampling whole groups (persons, source
    photos) with replacement, since images of one person are not independent."""
    diff = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    keys, index = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.bincount(index, diff, len(keys)), np.bincount(index, minlength=len(keys))
    draws = np.random.default_rng(seed).integers(0, len(keys), (resamples, len(keys)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "better": float(np.mean(diff < 0))}
