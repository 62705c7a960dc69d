"""The bulk predictions table (`kerakp.bulk`) computed on a Ray cluster: Ray Data spreads the images over actors
that each hold one predictor (`kerakp.bulk.read_images`, the code a local worker runs), and the rows come back, in
input order, to the same streaming, resumable table as a local run. Needs `pip install kerakp[ray]`.

Every actor reads the image files itself, so on a cluster they must lie where every node sees them (a shared file
system). `address` None starts a local Ray instance with `workers` CPUs; `"auto"` or `"ray://host:10001"` joins a
running cluster (`ray.init(address=...)`).
"""
from __future__ import annotations

from dataclasses import asdict

from kerakp.bulk import ReadSpec, TableSink, nothing_readable, read_images
from kerakp.errors import KerakpError
from kerakp.results import Columns


class _Reader:
    """A Ray actor: one predictor, reading batches of (position, name, path) rows into the table's rows."""

    def __init__(self, spec: ReadSpec, markup: str, extra: Columns):
        self.spec, self.markup, self.extra = spec, markup, extra
        self.predictor = spec.predictor()

    def __call__(self, batch: dict) -> dict:
        import pandas as pd

        from kerakp.results import rows, table_columns

        items = list(zip(batch["name"], batch["path"]))
        found = []
        for position, image in zip(batch["position"], read_images(self.predictor, items, self.spec.max_faces)):
            base = {"_position": int(position), "_error": image.error}
            found += [{**row, **base} for row in rows(image, self.markup, self.extra, self.spec.max_faces == 1)] or [{"image": image.name, **base}]
        columns = table_columns(self.markup, self.extra, self.spec.max_faces == 1)
        frame = pd.DataFrame(found).reindex(columns=[*columns, "_position", "_error"])
        return {column: frame[column].to_numpy() for column in frame.columns}


def predict_dataset(spec: ReadSpec, markup: str, inputs, out, extra: Columns = Columns(),
                    batch: int = 16, workers: int = 2, address: str | None = None, resume: bool = False,
                    overwrite: bool = False, progress: bool = True) -> dict:
    """`kerakp.bulk.predict_table` with the images read by `workers` Ray actors (see the module docstring);
    returns the same counts."""
    try:
        import ray
    except ImportError:
        raise KerakpError("running on Ray needs Ray Data: pip install 'kerakp[ray]'") from None
    from tqdm import tqdm

    from kerakp.data.images import image_files
    from kerakp.results import table_columns

    items = image_files(inputs)
    columns = table_columns(markup, extra, spec.max_faces == 1)
    settings = {"model": spec.model, "options": spec.options, "max_faces": spec.max_faces, **asdict(extra), "batch": batch}
    sink = TableSink(out, columns, settings, items, resume, overwrite)
    counts = {"images": 0, "faces": 0, "with_face": 0, "detected": 0, "skipped": [], "resumed_after": sink.done}
    import logging

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=workers if address is None else None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)   # its per-run progress lines; ours is the bar below
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True   # rows in input order, as a local run writes them
        remaining = [{"position": k, "name": name, "path": str(path)} for k, (name, path) in enumerate(items) if k >= sink.done]
        dataset = ray.data.from_items(remaining).map_batches(
            _Reader, fn_constructor_args=(spec, markup, extra), batch_size=batch, concurrency=workers, num_cpus=1)
        with tqdm(total=len(items), initial=sink.done, desc="predicting on Ray", unit="img",
                  disable=None if progress else True) as bar:
            for frame in dataset.iter_batches(batch_format="pandas", batch_size=None) if remaining else ():
                failed = frame["_error"].astype(str).str.len() > 0
                found = frame[~failed]
                done = int(frame["_position"].max()) + 1
                sink.add(found[columns].to_dict("records"), done - sink.done)
                images = frame.drop_duplicates("_position")
                counts["images"] += len(images)
                counts["skipped"] += [f"{n}: {e}" for n, e in zip(frame.loc[failed, "image"], frame.loc[failed, "_error"])]
                counts["faces"] += int(found["found"].sum())
                counts["detected"] += int(found["detected"].sum())
                counts["with_face"] += int(found.loc[found["found"] == 1, "_position"].nunique())
                bar.update(len(images))
    except BaseException:
        sink.close(complete=False)
        raise
    finally:
        if started:
            ray.shutdown()
    if len(counts["skipped"]) == len(items):
        sink.discard()
        raise nothing_readable(counts)
    sink.close(complete=True)
    return counts

