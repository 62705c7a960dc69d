"""Label new face images with a trained model (the teacher) and a confidence proxy per face.

The proxy is the Predictor's flip disagreement: the NME between the model's reading of the final face crop
and the mirrored reading of the mirrored crop (through the markup's flip map). A model that is sure of a
face reads both alike; large values mark labels to check or drop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from kerakp.data.readers import LandmarkSet, image_files, person_of, read_image
from kerakp.errors import KerakpError
from kerakp.inference import Predictor

ANNOTATE_FORMATS = {"ytf68": ("ytf68", None), "pts": ("pts", None), "csv5": ("csv", "five")}   # name -> (layout, markup)


def annotate(predictor: Predictor, inputs, out, fmt: str = "ytf68", max_disagreement: float | None = None,
             max_faces: int | None = None, progress: bool = True) -> tuple[Path, pd.DataFrame]:
    """Label every face of every image in `inputs` into the new folder `out` (a set `kerakp train` reads, in
    layout `fmt`, plus annotations.csv: image, face, found, flip_nme, kept); faces whose flip disagreement
    exceeds `max_disagreement` are left out. An image's second face is named `<stem>_face1<suffix>`, and so
    on. Returns the path to read the set from, and the table."""
    from kerakp.data.writers import write_dataset
    from kerakp.io import replacing

    if fmt not in ANNOTATE_FORMATS:
        raise KerakpError(f"unknown annotation format '{fmt}' (known: {', '.join(ANNOTATE_FORMATS)})")
    out = Path(out)
    if out.exists():
        raise KerakpError(f"{out.resolve()}: already exists; choose a new folder")
    rows, kept, points = [], [], []
    for name, path in tqdm(image_files(inputs), desc="annotating", unit="img", disable=None if progress else True):
        faces = predictor.predict_faces([read_image(path)], max_faces)[0]
        rows += [(name, k, 1, face.flip_nme) for k, face in enumerate(faces)] or [(name, 0, 0, np.nan)]
        for k, face in enumerate(faces):
            label = Path(name.replace("/", "_"))
            kept.append((str(label if k == 0 else label.with_name(f"{label.stem}_face{k}{label.suffix}")), path))
            points.append(face.points)
    table = pd.DataFrame(rows, columns=["image", "face", "found", "flip_nme"])
    keep = (table["found"] == 1) & ((table["flip_nme"] <= max_disagreement) if max_disagreement is not None else True)
    table["kept"] = keep.astype(int)
    if not keep.any():
        raise KerakpError("no face left to label (none found, or all above --max-disagreement)")
    chosen = np.flatnonzero(keep.to_numpy()[table["found"].to_numpy() == 1])
    names = [kept[i][0] for i in chosen]
    data = LandmarkSet(predictor.schema, [kept[i][1] for i in chosen], np.stack([points[i] for i in chosen]),
                       [person_of(n) for n in names], source="kerakp annotate", names=names)
    layout, markup = ANNOTATE_FORMATS[fmt]
    with replacing(out, folder=True) as staging:
        written = write_dataset(data, staging / "set", layout, markup, progress=False)
        for item in (staging / "set").iterdir():
            item.rename(staging / item.name)
        (staging / "set").rmdir()
        table.to_csv(staging / "annotations.csv", index=False)
    return out / written.relative_to(staging / "set"), table
