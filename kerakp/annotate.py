"""Label new face images with a trained model (the teacher) and a confidence proxy per image.

The proxy is the Predictor's flip disagreement: the NME between the model's reading of the final face crop
and the mirrored reading of the mirrored crop (through the markup's flip map). A model that is sure of a
face reads both alike; large values mark labels to check or drop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from kerakp.data.readers import LandmarkSet, person_of, read_image
from kerakp.inference import Predictor


def annotate(predictor: Predictor, items: list[tuple[str, Path]], progress: bool = True) -> tuple[LandmarkSet, pd.DataFrame]:
    """Predict every image; returns the labelled faces found and a table (image, found, flip_nme)."""
    rows, kept, points = [], [], []
    for name, path in tqdm(items, desc="annotating", unit="img", disable=not progress):
        image = read_image(path)
        result = predictor.predict(image)
        found = result.points
        rows.append((name, int(found is not None), result.flip_nme))
        if found is not None:
            kept.append((name.replace("/", "_"), path))
            points.append(found)
    table = pd.DataFrame(rows, columns=["image", "found", "flip_nme"])
    names = [name for name, _ in kept]
    data = LandmarkSet(predictor.schema, [path for _, path in kept],
                       np.stack(points) if points else np.empty((0, predictor.schema.num_points, 2)),
                       [person_of(n) for n in names], source="kerakp annotate", names=names)
    return data, table
