"""Fit kerakp's 3-D mean face (iBUG 68) from 2-D labels alone: rank-3 factorisation of many faces seen from
different angles (Tomasi and Kanade, 1992), made metric, then set upright and facing the camera.

    python scripts/fit_face3d.py [--data ../shared/data/300w_train] [--out kerakp/assets/face3d_ibug68.csv]

Each face's labelled points, centred and scaled, are two rows of a measurement matrix W (2F x 68). Under weak
perspective W = M S with M the per-face projection rows and S the 3 x 68 shape; the SVD's rank-3 part gives
them up to an invertible 3 x 3 Q, found by asking every face's two rows of M Q to be orthogonal and of equal
length. The shape is then turned so its frontal projection matches the mean 2-D face, with the nose tip
towards the camera, made symmetric (averaged with its mirror image) and scaled to an outer-eye-corner distance of 1. Axes: x to the image's right, y down,
z away from the camera (OpenCV's camera frame), so a frontal face has the identity rotation.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kerakp.data.dataset import model_subset
from kerakp.data.formats import load_dataset
from kerakp.runtime import open_model
from kerakp.schemas import get_schema


def factorise(shapes: np.ndarray) -> np.ndarray:
    """(F, K, 2) centred, scaled shapes -> (3, K) metric shape (up to a rotation and a reflection)."""
    W = np.concatenate([shapes[..., 0], shapes[..., 1]])            # rows: all x, then all y
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    M, S = U[:, :3] * np.sqrt(s[:3]), np.sqrt(s[:3])[:, None] * Vt[:3]
    F = len(shapes)
    mx, my = M[:F], M[F:]

    def row(a, b):   # the coefficients of a L b^T in the six unknowns of the symmetric L
        return np.array([a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0],
                         a[1] * b[1], a[1] * b[2] + a[2] * b[1], a[2] * b[2]])

    A = np.array([row(a, a) - row(b, b) for a, b in zip(mx, my)] + [row(a, b) for a, b in zip(mx, my)] + [row(mx[0], mx[0])])
    rhs = np.zeros(len(A))
    rhs[-1] = 1.0
    l = np.linalg.lstsq(A, rhs, rcond=None)[0]
    L = np.array([[l[0], l[1], l[2]], [l[1], l[3], l[4]], [l[2], l[4], l[5]]])
    values, vectors = np.linalg.eigh(L)
    Q = vectors @ np.diag(np.sqrt(np.clip(values, 1e-9, None)))
    return np.linalg.inv(Q) @ S


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/300w_train")
    parser.add_argument("--out", type=Path, default=Path("kerakp/assets/face3d_ibug68.csv"))
    args = parser.parse_args()
    data = model_subset(load_dataset(args.data), open_model("kerakp/presets/300w_mobilenetv2_heatmap.tflite").info.split, "train")
    points = data.keypoints[~np.isnan(data.keypoints).any(axis=(1, 2))]
    centred = points - points.mean(axis=1, keepdims=True)
    shapes = centred / np.sqrt((centred ** 2).sum(axis=(1, 2), keepdims=True) / points.shape[1])
    S = factorise(shapes)
    S -= S.mean(axis=1, keepdims=True)
    mean2d = shapes.mean(axis=0).T                                        # (2, K)
    # the rotation whose first two rows map S best onto the mean 2-D face, its third row their cross product
    A = np.linalg.lstsq(S.T, mean2d.T, rcond=None)[0].T                  # (2, 3)
    u, _, vt = np.linalg.svd(A)
    top = u @ np.eye(2, 3) @ vt
    R = np.vstack([top, np.cross(top[0], top[1])])
    shape = R @ S
    jaw_sides = shape[2, [0, 16]].mean()
    if shape[2, 30] > jaw_sides:            # the nose tip must be nearer the camera (smaller z) than the jaw's ends
        shape[2] *= -1
    mirrored = shape[:, list(get_schema("ibug68").flip)] * np.array([[-1.0], [1.0], [1.0]])
    shape = (shape + mirrored) / 2                                        # a mean face is symmetric
    eye = np.linalg.norm(shape[:, 45] - shape[:, 36])
    shape /= eye
    np.savetxt(args.out, shape.T, delimiter=",", fmt="%.5f", header="x,y,z (eye distance 1; x right, y down, z away from the camera)")
    frontal = shape[:2] * (np.sum(shape[:2] * mean2d) / np.sum(shape[:2] ** 2))   # best-scaled to the mean face
    residual = np.linalg.norm(frontal - mean2d, axis=0).mean() / np.linalg.norm(mean2d[:, 45] - mean2d[:, 36])
    print(f"wrote {args.out}: {points.shape[0]} faces; nose tip {shape[2, 30]:+.3f}, jaw ends {shape[2, [0, 16]].mean():+.3f}, "
          f"eye corners {shape[2, [36, 45]].mean():+.3f} deep; frontal fit to the mean 2-D face {residual:.4f} eye distances")


if __name__ == "__main__":
    main()
