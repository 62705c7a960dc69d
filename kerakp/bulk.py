"""Labelling many images: read in chunks (the crops of a chunk's images go through the model together), spread
over worker processes, written as they are done, resumable.

`read_images` reads one chunk with a `Predictor`: what `Landmarker.predict_many`, the worker processes and the
Ray job (`kerakp.distributed`) all run. `read_all` yields the chunks' results in input order, from this process
(`workers` 1) or from a pool of processes that each hold their own model. A `TableSink` streams the predictions
table (`kerakp.results.rows`) to CSV or Parquet (by the suffix): rows go to `<out>.partial` chunk by chunk, with
`<out>.partial.json` recording how many inputs are done, and the file is renamed to `<out>` when every image is
read. Ctrl-C leaves a valid partial file; `resume` skips the inputs it records and ends with the file an
uninterrupted run writes (the same chunks, so the same rows and values).
"""
from __future__ import annotations

import itertools
import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from kerakp.data.images import read_image
from kerakp.errors import KerakpError
from kerakp.inference import Predictor
from kerakp.io import refuse_existing, remove, uninterrupted, write_json
from kerakp.results import Columns, Face, ImageFaces


@dataclass(frozen=True)
class ReadSpec:
    """What a worker process needs to build its own predictor: the model file, the `Predictor` options, the
    threads of its model and the faces kept per image."""

    model: str
    options: dict = field(default_factory=dict)
    threads: int | None = 1
    max_faces: int | None = None

    def predictor(self) -> Predictor:
        from kerakp.runtime import open_model

        return Predictor(open_model(self.model, self.threads), **self.options)


def read_images(predictor: Predictor, items: list[tuple[str, Path]], max_faces: int | None = None) -> list[ImageFaces]:
    """The faces of each (name, path) image, read as one batch; an unreadable file gets its `error`."""
    results, images, readable = [ImageFaces(name, Path(path)) for name, path in items], [], []
    for result in results:
        try:
            images.append(read_image(result.path))
            readable.append(result)
        except KerakpError as err:
            result.error = str(err)
    info = predictor.info
    for result, image, faces in zip(readable, images, predictor.predict_faces(images, max_faces) if images else []):
        result.faces = [Face.from_prediction(p, info.markup, image.shape, info.point_spread) for p in faces if p.points is not None]
    return results


_worker: tuple[Predictor, int | None] | None = None


def _start_worker(spec: ReadSpec) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    _worker = (spec.predictor(), spec.max_faces)


def _read_chunk(items):
    predictor, max_faces = _worker
    return read_images(predictor, items, max_faces)


