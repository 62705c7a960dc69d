"""The Keras classes kerakp defines, registered for saving: the input scaling layer, the soft-argmax decoder of
the heatmap heads, the keypoint loss that ignores missing points (NaN targets; any loss of
`kerakp.models.losses.LOSSES`, optionally relaxed along contour lines) and the crop-NME metric."""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from kerakp.errors import KerakpError
from kerakp.models.losses import LOSSES

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB, TORCH_STD_RGB = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable("kerakp")
class Preprocess(layers.Layer):
    """Scale 0..255 RGB the way a backbone's weights expect: `tf` ([-1, 1]), `caffe` (BGR minus mean), `torch`
    (0..1 minus the ImageNet mean, over its sd: EfficientNetV2's own preprocessing, done here so that every
    export format sees constants), `raw`."""

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images):
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=images.dtype)
        if self.mode == "torch":
            mean, std = (ops.convert_to_tensor(v, dtype=images.dtype) for v in (TORCH_MEAN_RGB, TORCH_STD_RGB))
            return (images / 255.0 - mean) / std
        return images

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable("kerakp")
class SoftArgmax(layers.Layer):
    """(B, H, W, K) heatmap logits -> (B, 2K) expected positions x0, y0, ... in fractions of the map side.

    `window` r > 0 takes the expectation over the (2r+1)^2 cells around each map's peak only, so mass far from
    the peak no longer pulls the point (local decoding). `spread` s > 0 adds, in training, `weight` times the
    KL divergence from a Gaussian of s cells sd, centred on each map's own expected position, to the map
    (a DSNT-style shape term, Nibali et al. 2018): the maps stay single-peaked, as local decoding assumes."""

    def __init__(self, window: int = 0, spread: float = 0.0, weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.window, self.spread, self.weight = int(window), float(spread), float(weight)

    def call(self, logits, training=False):
        height, width, points = logits.shape[1], logits.shape[2], logits.shape[3]
        flat = ops.reshape(logits, (-1, height * width, points))
        log_probs = ops.log_softmax(flat, axis=1)
        probs = ops.exp(log_probs)
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        grid = ops.convert_to_tensor(np.stack([(cols.ravel() + 0.5) / width, (rows.ravel() + 0.5) / height], -1),
                                     dtype=probs.dtype)  # (HW, 2)
        means = ops.matmul(ops.transpose(probs, (0, 2, 1)), grid)   # (B, K, 2)
        if training and self.spread > 0 and self.weight > 0:
            centre = ops.stop_gradient(means)[:, None]               # (B, 1, K, 2)
            cells = ops.convert_to_tensor([width, height], dtype=probs.dtype)
            sq = ops.sum(ops.square((grid[None, :, None, :] - centre) * cells), axis=-1)   # in cells^2
            log_target = ops.log_softmax(-sq / (2.0 * self.spread ** 2), axis=1)
            kl = ops.sum(ops.exp(log_target) * (log_target - log_probs), axis=1)
            self.add_loss(self.weight * ops.mean(kl))
        if self.window > 0:
            peak = ops.argmax(flat, axis=1)                                       # (B, K)
            near_row = ops.abs(rows.ravel()[None, :, None] - (peak // width)[:, None, :]) <= self.window
            near_col = ops.abs(cols.ravel()[None, :, None] - (peak % width)[:, None, :]) <= self.window
            local = probs * ops.cast(ops.logical_and(near_row, near_col), probs.dtype)
            local = local / ops.sum(local, axis=1, keepdims=True)
            means = ops.matmul(ops.transpose(local, (0, 2, 1)), grid)
        return ops.reshape(means, (-1, 2 * points))

    def get_config(self):
        return {**super().get_config(), "window": self.window, "spread": self.spread, "weight": self.weight}


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
    Zhou et al. 2023).

    With `groups` (lists of output points, `kerakp.schemas.groups_of`), targets wider than the outputs hold one
    more point per group after the model's own, compared with the mean of the group's outputs: another markup's
    eye centre supervises the six points of a 68-point eye."""

    def __init__(self, kind: str = "huber", delta: float = 0.01, wing_w: float = 0.05, wing_epsilon: float = 0.01,
                 contours=None, along: float = 1.0, groups=None, **kwargs):
        if kind not in LOSSES:
            raise KerakpError(f"unknown loss '{kind}' (known: {', '.join(LOSSES)})")
        kwargs.setdefault("name", f"masked_{kind}")
        super().__init__(**kwargs)
        self.kind, self.delta, self.wing_w, self.wing_epsilon = kind, delta, wing_w, wing_epsilon
        self.contours, self.along = [list(n) for n in contours or []], float(along)
        self.groups = [list(g) for g in groups or []]

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

    def _with_groups(self, y_pred):
        """(B, 2K) outputs followed by each group's mean point: (B, 2(K + len(groups)))."""
        points = ops.reshape(y_pred, (-1, y_pred.shape[-1] // 2, 2))
        means = [ops.mean(ops.take(points, group, axis=1), axis=1) for group in self.groups]
        return ops.concatenate([y_pred, ops.reshape(ops.stack(means, axis=1), (-1, 2 * len(means)))], axis=-1)

    def call(self, y_true, y_pred):
        if self.groups and y_true.shape[-1] != y_pred.shape[-1]:   # a mixed set's targets; validation's are plain
            y_pred = self._with_groups(y_pred)
        diff, mask, target = _masked(y_true, y_pred)
        if self.contours and self.along != 1.0:
            k = 2 * len(self.contours)   # the model's own points; derived ones have no contour
            split = self._components(target[..., :k], diff[..., :k])
            diff = split if diff.shape[-1] == k else ops.concatenate([split, diff[..., k:]], axis=-1)
        values = LOSSES[self.kind](ops.abs(diff), self.delta, self.wing_w, self.wing_epsilon)
        return _mean_over_valid(values, mask)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "delta": self.delta,
                "wing_w": self.wing_w, "wing_epsilon": self.wing_epsilon, "contours": self.contours, "along": self.along, "groups": self.groups}


@keras.saving.register_keras_serializable("kerakp")
class CropNME(keras.metrics.MeanMetricWrapper):
    """Mean point error over the normalising pair's distance, in crop space (a training-time monitor);
    without a pair (`norm=None`), over the crop side. Targets wider than the outputs (a mixed set's derived
    points) are read up to the outputs' width; a face whose pair is not labelled does not count."""

    def __init__(self, norm=(36, 45), name="nme", **kwargs):
        self.norm = None if norm is None else tuple(norm)
        super().__init__(fn=self._nme, name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = y_true[..., :y_pred.shape[-1]]
        if self.norm is not None:
            pair = ops.reshape(y_true, (ops.shape(y_true)[0], -1, 2))
            labelled = ops.logical_not(ops.any(ops.isnan(ops.take(pair, list(self.norm), axis=1)), axis=(1, 2)))
            weight = ops.cast(labelled, y_pred.dtype)
            sample_weight = weight if sample_weight is None else sample_weight * weight
        return super().update_state(y_true, y_pred, sample_weight)

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
