"""Keypoint losses that ignore missing points (NaN targets): Huber, MSE and wing; and a masked NME metric."""
from __future__ import annotations

import math

import keras
from keras import ops

from kerakp.errors import KerakpError
from kerakp.models import LOSSES


def _masked(y_true, y_pred):
    valid = ops.logical_not(ops.isnan(y_true))
    target = ops.where(valid, y_true, ops.zeros_like(y_true))
    mask = ops.cast(valid, y_pred.dtype)
    return (y_pred - target) * mask, mask


def _mean_over_valid(values, mask):
    return ops.sum(values * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


@keras.saving.register_keras_serializable("kerakp")
class MaskedKeypointLoss(keras.losses.Loss):
    """Per-sample mean of an elementwise loss over the coordinates that are labelled."""

    def __init__(self, kind: str = "huber", delta: float = 0.01, wing_w: float = 0.05, wing_epsilon: float = 0.01, **kwargs):
        if kind not in LOSSES:
            raise KerakpError(f"unknown loss '{kind}' (known: {', '.join(LOSSES)})")
        kwargs.setdefault("name", f"masked_{kind}")
        super().__init__(**kwargs)
        self.kind, self.delta, self.wing_w, self.wing_epsilon = kind, delta, wing_w, wing_epsilon

    def call(self, y_true, y_pred):
        diff, mask = _masked(y_true, y_pred)
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
                "wing_w": self.wing_w, "wing_epsilon": self.wing_epsilon}


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