def default_workers(images: int | None = None, batch: int = 16) -> int:
    """One worker per core, up to 8, and (given the number of `images`) no more than have two chunks of `batch`
    images each: a worker's start-up (its imports and model) pays off only over several chunks, so a small run,
    a single photo above all, is read in this process."""
    cores = max(1, min(8, os.cpu_count() or 1))
    return cores if images is None else max(1, min(cores, images // (2 * batch)))


def read_all(spec: ReadSpec, items, batch: int = 16, workers: int | None = 1, predictor: Predictor | None = None,
             start: int = 0) -> Iterator[list[ImageFaces]]:
    """The results of `items[start:]` ((name, path) pairs) in chunks of `batch`, in input order: read here (with
    `predictor`, or one built from `spec`) when `workers` is 1, else by that many worker processes (None:
    `default_workers` for the images left), with two chunks each in flight at most (so memory stays flat however
    many images there are)."""
    chunks = (items[first:first + batch] for first in range(start, len(items), batch))
    workers = default_workers(len(items) - start, batch) if workers is None else workers
    if workers <= 1:
        predictor = predictor or spec.predictor()
        for chunk in chunks:
            yield read_images(predictor, chunk, spec.max_faces)
        return
    import multiprocessing
    from collections import deque

    pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker, (spec,))
    try:
        pending = deque(pool.apply_async(_read_chunk, (chunk,)) for chunk in itertools.islice(chunks, 2 * workers))
        while pending:
            done = pending.popleft().get()
            pending.extend(pool.apply_async(_read_chunk, (chunk,)) for chunk in itertools.islice(chunks, 1))
            yield done
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def skipped_line(counts: dict) -> str:
    """One line naming the files a run skipped as unreadable ("" for none)."""
    skipped = counts["skipped"]
    names = ", ".join(line.split(": ")[0] for line in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    return f"skipped {len(skipped)} of {counts['images']} files, not readable images: {names}" if skipped else ""


def nothing_readable(counts: dict) -> KerakpError:
    """The error of a run none of whose inputs was a readable image (it writes nothing)."""
    skipped = counts["skipped"]
    return KerakpError(f"no readable image: {skipped[0]}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))


def partial_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


class TableSink:
    """The predictions table streamed to `out` (`.csv`, or `.parquet` with pyarrow) through `<out>.partial`: see
    the module docstring. `settings` (the options that shape the rows) must match on resume."""

    INTEGERS = ("face", "found", "detected")

    def __init__(self, out, columns: list[str], settings: dict, inputs, resume: bool = False,
                 overwrite: bool = False):
        self.out, self.columns, self.total = Path(out), columns, len(inputs)
        self.partial, self.parquet = partial_of(self.out), self.out.suffix.lower() == ".parquet"
        self.progress = self.partial.with_name(self.partial.name + ".json")
        self.dtypes = {c: "object" if c == "image" else "int64" if c in self.INTEGERS else "float64" for c in columns}
        if self.out.suffix.lower() not in (".csv", ".parquet"):
            raise KerakpError(f"{self.out}: the predictions go to a .csv or .parquet file")
        if self.parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise KerakpError(f"{self.out}: writing Parquet needs pyarrow (pip install pyarrow); or use .csv") from None
        self.settings = {**settings, "columns": columns}
        self.done = 0
        if resume:
            kept = self._resumed(inputs)
        else:
            refuse_existing(self.out, overwrite)
            if self.partial.exists() and not overwrite:
                raise KerakpError(f"{self.partial.resolve()}: an interrupted run's partial output; pass --resume to "
                                  "continue it or --overwrite to start again")
            kept = self.frame([])
        self._open(kept)

    def _resumed(self, inputs):
        """The rows of the interrupted run's completed inputs (a hard kill may have written one chunk more)."""
        import pandas as pd

        if not self.partial.is_file() or not self.progress.is_file():
            raise KerakpError(f"{self.out}: nothing to resume (no {self.partial.name} and its progress file)")
        record = json.loads(self.progress.read_text())
        if record["settings"] != self.settings or record["inputs"] != len(inputs):
            raise KerakpError(f"{self.partial}: written with other options or inputs; rerun with those, or pass --overwrite")
        self.done = record["done"]
        try:
            table = pd.read_parquet(self.partial) if self.parquet else pd.read_csv(self.partial, dtype={"image": str})
        except Exception as err:   # a Parquet file cut off by a hard kill has no footer
            raise KerakpError(f"{self.partial}: not readable ({type(err).__name__}); pass --overwrite to start again") from None
        names = list(itertools.islice(inputs.names(), self.done + int(record["settings"]["batch"])))
        if not set(table["image"]) <= set(names):
            raise KerakpError(f"{self.partial}: holds images that are not among these inputs; pass --overwrite to start again")
        return table[table["image"].isin(set(names[:self.done]))].astype(self.dtypes)

    def _open(self, kept) -> None:
        """The partial file with the `kept` rows in it, open for more."""
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            types = {"object": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
            self.schema = pa.schema([(column, types[dtype]) for column, dtype in self.dtypes.items()])
            self.writer = pq.ParquetWriter(self.partial.with_name(self.partial.name + ".tmp"), self.schema)
            self._write(kept)
            self.partial.with_name(self.partial.name + ".tmp").replace(self.partial)
        else:
            kept.to_csv(self.partial, index=False)
            self.writer = open(self.partial, "a", newline="")
        self._record()

    def frame(self, found: list[dict]):
        import pandas as pd

        return pd.DataFrame(found, columns=self.columns).astype(self.dtypes)

    def _write(self, frame) -> None:
        if self.parquet:
            import pyarrow as pa

            self.writer.write_table(pa.Table.from_pandas(frame, self.schema, preserve_index=False))
        else:
            self.writer.write(frame.to_csv(index=False, header=False))
            self.writer.flush()

    def _record(self) -> None:
        write_json(self.progress, {"inputs": self.total, "done": self.done, "settings": self.settings})

    def add(self, found: list[dict], count: int) -> None:
        """Write one chunk's rows, `count` more inputs read."""
        self._write(self.frame(found))
        self.done += count
        self._record()

    def discard(self) -> None:
        """Close the file and remove it and its progress: nothing written."""
        self.writer.close()
        remove(self.partial)
        remove(self.progress)

    def close(self, complete: bool) -> Path:
        """Close the file: renamed to `out` when `complete`, else left as a valid partial file."""
        self.writer.close()
        if not complete:
            return self.partial
        remove(self.out)
        self.partial.replace(self.out)
        remove(self.progress)
        return self.out


def _staged_folder(folder: Path, resume: bool, overwrite: bool) -> Path:
    """`<folder>.partial`, where a streamed folder grows until it is complete: new (an existing `folder` only with
    `overwrite`), or the interrupted run's when resuming."""
    staging = partial_of(folder)
    if not resume:
        refuse_existing(folder, overwrite)
        if staging.exists() and not overwrite:
            raise KerakpError(f"{staging.resolve()}: an interrupted run's partial output; pass --resume to continue it "
                              "or --overwrite to start again")
        remove(staging)
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def _place(staging: Path, folder: Path) -> Path:
    remove(folder)
    staging.replace(folder)
    return folder


def predict_table(spec: ReadSpec, markup: str, inputs, out, extra: Columns = Columns(), draw=None,
                  batch: int = 16, workers: int | None = None, resume: bool = False, overwrite: bool = False,
                  progress: bool = True, predictor: Predictor | None = None) -> dict:
    """The predictions table of every image in `inputs` streamed to `out` (`TableSink`), read by `workers`
    processes (or here, with `predictor`), each image also drawn into the folder `draw` when given; returns this
    run's counts (images, faces, images with a face, faces from the detector's box, inputs done before a resume)
    and the skipped files' errors. Nothing is written when no image is readable."""
    from tqdm import tqdm

    from kerakp.data.images import image_files
    from kerakp.results import draw_image, rows, table_columns

    items = image_files(inputs)
    one = spec.max_faces == 1
    settings = {"model": spec.model, "options": spec.options, "max_faces": spec.max_faces, **asdict(extra), "batch": batch}
    sink = TableSink(out, table_columns(markup, extra, one), settings, items, resume, overwrite)
    drawn = None if draw is None else _staged_folder(Path(draw), resume, overwrite)
    counts = {"images": 0, "faces": 0, "with_face": 0, "detected": 0, "skipped": [], "resumed_after": sink.done}
    try:
        with tqdm(total=len(items), initial=sink.done, desc="predicting", unit="img", disable=None if progress else True) as bar:
            for chunk in read_all(spec, items, batch, workers, predictor, start=sink.done):
                found = [row for image in chunk for row in rows(image, markup, extra, one)]
                with uninterrupted():
                    for image in chunk if drawn is not None else ():
                        draw_image(image, drawn, markup, extra.pose)
                    sink.add(found, len(chunk))
                counts["images"] += len(chunk)
                counts["skipped"] += [f"{image.name}: {image.error}" for image in chunk if image.error]
                counts["faces"] += sum(row["found"] for row in found)
                counts["detected"] += sum(row["detected"] for row in found)
                counts["with_face"] += sum(bool(image.faces) for image in chunk)
                bar.update(len(chunk))
    except BaseException:
        sink.close(complete=False)   # a valid partial file, for --resume
        raise
    if len(counts["skipped"]) == len(items):   # nothing readable: nothing written
        sink.discard()
        remove(drawn) if drawn is not None else None
        raise nothing_readable(counts)
    sink.close(complete=True)
    if drawn is not None:
        _place(drawn, Path(draw))
    return counts
