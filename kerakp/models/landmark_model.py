"""`LandmarkModel`: image (0..255 RGB) -> backbone -> GlobalAveragePooling regression head -> 2K outputs.

The model carries what inference needs (markup, input size, crop rule, detector-box calibration,
validation split), so a saved `.keras` file is all that later commands take.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from kerakp.models.backbones import build_backbone, get_backbone_spec
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
class LandmarkModel(keras.Model):
    """Keypoint regressor with its inference metadata; `get_config` holds everything needed to rebuild it."""

    def __init__(self, backbone: str = "mobilenetv2", schema: str = "ibug68", input_size: int = 128,
                 head_units: int = 256, dropout: float = 0.2, weights: str = "none", crop_scale: float = 1.25,
                 box_calibration: dict | None = None, split: dict | None = None, freeze_bn: bool = False,
                 face_box: str = "landmarks", **kwargs):
        markup = get_schema(schema)
        spec = get_backbone_spec(backbone)
        images = keras.Input((input_size, input_size, 3), name="image")
        x = Preprocess(spec.preprocess, name="preprocess")(images)
        x = build_backbone(backbone, input_size, weights, freeze_bn)(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(head_units, name="head_dense")(x)
        x = layers.ReLU(name="head_relu")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
        outputs = layers.Dense(2 * markup.num_points, bias_initializer=keras.initializers.Constant(0.5),
                               name="keypoints")(x)
        kwargs.setdefault("name", f"kerakp_{backbone}_{schema}")
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self.backbone_name, self.schema_name, self.input_size = backbone, schema, input_size
        self.head_units, self.dropout_rate, self.crop_scale = head_units, dropout, crop_scale
        self.box_calibration = dict(box_calibration or {})
        self.split = dict(split or {})
        self.freeze_bn, self.face_box = freeze_bn, face_box

    @property
    def schema(self) -> Schema:
        return get_schema(self.schema_name)

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable, "backbone": self.backbone_name,
            "schema": self.schema_name, "input_size": self.input_size, "head_units": self.head_units,
            "dropout": self.dropout_rate, "weights": "none", "crop_scale": self.crop_scale,
            "box_calibration": self.box_calibration, "split": self.split, "freeze_bn": self.freeze_bn,
            "face_box": self.face_box,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
