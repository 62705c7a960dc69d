"""Figures: cumulative error distribution (CED), training curves and prediction grids (PNG, no display). Truth
and prediction are blue and orange, which colour-blind readers tell apart."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kerakp.io import replacing  # noqa: E402
from kerakp.metrics import auc, ced_curve  # noqa: E402

TRUTH, PREDICTION = "#0072B2", "#E69F00"   # blue and orange (Okabe-Ito), for matplotlib; BGR in `kerakp.drawing`


def ced_limit(curves) -> float:
    """The CED's x range: reaching the 95th percentile of every curve's errors, never below 0.1."""
    values = [np.asarray(nme, float) for nme in curves]
    high = max((np.nanpercentile(v, 95) for v in values if np.isfinite(v).any()), default=0.0)
    return float(max(0.1, np.ceil(high * 20) / 20))   # up to the next 0.05


def _save(fig, path) -> Path:
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return Path(path)


def plot_ced(curves: dict[str, np.ndarray], path, limit: float | None = None,
             title: str = "Cumulative error distribution") -> Path:
    """One CED line per named array of per-image NME values, to `limit` (default `ced_limit`); the legend gives
    each curve's AUC to 0.1, the usual figure, whatever the range shown."""
    limit = limit or ced_limit(curves.values())
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, nme in curves.items():
        x, y = ced_curve(np.asarray(nme), limit)
        ax.plot(x, y, label=f"{label} (AUC@0.1 {auc(np.asarray(nme), 0.1):.3f})")
    ax.set(xlabel="NME (outer-eye-corner distance)", ylabel="fraction of images", xlim=(0, limit), ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_history(history_csv, path) -> Path:
    """Loss and NME per epoch (training and validation) from a Keras CSVLogger file."""
    history = pd.read_csv(history_csv)
    keys = [k for k in ("loss", "nme") if k in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot(history["epoch"] + 1, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(history["epoch"] + 1, history[f"val_{key}"], label=f"val {key}")
        ax.set(xlabel="epoch", ylabel=key, yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_grid(images: list[np.ndarray], truths: list, preds: list, titles: list[str], path, columns: int = 4) -> Path:
    """Images with ground truth (blue) and predictions (orange), each cropped around its face, under one legend."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, truth, pred, title in zip(axes.ravel(), images, truths, preds, titles):
        ax.imshow(image)
        shown = [p for p in (truth, pred) if p is not None]
        if shown:
            allpts = np.concatenate(shown)
            lo, hi = np.nanmin(allpts, axis=0), np.nanmax(allpts, axis=0)
            pad = 0.25 * (hi - lo).max()
            ax.set_xlim(lo[0] - pad, hi[0] + pad)
            ax.set_ylim(hi[1] + pad, lo[1] - pad)
        if truth is not None:
            ax.scatter(truth[:, 0], truth[:, 1], s=5, c=TRUTH, linewidths=0, label="truth")
        if pred is not None:
            ax.scatter(pred[:, 0], pred[:, 1], s=5, c=PREDICTION, linewidths=0, label="prediction")
        ax.set_title(title, fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, markerscale=3, frameon=False, bbox_to_anchor=(0.5, 1.02))
    return _save(fig, path)


def plot_tradeoff(results: dict[str, tuple[float, float]], path, xlabel: str = "inference ms per face (Keras, 1 crop)") -> Path:
    """NME against cost, one labelled point per model."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, (cost, nme) in results.items():
        ax.scatter(cost, nme)
        ax.annotate(label, (cost, nme), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel=xlabel, ylabel="NME (end to end)", title="Accuracy against inference cost")
    ax.grid(alpha=0.3)
    return _save(fig, path)
