"""What a model carries besides its weights, in one place: `ModelInfo`, read the same way from a `.keras`
model's config and from an exported model's `<file>.json` sidecar, with its `CropRule`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from kerakp.schemas import Schema, get_schema


@dataclass(frozen=True)
class CropRule:
    """How an image becomes the model's input: a square `scale` times the longer side of a landmark box,
    resized to `size` pixels; turned so the outer eye corners lie level for an `upright` model; the whole image
    for a `whole_image` model (trained with `face_box: image`)."""

    size: int
    scale: float = 1.25
    upright: bool = False
    whole_image: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """A model's markup, crop rule, the box calibration fitted per face detector, the offsets fitted to its
    outputs, its validation split, and the backbone and head it was built with."""

    markup: str
    crop: CropRule
    backbone: str = ""
    head: str = "regression"
    box_calibration: dict = field(default_factory=dict)
    point_offsets: list = field(default_factory=list)
    point_spread: list = field(default_factory=list)   # per point, the median flip disagreement on training images
    split: dict = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return get_schema(self.markup)

    @classmethod
    def from_config(cls, config: dict) -> "ModelInfo":
        """From a `LandmarkModel` config (a `.keras` file's, or the `model` entry of an export's sidecar)."""
        crop = CropRule(int(config["input_size"]), float(config.get("crop_scale", 1.25)), bool(config.get("upright", False)),
                        config.get("face_box", "landmarks") == "image")
        return cls(config["schema"], crop, config.get("backbone", ""), config.get("head", "regression"),
                   dict(config.get("box_calibration") or {}), list(config.get("point_offsets") or []),
                   list(config.get("point_spread") or []), dict(config.get("split") or {}))

    def to_config(self) -> dict:
        """The `LandmarkModel` config keys this information lives in."""
        return {"schema": self.markup, "input_size": self.crop.size, "crop_scale": self.crop.scale,
                "upright": self.crop.upright, "face_box": "image" if self.crop.whole_image else "landmarks",
                "backbone": self.backbone, "head": self.head, "box_calibration": self.box_calibration,
                "point_offsets": self.point_offsets, "point_spread": self.point_spread, "split": self.split}

    def replace(self, **changes) -> "ModelInfo":
        return replace(self, **changes)

    def describe_fit(self) -> list[str]:
        """Lines that say what `fit-detector` fitted: each detector's box calibration, the point offsets' size."""
        import numpy as np

        lines = [f"{name}: dx {c['dx']:.3f}, dy {c['dy']:.3f}, scale {c['scale']:.3f} from {c['samples']} faces"
                 f"{', and a fit from where it saw the eyes' if c.get('eyes') else ''}" for name, c in self.box_calibration.items()]
        if self.point_offsets:
            shifts = np.linalg.norm(self.point_offsets, axis=-1) * self.crop.size  # (2, K)
            lines.append(f"point offsets in a {self.crop.size} px crop: direct reading median {np.median(shifts[0]):.2f} px, "
                         f"mirrored {np.median(shifts[1]):.2f} px, largest {shifts.max():.2f} px")
        return lines
