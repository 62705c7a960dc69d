"""kerakp's 3-D mean face posed to a partially labelled face: where its 68 points would lie, visible or not.

A face labelled only where it is seen (AFLW: the far eye of a profile is blank) has no landmark box of the 68
points to crop around. `fit_mean_face` turns the mean face (`kerakp.analysis.face3d`) by the labelled yaw and
the pitch that fits best, projects it, and fits scale, roll and shift to the labelled points through the markup's
correspondence: the fitted 68 points give the crop box, the same box a fully labelled face would have.
"""
from __future__ import annotations

import numpy as np

from kerakp.analysis import face3d, rotation_from
from kerakp.schemas import Schema, derive_points, get_schema

PITCHES = np.arange(-30.0, 31.0, 7.5)   # degrees tried for a face whose pitch is not labelled


def _similarity(model: np.ndarray, target: np.ndarray):
    """Least-squares scale-rotation-shift of each candidate's (C, K, 2) model points onto (K, 2) target points, as
    complex numbers: the factor (C,) and shift (C,) of z -> a z + t, and each candidate's RMS residual."""
    q, p = model[..., 0] + 1j * model[..., 1], target[:, 0] + 1j * target[:, 1]
    qc, pc = q - q.mean(axis=1, keepdims=True), p - p.mean()
    a = (np.conj(qc) * pc).sum(axis=1) / np.maximum((np.abs(qc) ** 2).sum(axis=1), 1e-12)
    shift = p.mean() - a * q.mean(axis=1)
    residual = np.sqrt((np.abs(a[:, None] * q + shift[:, None] - p) ** 2).mean(axis=1))
    return a, shift, residual


def fit_mean_face(points: np.ndarray, schema: Schema, yaw: float) -> tuple[np.ndarray, float]:
    """The 68 points (68, 2) of the mean face turned by `yaw` (kerakp's sign, `kerakp.analysis`) and the best
    pitch of `PITCHES`, fitted to a face's labelled `points` of `schema` (at least two with a counterpart), and
    the fit's RMS residual in pixels; (NaN points, inf) when too few points are labelled."""
    model = np.stack([(face3d() @ rotation_from(yaw, pitch, 0.0).T)[:, :2] for pitch in PITCHES])   # (C, 68, 2)
    labelled = derive_points(model, get_schema("ibug68"), schema)                                   # (C, K, 2)
    keep = ~np.isnan(points).any(axis=1) & ~np.isnan(labelled[0]).any(axis=1)
    if keep.sum() < 2:
        return np.full((68, 2), np.nan), np.inf
    a, shift, residual = _similarity(labelled[:, keep], points[keep])
    best = int(np.argmin(residual))
    z = a[best] * (model[best, :, 0] + 1j * model[best, :, 1]) + shift[best]
    return np.stack([z.real, z.imag], axis=-1), float(residual[best])
