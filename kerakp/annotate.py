"""Label new face images with a trained model (the teacher) and a confidence proxy per image.

The proxy is the flip disagreement: the NME between the prediction on the image and the mirrored
prediction on its mirror image (through the markup's flip map). A model that is sure of a face predicts
both alike; large values mark labels to check or drop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from kerakp.data.readers import LandmarkSet, person_of, read_image
from kerakp.inference import Predictor
from kerakp.metrics import per_image_nme


def flip_disagreement(predictor: Predictor, image: np.ndarray, points: np.ndarray) -> float:
    """NME between `points` and the un-mirrored prediction on the mirrored image (NaN if no face there)."""
    mirrored = predictor.predict(image[:, ::-1].copy()).points
    if mirrored is None:
        return float("nan")
    back = predictor.schema.flip_points(mirrored, image.shape[1])
    return float(per_image_nme(points[None], back[None], predictor.schema, scale=max(image.shape[:2]))[0])


def annotate(predictor: Predictor, items: list[tuple[str, Path]], progress: bool = True) -> tuple[LandmarkSet, pd.DataFrame]:
    """Predict every image; returns the labelled faces found and a table (image, found, flip_nme)."""
    rows, kept, points = [], [], []
    for name, path in tqdm(items, desc="annotating", unit="img", disable=not progress):
        image = read_image(path)
        found = predictor.predict(image).points
        score = flip_disagreement(predictor, image, found) if found is not None else float("nan")
        rows.append((name, int(found is not None), score))
        if found is not None:
            kept.append((name.replace("/", "_"), path))
            points.append(found)
    table = pd.DataFrame(rows, columns=["image", "found", "flip_nme"])
    names = [name for name, _ in kept]
    data = LandmarkSet(predictor.schema, [path for _, path in kept],
                       np.stack(points) if points else np.empty((0, predictor.schema.num_points, 2)),
                       [person_of(n) for n in names], source="kerakp annotate", names=names)
    return data, table
