"""Training augmentation: one random affine in crop space (flip, rotation, scale, shift, shear), photometric
changes (brightness, contrast, optional CLAHE), an optional occluding block (a hand, a microphone) and optional
degradations of the camera (low light, sensor noise, blur, a small face enlarged). Geometry is a matrix, so
keypoints follow the image exactly; a horizontal flip also re-indexes the points through the markup's flip
map. `expose` is the inference path's treatment of a dark crop, which training crops get too."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from kerakp.data.geometry import about_centre, rotation


@dataclass
class Augment:
    """Ranges of the random transforms; zero switches one off."""

    flip: float = 0.5          # probability of a horizontal flip
    rotation: float = 20.0     # max |degrees|
    scale: float = 0.1         # max relative zoom in or out
    translate: float = 0.06    # max shift, fraction of the crop side
    shear: float = 0.05        # max shear factor
    brightness: float = 0.2    # max relative brightness change
    contrast: float = 0.2      # max relative contrast change
    clahe: float = 0.0         # probability of CLAHE on the lightness channel
    occlusion: float = 0.0     # probability of a flat block over part of the crop (the points keep their labels)
    low_light: float = 0.0     # probability of a dark exposure (5-30 % of the light) with the sensor noise it brings
    noise: float = 0.0         # probability of sensor noise (sd 2-10 grey levels)
    blur: float = 0.0          # probability of a Gaussian blur (sd 0.5-1.5 px)
    small: float = 0.0         # probability of the crop shrunk to 24-64 px and enlarged back (a small, far face)

    @classmethod
    def from_dict(cls, values: dict | None) -> "Augment":
        return cls(**(values or {}))

    def to_dict(self) -> dict:
        return asdict(self)


def random_affine(rng: np.random.Generator, aug: Augment, size: int) -> tuple[np.ndarray, bool]:
    """A random 3 x 3 crop-space matrix and whether it mirrors the image."""
    angle = rng.uniform(-aug.rotation, aug.rotation)
    zoom = 1.0 + rng.uniform(-aug.scale, aug.scale)
    shear = rng.uniform(-aug.shear, aug.shear)
    flipped = bool(rng.random() < aug.flip)
    linear = rotation(angle) @ np.array([[1.0, shear], [0.0, 1.0]]) * zoom
    if flipped:
        linear = np.diag([-1.0, 1.0]) @ linear
    matrix = about_centre(linear, size)
    matrix[:2, 2] += rng.uniform(-aug.translate, aug.translate, 2) * size
    return matrix, flipped


def photometric(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Random brightness/contrast (and CLAHE) on an RGB uint8 image."""
    if aug.clahe > 0 and rng.random() < aug.clahe:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
        image = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = image.astype(np.float32)
    mean = out.mean()
    contrast = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
    brightness = 1.0 + rng.uniform(-aug.brightness, aug.brightness)
    out = ((out - mean) * contrast + mean) * brightness
    return np.clip(out, 0, 255)


DARK = 40.0   # mean grey level under which a crop is exposed (`expose`)


def expose(crop: np.ndarray, dark: float = DARK) -> np.ndarray:
    """A dark crop (mean below `dark`) exposed as a camera would: smoothed a little, then brightened to a mean
    of twice `dark` (at most 4 times), so its sensor noise is not amplified as is; any other crop as it is."""
    mean = crop.mean()
    if mean >= dark:
        return crop
    gain = min(4.0, 2 * dark / max(mean, 1.0))
    return np.clip(cv2.GaussianBlur(crop.astype(np.float32), (0, 0), 1.0) * gain, 0, 255)


def degrade(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """The camera's degradations of `aug` on a float RGB crop, each with its probability, rounded to whole grey
    levels; `expose` then treats a darkened crop as inference would."""
    if not (aug.small or aug.blur or aug.low_light or aug.noise):
        return image
    size = image.shape[0]
    if aug.small > 0 and rng.random() < aug.small:
        side = int(rng.integers(24, 65))
        image = cv2.resize(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA), (size, size),
                           interpolation=cv2.INTER_LINEAR)
    if aug.blur > 0 and rng.random() < aug.blur:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.5))
    dark = aug.low_light > 0 and rng.random() < aug.low_light
    if dark:
        image = image * rng.uniform(0.05, 0.3)
    if dark or aug.noise > 0 and rng.random() < aug.noise:
        image = image + rng.normal(0, rng.uniform(2, 10) * (0.5 if dark else 1.0), image.shape)
    return np.round(np.clip(image, 0, 255))


def occlude(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """With probability `aug.occlusion`, paint one block (each side 15-40 % of the crop's) of a random grey
    level plus noise somewhere on the float image; the model learns to place the hidden points from the rest."""
    if aug.occlusion <= 0 or rng.random() >= aug.occlusion:
        return image
    size = image.shape[0]
    height, width = (rng.uniform(0.15, 0.4, 2) * size).astype(int)
    top, left = rng.integers(0, size - height), rng.integers(0, size - width)
    block = rng.uniform(0, 255) + rng.normal(0, 20, (height, width, 1))
    image = image.copy()
    image[top:top + height, left:left + width] = np.clip(block, 0, 255)
    return image
