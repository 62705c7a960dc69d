"""`LandmarkModel`: image (0..255 RGB) -> backbone -> head -> 2K outputs (x0, y0, ... in crop fractions).

Heads: `regression` (GlobalAveragePooling -> Dense -> ReLU -> Dropout -> Dense), `heatmap` (the last feature
map upsampled to a quarter of the input, one heatmap per point, decoded to sub-pixel positions by a
soft-argmax, so it trains on the same coordinate targets and loss: integral regression, Sun et al. 2018) or
`unet` (the same, with the backbone's stride-16, 8 and 4 maps added on the way up, U-Net style).

The model carries what inference needs (markup, input size, crop rule, detector-box calibration, the
fitted offsets of its outputs, validation split), so a saved `.keras` file is all that later commands take.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from kerakp.models import HEADS
from kerakp.models.backbones import build_backbone, get_backbone_spec, pyramid_layers
from kerakp.errors import KerakpError
from kerakp.model_info import ModelInfo
from kerakp.schemas import Schema, get_schema

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable("kerakp")
class Preprocess(layers.Layer):
    """Scale 0..255 RGB the way a backbone's weights expect: `tf` ([-1, 1]), `caffe` (BGR minus mean), `raw`."""

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images):
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=images.dtype)
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


SKIP_STRIDES = (16, 8, 4)


def regression_head(features, num_points: int, units: int, dropout: float):
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dense(units, name="head_dense")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(2 * num_points, bias_initializer=keras.initializers.Constant(0.5), name="keypoints", dtype="float32")(x)


def _conv_bn_relu(x, channels: int, kernel: int, conv: str, bn: str, relu: str):
    x = layers.Conv2D(channels, kernel, padding="same", use_bias=False, name=conv)(x)
    return layers.ReLU(name=relu)(layers.BatchNormalization(momentum=0.9, name=bn)(x))


def heatmap_head(features, num_points: int, units: int, input_size: int, skips=(), decoding=None):
    """1x1 reduction, then (bilinear x2 [+ linear 1x1 projection of the skip map of that size] -> 3x3 conv ->
    BN -> ReLU) until a quarter of the input side. The projections' BN scales start at zero, so the skips
    join a trained upsampling path (`--init`) without disturbing it."""
    channels = max(32, units // 4)
    x = _conv_bn_relu(features, channels, 1, "heat_reduce", "heat_reduce_bn", "heat_reduce_relu")
    skip_at = {skip.shape[1]: skip for skip in skips}   # map side -> backbone map of that side
    step = 0
    while x.shape[1] < input_size // 4:
        step += 1
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"heat_up{step}")(x)
        if x.shape[1] in skip_at:
            lateral = layers.Conv2D(channels, 1, use_bias=False, name=f"heat_lateral{step}")(skip_at[x.shape[1]])
            lateral = layers.BatchNormalization(momentum=0.9, gamma_initializer="zeros", name=f"heat_lateral_bn{step}")(lateral)
            x = layers.Add(name=f"heat_skip{step}")([x, lateral])
        x = _conv_bn_relu(x, channels, 3, f"heat_conv{step}", f"heat_bn{step}", f"heat_relu{step}")
    logits = layers.Conv2D(num_points, 1, name="heatmaps", dtype="float32")(x)   # float32 under mixed precision
    return SoftArgmax(**(decoding or {}), name="keypoints", dtype="float32")(logits)


@keras.saving.register_keras_serializable("kerakp")
class LandmarkModel(keras.Model):
    """Keypoint regressor with its inference metadata; `get_config` holds everything needed to rebuild it."""

    def __init__(self, backbone: str = "mobilenetv2", schema: str = "ibug68", input_size: int = 128,
                 head_units: int = 256, dropout: float = 0.2, weights: str = "none", crop_scale: float = 1.25,
                 box_calibration: dict | None = None, split: dict | None = None, freeze_bn: bool = False,
                 face_box: str = "landmarks", head: str = "regression", point_offsets: list | None = None,
                 upright: bool = False, point_spread: list | None = None, decode_window: int = 0,
                 heatmap_spread: float = 0.0, heatmap_weight: float = 0.0, **kwargs):
        markup = get_schema(schema)
        spec = get_backbone_spec(backbone)
        images = keras.Input((input_size, input_size, 3), name="image")
        x = Preprocess(spec.preprocess, name="preprocess")(images)
        if head not in HEADS:
            raise KerakpError(f"unknown head '{head}' (known: {', '.join(HEADS)})")
        extractor = build_backbone(backbone, input_size, weights, freeze_bn)
        if head == "unet":
            names = pyramid_layers(extractor, SKIP_STRIDES)
            extractor = keras.Model(extractor.input, [extractor.output] + [extractor.get_layer(n).output for n in names],
                                    name=f"{extractor.name}_pyramid")
            features, *skips = extractor(x)
        else:
            features, skips = extractor(x), ()
        outputs = (regression_head(features, markup.num_points, head_units, dropout) if head == "regression"
                   else heatmap_head(features, markup.num_points, head_units, input_size, skips,
                                     dict(window=decode_window, spread=heatmap_spread, weight=heatmap_weight)))
        kwargs.setdefault("name", f"kerakp_{backbone}_{schema}")
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self.backbone_name, self.schema_name, self.input_size = backbone, schema, input_size
        self.head_units, self.dropout_rate, self.crop_scale = head_units, dropout, crop_scale
        self.box_calibration = dict(box_calibration or {})
        self.split = dict(split or {})
        self.freeze_bn, self.face_box, self.head, self.upright = freeze_bn, face_box, head, upright
        self.point_offsets = np.asarray(point_offsets, np.float64).tolist() if point_offsets else []
        if keras.backend.backend() == "tensorflow":   # BatchNorm statistics over the global batch under tf.distribute
            for layer in self._flatten_layers():
                if isinstance(layer, layers.BatchNormalization):
                    layer.synchronized = True
        self.point_spread = [float(v) for v in point_spread] if point_spread else []
        self.decode_window, self.heatmap_spread, self.heatmap_weight = decode_window, heatmap_spread, heatmap_weight

    @property
    def schema(self) -> Schema:
        return get_schema(self.schema_name)

    @property
    def info(self) -> ModelInfo:
        """The model's metadata, as every runtime gives it (`kerakp.model_info`)."""
        return ModelInfo.from_config(self.get_config())

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable, "backbone": self.backbone_name,
            "schema": self.schema_name, "input_size": self.input_size, "head_units": self.head_units,
            "dropout": self.dropout_rate, "weights": "none", "crop_scale": self.crop_scale,
            "box_calibration": self.box_calibration, "split": self.split, "freeze_bn": self.freeze_bn,
            "face_box": self.face_box, "head": self.head, "point_offsets": self.point_offsets,
            "upright": self.upright, "point_spread": self.point_spread, "decode_window": self.decode_window,
            "heatmap_spread": self.heatmap_spread, "heatmap_weight": self.heatmap_weight,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
