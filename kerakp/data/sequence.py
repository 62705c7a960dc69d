"""`KeypointSequence`: batches of face crops and regression targets for `model.fit`.

Each sample: decode the image (kept in a cache of at most `cache_mb`, least recently used out first), crop a square around its landmark box (`crop_scale` times
the box side, the same rule inference uses; with `upright`, turned about its centre so the outer eye corners
lie level), apply a random affine, photometric augmentation and an optional occluding block when training,
camera degradations when training, the inference path's exposure of a dark crop (`expose`), and encode the
keypoints (a point outside the crop counts as unlabelled). Randomness comes from (seed, epoch, index), so a batch is the same whatever
worker builds it, and a resumed run (`epoch`) draws what the uninterrupted run would have.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import keras
import numpy as np

from kerakp.codecs import encode_regression
from kerakp.data.augment import Augment, degrade, expose, occlude, photometric, random_affine
from kerakp.data.dataset import LandmarkSet
from kerakp.data.geometry import box_crop_matrix, transform_points, warp
from kerakp.errors import KerakpError
from kerakp.model_info import CropRule


class KeypointSequence(keras.utils.PyDataset):
    """Face crops (float32 RGB in 0..255) and targets (2K crop fractions, NaN where missing). Every batch splits
    evenly over `devices` (data-parallel training): a last partial batch keeps as many images as do, so one
    device and several see the same images but for fewer than `devices` of them. With `shard` (process,
    processes) a training process reads its equal part of each global batch, in the order every process draws
    alike, so N processes together see the images one process would."""

    def __init__(self, data: LandmarkSet, crop: CropRule, batch_size: int = 32, augment: Augment | None = None,
                 shuffle: bool = False, seed: int = 0, epoch: int = 0, cache_mb: float = 2048, devices: int = 1,
                 shard: tuple[int, int] = (0, 1), subsample: tuple[np.ndarray, int] | None = None, **kwargs):
        super().__init__(**kwargs)
        if len(data) == 0:
            raise KerakpError("no images to train or validate on")
        self.data, self.crop, self.input_size, self.batch_size = data, crop, crop.size, batch_size
        self.augment, self.shuffle, self.seed = augment, shuffle, seed
        self.epoch, self.devices, self.shard, self.subsample = epoch, devices, shard, subsample
        if len(data) < devices:
            raise KerakpError(f"{len(data)} training images, fewer than the {devices} devices")
        if devices % shard[1]:
            raise KerakpError(f"{devices} devices do not split evenly over {shard[1]} processes")
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()       # thread workers share the cache
        self.cache_bytes, self.cached_bytes = int(cache_mb * (1 << 20)), 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.arange(len(self.data))
        if self.subsample is not None:
            pool, count = self.subsample
            order = np.concatenate([np.setdiff1d(order, pool), np.sort(rng.choice(pool, count, replace=False))])
        return rng.permutation(order) if self.shuffle else order

    def __len__(self) -> int:
        full, rest = divmod(len(self._order), self.batch_size)
        return full + (rest >= self.devices)

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._make_order()

    def image(self, index: int) -> np.ndarray:
        """A decoded image, from the cache (least recently used images leave it past `cache_mb`)."""
        with self._lock:
            if index in self._images:
                self._images.move_to_end(index)
                return self._images[index]
        image = self.data.image(index)
        with self._lock:
            if image.nbytes <= self.cache_bytes and index not in self._images:
                self._images[index] = image
                self.cached_bytes += image.nbytes
                while self.cached_bytes > self.cache_bytes:
                    self.cached_bytes -= self._images.popitem(last=False)[1].nbytes
        return image

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One crop (S, S, 3) float32, its keypoints (K, 2) in crop pixels, and the matrix from the image's
        pixels to the crop's (augmentation included)."""
        points = self.data.keypoints[index]
        box = self.data.crop_box(index)
        if box is None:
            raise KerakpError(f"{self.data.paths[index]}: no labelled points to crop around")
        turn = self.data.crop_turn(index) if self.crop.upright else 0.0
        matrix = box_crop_matrix(box, self.crop.scale, self.input_size, turn)
        flipped = False
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            augmentation, flipped = random_affine(rng, self.augment, self.input_size)
            matrix = augmentation @ matrix
        crop = warp(self.image(index), matrix, self.input_size)
        crop_points = transform_points(matrix, points)
        if flipped:
            crop_points = crop_points[list(self.data.schema.flip)]
        outside = ((crop_points < -0.5) | (crop_points > self.input_size - 0.5)).any(axis=-1)
        crop_points[outside] = np.nan   # a point the crop does not show is not asked of the model
        if self.augment is not None:
            crop = degrade(occlude(photometric(crop, rng, self.augment), rng, self.augment), rng, self.augment)
        return expose(crop).astype(np.float32), crop_points, matrix

    def batch_indices(self, batch: int) -> np.ndarray:
        """The images of batch `batch` this process reads: its part of the global batch."""
        indices = self._order[batch * self.batch_size:(batch + 1) * self.batch_size]
        indices = indices[:len(indices) - len(indices) % self.devices]
        process, processes = self.shard
        share = len(indices) // processes
        return indices[process * share:(process + 1) * share]

    def __getitem__(self, batch: int):
        crops, points, _ = zip(*(self.sample(int(i)) for i in self.batch_indices(batch)))
        return np.stack(crops), encode_regression(np.stack(points), self.input_size)
