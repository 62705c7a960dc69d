"""Head registry: name -> how a head turns backbone features into 2K outputs (x0, y0, ... in crop fractions).

- `regression`: GlobalAveragePooling -> Dense -> ReLU -> Dropout -> Dense.
- `heatmap`: the last feature map upsampled to a quarter of the input (3x3 convolutions), one heatmap per
  point, decoded to sub-pixel positions by a soft-argmax, so it trains on the same coordinate targets and loss
  (integral regression, Sun et al. 2018).
- `unet`: `heatmap` with the backbone's stride-16, 8 and 4 maps added on the way up, U-Net style.
- `light`: a compact student's head: depthwise-separable blocks up to 1/`heatmap_stride` of the input,
  decoded like `heatmap` (a third of `heatmap`'s cost at the same map size).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
from keras import layers, ops

from kerakp.errors import KerakpError


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


def regression_head(features, skips, num_points: int, settings: dict):
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dense(settings["units"], name="head_dense")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.Dropout(settings["dropout"], name="head_dropout")(x)
    return layers.Dense(2 * num_points, bias_initializer=keras.initializers.Constant(0.5), name="keypoints", dtype="float32")(x)


def _conv_bn_relu(x, channels: int, kernel: int, conv: str, bn: str, relu: str):
    x = layers.Conv2D(channels, kernel, padding="same", use_bias=False, name=conv)(x)
    return layers.ReLU(name=relu)(layers.BatchNormalization(momentum=0.9, name=bn)(x))


def _decode(x, num_points: int, settings: dict):
    logits = layers.Conv2D(num_points, 1, name="heatmaps", dtype="float32")(x)   # float32 under mixed precision
    return SoftArgmax(**settings["decoding"], name="keypoints", dtype="float32")(logits)


def heatmap_head(features, skips, num_points: int, settings: dict):
    """1x1 reduction, then (bilinear x2 [+ linear 1x1 projection of the skip map of that size] -> 3x3 conv ->
    BN -> ReLU) until 1/`map_stride` of the input side. The projections' BN scales start at zero, so the skips
    join a trained upsampling path (`--init`) without disturbing it."""
    channels = max(32, settings["units"] // 4)
    x = _conv_bn_relu(features, channels, 1, "heat_reduce", "heat_reduce_bn", "heat_reduce_relu")
    skip_at = {skip.shape[1]: skip for skip in skips}   # map side -> backbone map of that side
    step = 0
    while x.shape[1] < settings["input_size"] // settings["map_stride"]:
        step += 1
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"heat_up{step}")(x)
        if x.shape[1] in skip_at:
            lateral = layers.Conv2D(channels, 1, use_bias=False, name=f"heat_lateral{step}")(skip_at[x.shape[1]])
            lateral = layers.BatchNormalization(momentum=0.9, gamma_initializer="zeros", name=f"heat_lateral_bn{step}")(lateral)
            x = layers.Add(name=f"heat_skip{step}")([x, lateral])
        x = _conv_bn_relu(x, channels, 3, f"heat_conv{step}", f"heat_bn{step}", f"heat_relu{step}")
    return _decode(x, num_points, settings)


def light_head(features, skips, num_points: int, settings: dict):
    """1x1 reduction to `units` channels, then (bilinear x2 -> depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU)
    until 1/`map_stride` of the input side."""
    channels = settings["units"]
    x = _conv_bn_relu(features, channels, 1, "light_reduce", "light_reduce_bn", "light_reduce_relu")
    step = 0
    while x.shape[1] < settings["input_size"] // settings["map_stride"]:
        step += 1
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"light_up{step}")(x)
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"light_dw{step}")(x)
        x = layers.ReLU(name=f"light_dw_relu{step}")(layers.BatchNormalization(momentum=0.9, name=f"light_dw_bn{step}")(x))
        x = _conv_bn_relu(x, channels, 1, f"light_pw{step}", f"light_pw_bn{step}", f"light_pw_relu{step}")
    return _decode(x, num_points, settings)


@dataclass(frozen=True)
class HeadSpec:
    """How to build one head (`build(features, skips, num_points, settings)`; settings: units, dropout,
    input_size, map_stride, decoding) and the strides of the backbone maps it takes as skips."""

    build: Callable
    skips: tuple[int, ...] = ()


HEADS: dict[str, HeadSpec] = {
    "regression": HeadSpec(regression_head),
    "heatmap": HeadSpec(heatmap_head),
    "unet": HeadSpec(heatmap_head, (16, 8, 4)),
    "light": HeadSpec(light_head),
}


def get_head_spec(name: str) -> HeadSpec:
    try:
        return HEADS[name]
    except KeyError:
        raise KerakpError(f"unknown head '{name}' (known: {', '.join(HEADS)})") from None
