"""Backbone registry: name -> feature extractor (a Keras model from images to a feature map).

`keras.applications` supplies MobileNetV2, EfficientNetV2B0 and ResNet50; ResNet-18/34 (basic blocks)
and the small plain CNN are written here. `weights` is `none`, `imagenet` (downloaded by Keras, needs
internet) or the path of a local weights file for that backbone. The table loads no Keras (the command line
lists it); the builders import Keras when they run.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kerakp.errors import KerakpError


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and the input scaling its weights expect."""

    build: Callable                      # (input size, keras weights arg[, width]) -> keras.Model
    preprocess: str                      # a `Preprocess` mode
    has_imagenet: bool
    widths: tuple[float, ...] = (1.0,)   # channel multipliers it can be built with (`width`)


def _bn(name: str):
    from keras import layers

    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _basic_block(x, filters: int, stride: int, name: str):
    from keras import layers

    shortcut = x
    y = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(y))
    y = layers.Conv2D(filters, 3, 1, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_down")(x)
        shortcut = _bn(f"{name}_down_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def basic_resnet(blocks: tuple[int, ...], name: str) -> Callable:
    """A ResNet of basic blocks (ResNet-18: (2, 2, 2, 2), ResNet-34: (3, 4, 6, 3))."""

    def build(size: int, weights: str | None):
        import keras
        from keras import layers

        inputs = keras.Input((size, size, 3))
        x = layers.Conv2D(64, 7, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
        x = layers.ReLU(name="stem_relu")(_bn("stem_bn")(x))
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
        for stage, (count, filters) in enumerate(zip(blocks, (64, 128, 256, 512))):
            for block in range(count):
                stride = 2 if block == 0 and stage > 0 else 1
                x = _basic_block(x, filters, stride, f"stage{stage + 1}_block{block + 1}")
        return keras.Model(inputs, x, name=name)

    return build


def simple_cnn(size: int, weights: str | None):
    """A plain baseline: four stages of two 3x3 conv-BN-ReLU layers and a max pool."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3))
    x = inputs
    for stage, filters in enumerate((32, 64, 128, 256)):
        for i in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage + 1}_{i + 1}")(x)
            x = layers.ReLU(name=f"relu{stage + 1}_{i + 1}")(_bn(f"bn{stage + 1}_{i + 1}")(x))
        x = layers.MaxPooling2D(2, name=f"pool{stage + 1}")(x)
    return keras.Model(inputs, x, name="simplecnn")


def _application(factory: str, width: str = "", **extra) -> Callable:
    """A `keras.applications` factory (by name) as a builder; `width` names its channel-multiplier argument."""
    def build(size: int, weights: str | None, width_value: float = 1.0):
        import keras

        with warnings.catch_warnings():
            if weights is None:  # its warning about which ImageNet input size it would load does not apply
                warnings.filterwarnings("ignore", message=".*will be loaded as the default", category=UserWarning)
            return getattr(keras.applications, factory)(input_shape=(size, size, 3), include_top=False, weights=weights,
                           **({width: width_value} if width else {}), **extra)

    return build


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenetv2": BackboneSpec(_application("MobileNetV2", width="alpha"), "tf", True,
                                (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
    "efficientnetv2b0": BackboneSpec(
        _application("EfficientNetV2B0", include_preprocessing=False), "torch", True),
    "resnet18": BackboneSpec(basic_resnet((2, 2, 2, 2), "resnet18"), "tf", False),
    "resnet34": BackboneSpec(basic_resnet((3, 4, 6, 3), "resnet34"), "tf", False),
    "resnet50": BackboneSpec(_application("ResNet50"), "caffe", True),
    "simplecnn": BackboneSpec(simple_cnn, "tf", False),
}


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KerakpError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})") from None


def pyramid_layers(backbone, strides: tuple[int, ...]) -> list[str]:
    """For each stride, the deepest layer whose output map is input side / stride (a U-Net skip source)."""
    side, names = backbone.input.shape[1], []
    for stride in strides:
        at = [layer.name for layer in backbone.layers
              if len(layer.output.shape) == 4 and layer.output.shape[1] == side // stride]
        if not at:
            raise KerakpError(f"backbone '{backbone.name}' has no feature map at stride {stride}")
        names.append(at[-1])
    return names


def build_backbone(name: str, input_size: int, weights: str = "none", freeze_bn: bool = False, stride: int = 32,
                   width: float = 1.0):
    """Build a backbone, `width` times its channels, ending at its deepest map of `stride` (a compact student
    cuts it at 16, the layers below keep their names, so a full model's weights still fit them). BatchNorm
    trains with momentum 0.9 (not keras.applications' 0.999, whose moving statistics lag a short fine-tune);
    `freeze_bn` keeps it in inference mode instead (on ytf68 it learned only the mean shape)."""
    import keras
    from keras import layers

    spec = get_backbone_spec(name)
    if width not in spec.widths:
        raise KerakpError(f"backbone '{name}' is built at width {', '.join(map(str, spec.widths))}, not {width}")
    build = (lambda size, arg: spec.build(size, arg, width)) if width != 1.0 else spec.build
    weights = weights or "none"
    if weights == "none":
        model = build(input_size, None)
    elif weights == "imagenet":
        if not spec.has_imagenet or width != 1.0:
            raise KerakpError(f"no ImageNet weights exist for '{name}' at width {width}; use --weights none or a local weights file")
        try:
            model = build(input_size, "imagenet")
        except Exception as err:  # offline: urllib/HTTP errors of many kinds
            raise KerakpError(
                f"could not download ImageNet weights for '{name}' ({type(err).__name__}); offline? "
                f"pass --weights PATH to a local weights file (for example ../shared/weights/)") from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise KerakpError(f"weights file not found: {path}")
        model = build(input_size, None)
        try:
            model.load_weights(str(path))
        except Exception as err:
            raise KerakpError(f"{path}: does not fit backbone '{name}' ({str(err).splitlines()[0][:160]})") from None
    if stride != 32:
        model = keras.Model(model.input, model.get_layer(pyramid_layers(model, (stride,))[0]).output,
                            name=f"{model.name}_s{stride}")
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            if freeze_bn:
                layer.trainable = False
            else:
                layer.momentum = min(layer.momentum, 0.9)
    return model
