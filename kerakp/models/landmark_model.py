"""`LandmarkModel`: image (0..255 RGB) -> backbone -> head -> 2K outputs (x0, y0, ... in crop fractions).

Backbones come from `kerakp.models.backbones.BACKBONES`, heads from `kerakp.models.heads.HEADS`.

The model carries what inference needs (markup, input size, crop rule, detector-box calibration, the
fitted offsets of its outputs, validation split), so a saved `.keras` file is all that later commands take.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from kerakp.model_info import ModelInfo
from kerakp.models.backbones import build_backbone, get_backbone_spec, pyramid_layers
from kerakp.models.custom import Preprocess
from kerakp.models.heads import get_head_spec
from kerakp.schemas import Schema, get_schema


@keras.saving.register_keras_serializable("kerakp")
class LandmarkModel(keras.Model):
    """Keypoint regressor with its inference metadata; `get_config` holds everything needed to rebuild it."""

    def __init__(self, backbone: str = "mobilenetv2", schema: str = "ibug68", input_size: int = 128,
                 head_units: int = 256, dropout: float = 0.2, weights: str = "none", crop_scale: float = 1.25,
                 box_calibration: dict | None = None, split: dict | None = None, freeze_bn: bool = False,
                 face_box: str = "landmarks", head: str = "regression", point_offsets: list | None = None,
                 upright: bool = False, point_spread: list | None = None, decode_window: int = 0,
                 heatmap_spread: float = 0.0, heatmap_weight: float = 0.0, backbone_stride: int = 32,
                 width: float = 1.0, heatmap_stride: int = 4, **kwargs):
        markup = get_schema(schema)
        spec, head_spec = get_backbone_spec(backbone), get_head_spec(head)
        images = keras.Input((input_size, input_size, 3), name="image")
        x = Preprocess(spec.preprocess, name="preprocess")(images)
        extractor = build_backbone(backbone, input_size, weights, freeze_bn, backbone_stride, width)
        skips = ()
        if head_spec.skips:
            names = pyramid_layers(extractor, head_spec.skips)
            extractor = keras.Model(extractor.input, [extractor.output] + [extractor.get_layer(n).output for n in names],
                                    name=f"{extractor.name}_pyramid")
            features, *skips = extractor(x)
        else:
            features = extractor(x)
        settings = dict(units=head_units, dropout=dropout, input_size=input_size, map_stride=heatmap_stride,
                        decoding=dict(window=decode_window, spread=heatmap_spread, weight=heatmap_weight))
        outputs = head_spec.build(features, skips, markup.num_points, settings)
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
        self.backbone_stride, self.width, self.heatmap_stride = backbone_stride, width, heatmap_stride

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
            "backbone_stride": self.backbone_stride, "width": self.width, "heatmap_stride": self.heatmap_stride,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
