"""Codecs turn keypoints in crop pixels into training targets and model outputs back into crop pixels.

The regression codec predicts each coordinate as a fraction of the crop side, (x + 0.5) / S, so the crop's
edges are 0 and 1 whatever the input size. Missing points stay NaN in the targets (the losses mask them).
"""
from __future__ import annotations

import numpy as np


def encode_regression(points: np.ndarray, size: int) -> np.ndarray:
    """(..., K, 2) crop pixels -> (..., 2K) targets in crop fractions."""
    points = np.asarray(points, dtype=np.float32)
    return ((points + 0.5) / size).reshape(*points.shape[:-2], -1)


def decode_regression(outputs: np.ndarray, size: int) -> np.ndarray:
    """(..., 2K) model outputs -> (..., K, 2) crop pixels."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs.reshape(*outputs.shape[:-1], -1, 2) * size - 0.5
