"""Label new face images with a trained model (the teacher), with a confidence proxy per face, written as it goes.

The proxy is the Predictor's flip disagreement: the NME between the model's reading of the final face crop
and the mirrored reading of the mirrored crop (through the markup's flip map). A model that is sure of a
face reads both alike; large values mark labels to check or drop. The labels stream into `<out>.partial/` chunk
by chunk (`kerakp.bulk.read_all`), in the chosen layout and markup, beside `annotations.csv` (a row per face,
and one per image without a face) and the progress; the folder becomes `out` when every image is read, and a
run stopped before resumes where it stopped.
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np

from kerakp.bulk import ReadSpec, _place, _staged_folder, read_all
from kerakp.data.writers import Face as Labelled
from kerakp.errors import KerakpError
from kerakp.inference import Predictor
from kerakp.io import remove, uninterrupted, write_json
from kerakp.schemas import convert_points, get_schema

COLUMNS = ["image", "face", "found", "flip_nme", "kept", "label"]


def label_name(name: str, face: int) -> str:
    """The file name of an image's face in the labelled set: `a/b.jpg` -> `a_b.jpg`, its second face `a_b_face1.jpg`."""
    label = Path(name.replace("/", "_"))
    return str(label if face == 0 else label.with_name(f"{label.stem}_face{face}{label.suffix}"))


def annotate(spec: ReadSpec, markup: str, inputs, out, fmt: str = "ytf68", max_disagreement: float | None = None,
             label_markup: str | None = None, batch: int = 16, workers: int | None = None, resume: bool = False,
             overwrite: bool = False, progress: bool = True, predictor: Predictor | None = None) -> tuple[Path, dict]:
    """Label every face of every image in `inputs` (read by `spec` as `kerakp.bulk.read_all` does) into the new
    folder `out`: a set `kerakp train` reads, in layout `fmt` of `kerakp.data.formats.FORMATS` and the model's
    `markup` or `label_markup`, plus annotations.csv (image, face, found, flip_nme, kept, label); faces whose
    flip disagreement exceeds `max_disagreement` are left out. Returns the path to read the set from, and the
    counts (images, faces, kept, no face, skipped files, median flip NME)."""
    from tqdm import tqdm

    from kerakp.data.formats import FORMATS, WRITABLE
    from kerakp.data.images import image_files

    if fmt not in WRITABLE:
        raise KerakpError(f"unknown annotation format '{fmt}' (known: {', '.join(WRITABLE)})")
    source, target = get_schema(markup), get_schema(label_markup or FORMATS[fmt].markup or markup)
    convert_points(np.zeros((1, source.num_points, 2)), source, target)   # an impossible conversion fails first
    items = image_files(inputs)
    out = Path(out)
    staging = _staged_folder(out, resume, overwrite)
    progress_file, table_file = staging / "progress.json", staging / "annotations.csv"
    settings = {"model": spec.model, "options": spec.options, "max_faces": spec.max_faces, "format": fmt,
                "markup": target.name, "max_disagreement": max_disagreement, "batch": batch, "inputs": len(items)}
    done, flips = 0, []
    if resume and progress_file.is_file():
        record = json.loads(progress_file.read_text())
        if record["settings"] != settings:
            raise KerakpError(f"{staging}: written with other options or inputs; rerun with those, or pass --overwrite")
        done = record["done"]
    writer = FORMATS[fmt].write(staging, target, append=done > 0)
    if done:
        _keep_done(table_file, writer, set(itertools.islice(items.names(), done)))
    table = open(table_file, "a" if done else "w", newline="")
    rows = csv.writer(table)
    if not done:
        rows.writerow(COLUMNS)
    counts = {"images": 0, "faces": 0, "kept": 0, "no_face": 0, "skipped": [], "resumed_after": done}
    try:
        with tqdm(total=len(items), initial=done, desc="annotating", unit="img", disable=None if progress else True) as bar:
            for chunk in read_all(spec, items, batch, workers, predictor, start=done):
                with uninterrupted():
                    for image in chunk:
                        if image.error:
                            counts["skipped"].append(f"{image.name}: {image.error}")
                            continue
                        counts["no_face"] += not image.faces
                        rows.writerows([[image.name, 0, 0, "", 0, ""]] if not image.faces else [])
                        for k, face in enumerate(image.faces):
                            kept = max_disagreement is None or face.flip_nme <= max_disagreement
                            name = label_name(image.name, k) if kept else ""
                            if kept:
                                writer.add(Labelled(name, None, image.path, convert_points(face.points, source, target)))
                            rows.writerow([image.name, k, 1, f"{face.flip_nme:.6g}", int(kept), name])
                            counts["faces"] += 1
                            counts["kept"] += kept
                            flips.append(face.flip_nme)
                    table.flush()
                    done += len(chunk)
                    write_json(progress_file, {"done": done, "settings": settings})
                counts["images"] += len(chunk)
                bar.update(len(chunk))
    finally:
        table.close()
        written = writer.close()
    if counts["resumed_after"] == 0 and counts["kept"] == 0:
        remove(staging)
        raise KerakpError("no face left to label (none found, or all above --max-disagreement)"
                          + (f"; {len(counts['skipped'])} files not readable" if counts["skipped"] else ""))
    remove(progress_file)
    counts["median_flip_nme"] = float(np.median(flips)) if flips else float("nan")
    _place(staging, out)
    return out / written.relative_to(staging), counts


def _keep_done(table_file: Path, writer, names: set[str]) -> None:
    """After a hard kill, drop what was written of the chunk the progress file does not count."""
    with open(table_file, newline="") as handle:
        lines = list(csv.reader(handle))
    kept = [lines[0]] + [row for row in lines[1:] if row[0] in names]
    with open(table_file, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)
    writer.keep({row[5] for row in kept[1:] if row[5]})
