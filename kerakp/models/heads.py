"""Head registry: name -> how a head turns backbone features into 2K outputs (x0, y0, ... in crop fractions).

- `regression`: GlobalAveragePooling -> Dense -> ReLU -> Dropout -> Dense.
- `heatmap`: the last feature map upsampled to a quarter of the input (3x3 convolutions), one heatmap per
  point, decoded to sub-pixel positions by a soft-argmax, so it trains on the same coordinate targets and loss
  (integral regression, Sun et al. 2018).
- `unet`: `heatmap` with the backbone's stride-16, 8 and 4 maps added on the way up, U-Net style.
- `light`: a compact student's head: depthwise-separable blocks up to 1/`heatmap_stride` of the input,
  decoded like `heatmap` (a third of `heatmap`'s cost at the same map size).

The table loads no Keras (the command line lists it); the builders import Keras when they run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kerakp.errors import KerakpError


def regression_head(features, skips, num_points: int, settings: dict):
    import keras
    from keras import layers

    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dense(settings["units"], name="head_dense")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.Dropout(settings["dropout"], name="head_dropout")(x)
    return layers.Dense(2 * num_points, bias_initializer=keras.initializers.Constant(0.5), name="keypoints", dtype="float32")(x)


def _conv_bn_relu(x, channels: int, kernel: int, conv: str, bn: str, relu: str):
    from keras import layers

    x = layers.Conv2D(channels, kernel, padding="same", use_bias=False, name=conv)(x)
    return layers.ReLU(name=relu)(layers.BatchNormalization(momentum=0.9, name=bn)(x))


def _decode(x, num_points: int, settings: dict):
    from keras import layers

    from kerakp.models.custom import SoftArgmax

    logits = layers.Conv2D(num_points, 1, name="heatmaps", dtype="float32")(x)   # float32 under mixed precision
    return SoftArgmax(**settings["decoding"], name="keypoints", dtype="float32")(logits)


def heatmap_head(features, skips, num_points: int, settings: dict):
    """1x1 reduction, then (bilinear x2 [+ linear 1x1 projection of the skip map of that size] -> 3x3 conv ->
    BN -> ReLU) until 1/`map_stride` of the input side. The projections' BN scales start at zero, so the skips
    join a trained upsampling path (`--init`) without disturbing it."""
    from keras import layers

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
    from keras import layers

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
