"""Keypoint losses that ignore missing points (NaN targets): Huber, MSE and wing, optionally relaxed along contour
lines; and a masked NME metric."""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kerakp.errors import KerakpError
from kerakp.models import LOSSES

CONTOUR_PARTS = ("jaw", "left_brow", "right_brow", "nose_bridge")   # open lines whose points may slide along them


def contour_neighbours(schema) -> list[list[int]]:
    """Per point, [previous, next] along its contour line (`CONTOUR_PARTS` the markup has; an end point
    names itself once), or [] off the contours."""
    neighbours = [[] for _ in range(schema.num_points)]
    for name in CONTOUR_PARTS:
        line = schema.parts.get(name, ())
        for j, point in enumerate(line if len(line) > 1 else ()):
            neighbours[point] = [line[max(j - 1, 0)], line[min(j + 1, len(line) - 1)]]
    return neighbours


def _masked(y_true, y_pred):
    valid = ops.logical_not(ops.isnan(y_true))
    target = ops.where(valid, y_true, ops.zeros_like(y_true))
    mask = ops.cast(valid, y_pred.dtype)
    return (y_pred - target) * mask, mask, target


def _mean_over_valid(values, mask):
    return ops.sum(values * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


@keras.saving.register_keras_serializable("kerakp")
class MaskedKeypointLoss(keras.losses.Loss):
    """Per-sample mean of an elementwise loss over the coordinates that are labelled.

    With `contours` (per point, its [previous, next] neighbours on a contour line, `contour_neighbours`) and
    `along` < 1, a contour point's error is split into its parts across and along the line (the line's
    direction from the labels' neighbours) and the part along it counts `along` times: where the line runs
    is labelled more consistently than where on it a point sits (an anisotropic loss in the spirit of STAR,
    Zhou et al. 2023)."""

    def __init__(self, kind: str = "huber", delta: float = 0.01, wing_w: float = 0.05, wing_epsilon: float = 0.01,
                 contours=None, along: float = 1.0, **kwargs):
        if kind not in LOSSES:
            raise KerakpError(f"unknown loss '{kind}' (known: {', '.join(LOSSES)})")
        kwargs.setdefault("name", f"masked_{kind}")
        super().__init__(**kwargs)
        self.kind, self.delta, self.wing_w, self.wing_epsilon = kind, delta, wing_w, wing_epsilon
        self.contours, self.along = [list(n) for n in contours or []], float(along)

    def _components(self, target, diff):
        """(B, 2K) per-point errors as (across, along x `along`) on contour points, (x, y) elsewhere."""
        on = np.array([bool(n) for n in self.contours])
        prev = np.array([n[0] if n else i for i, n in enumerate(self.contours)])
        nxt = np.array([n[1] if n else i for i, n in enumerate(self.contours)])
        true = ops.reshape(target, (-1, len(on), 2))
        err = ops.reshape(diff, (-1, len(on), 2))
        tangent = ops.take(true, nxt, axis=1) - ops.take(true, prev, axis=1)
        length = ops.sqrt(ops.sum(ops.square(tangent), axis=-1, keepdims=True))
        unit = tangent / ops.maximum(length, 1e-6)
        along = ops.sum(err * unit, axis=-1)
        across = err[..., 1] * unit[..., 0] - err[..., 0] * unit[..., 1]
        split = ops.logical_and(on[None, :], length[..., 0] > 1e-6)
        parts = ops.stack([across, self.along * along], axis=-1)
        return ops.reshape(ops.where(split[..., None], parts, err), ops.shape(diff))

    def call(self, y_true, y_pred):
        diff, mask, target = _masked(y_true, y_pred)
        if self.contours and self.along != 1.0:
            diff = self._components(target, diff)
        err = ops.abs(diff)
        if self.kind == "mse":
            values = ops.square(err)
        elif self.kind == "huber":
            values = ops.where(err < self.delta, 0.5 * ops.square(err), self.delta * (err - 0.5 * self.delta))
        else:  # wing (Feng et al. 2018): log near zero, linear beyond w
            c = self.wing_w - self.wing_w * math.log(1 + self.wing_w / self.wing_epsilon)
            values = ops.where(err < self.wing_w, self.wing_w * ops.log(1 + err / self.wing_epsilon), err - c)
        return _mean_over_valid(values, mask)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "delta": self.delta,
                "wing_w": self.wing_w, "wing_epsilon": self.wing_epsilon, "contours": self.contours, "along": self.along}


@keras.saving.register_keras_serializable("kerakp")
class CropNME(keras.metrics.MeanMetricWrapper):
    """Mean point error over the normalising pair's distance, in crop space (a training-time monitor);
    without a pair (`norm=None`), over the crop side."""

    def __init__(self, norm=(36, 45), name="nme", **kwargs):
        self.norm = None if norm is None else tuple(norm)
        super().__init__(fn=self._nme, name=name, **kwargs)

    def _nme(self, y_true, y_pred):
        true = ops.reshape(y_true, (ops.shape(y_true)[0], -1, 2))
        pred = ops.reshape(y_pred, (ops.shape(y_pred)[0], -1, 2))
        valid = ops.logical_not(ops.any(ops.isnan(true), axis=-1))
        true = ops.where(valid[..., None], true, ops.zeros_like(true))
        dist = ops.sqrt(ops.sum(ops.square(pred - true), axis=-1))
        mask = ops.cast(valid, dist.dtype)
        if self.norm is None:  # targets are crop fractions: the crop side is 1
            return _mean_over_valid(dist, mask)
        norm = ops.sqrt(ops.sum(ops.square(true[:, self.norm[0]] - true[:, self.norm[1]]), axis=-1))
        return _mean_over_valid(dist, mask) / ops.maximum(norm, 1e-6)

    def get_config(self):
        return {"norm": None if self.norm is None else list(self.norm), "name": self.name, "dtype": self.dtype}
