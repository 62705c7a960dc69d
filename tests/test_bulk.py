"""Labelling many images: batched and parallel reads give the rows one image at a time gives; a run stopped half
way leaves a valid partial file and resumes to the file an uninterrupted run writes, reading no image twice; the
same on Ray; Parquet; and the labelled set of `annotate` likewise."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import kerakp.bulk as bulk
from kerakp.api import Landmarker
from kerakp.cli import main
from kerakp.results import Columns

READ_IMAGES = bulk.read_images


@pytest.fixture(scope="module")
def images(synthetic_csv, tmp_path_factory):
    """24 synthetic faces and one file that is not an image."""
    folder = tmp_path_factory.mktemp("bulk") / "images"
    folder.mkdir()
    for path in sorted((synthetic_csv.parent / "images").glob("*.jpg"))[:24]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """The uninterrupted run of the default preset (300w-fast), in this process, one image a read."""
    out = tmp_path_factory.mktemp("reference") / "p.csv"
    counts = Landmarker().predict_to(out, images, batch=1, workers=1, progress=False)
    assert counts["images"] == 25 and counts["skipped"] == [f"broken.jpg: {images / 'broken.jpg'}: not a readable image"]
    return out


def stop_after(monkeypatch, chunks: int) -> list:
    """read_images raises KeyboardInterrupt on its call after `chunks`; returns the names it was given."""
    seen = []

    def reading(predictor, items, max_faces=None):
        if len(seen) >= chunks:
            raise KeyboardInterrupt
        seen.append([name for name, _ in items])
        return READ_IMAGES(predictor, items, max_faces)

    monkeypatch.setattr(bulk, "read_images", reading)
    return seen


def test_batched_and_parallel_reads_write_the_rows_one_at_a_time_writes(images, reference, tmp_path):
    Landmarker().predict_to(tmp_path / "batched.csv", images, batch=16, workers=1, progress=False)
    Landmarker().predict_to(tmp_path / "two.csv", images, batch=4, workers=2, progress=False)
    assert (tmp_path / "batched.csv").read_bytes() == (tmp_path / "two.csv").read_bytes() == reference.read_bytes()
    table = pd.read_csv(reference)
    assert len(table) == 24 and "broken.jpg" not in set(table["image"]) and not list(tmp_path.glob("*.partial*"))


def test_a_small_run_is_read_in_this_process(images, reference, tmp_path, monkeypatch):
    """Worker processes start only where each has enough images to pay for its start-up."""
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert bulk.default_workers() == 4
    assert [bulk.default_workers(n) for n in (1, 63, 64, 96, 100_000)] == [1, 1, 2, 3, 4]
    assert bulk.default_workers(64, batch=4) == 4

    def no_processes(method):
        raise AssertionError("a run of 25 images started worker processes")

    monkeypatch.setattr("multiprocessing.get_context", no_processes)
    Landmarker().predict_to(tmp_path / "p.csv", images, progress=False)
    assert (tmp_path / "p.csv").read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_file_reading_no_image_twice(images, reference, tmp_path,
                                                                                      monkeypatch, suffix):
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow is not installed")
    out = tmp_path / f"p{suffix}"
    first = stop_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        Landmarker().predict_to(out, images, batch=4, workers=1, progress=False)
    partial = bulk.partial_of(out)
    done = pd.read_parquet(partial) if suffix == ".parquet" else pd.read_csv(partial)   # a valid file
    assert not out.exists() and list(done["image"]) == [n for chunk in first for n in chunk]
    assert json.loads(partial.with_name(partial.name + ".json").read_text())["done"] == 12
    with pytest.raises(Exception, match="an interrupted run's partial output; pass --resume"):
        Landmarker().predict_to(out, images, batch=4, workers=1, progress=False)
    second = stop_after(monkeypatch, 100)
    counts = Landmarker().predict_to(out, images, batch=4, workers=1, resume=True, progress=False)
    read = [n for chunk in first + second for n in chunk]
    assert sorted(read) == sorted(set(read)) and len(read) == 25 and counts["resumed_after"] == 12
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    pd.testing.assert_frame_equal(table, pd.read_csv(reference), check_dtype=False)
    if suffix == ".csv":
        assert out.read_bytes() == reference.read_bytes()
    assert not partial.exists()


def test_ctrl_c_on_the_command_line_leaves_a_partial_file_that_resumes(images, reference, tmp_path):
    out = tmp_path / "p.csv"
    command = [sys.executable, "-m", "kerakp", "predict", "300w-fast", str(images), "--out", str(out), "--workers", "1",
               "--batch", "2"]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = tmp_path / "p.csv.partial.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (progress.is_file() and json.loads(progress.read_text() or "{}").get("done", 0) >= 4):
        time.sleep(0.05)
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=60)
    assert running.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert 4 <= len(pd.read_csv(tmp_path / "p.csv.partial")) < 24 and not out.exists()
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "after the" in done.stdout and out.read_bytes() == reference.read_bytes()


def test_annotate_streams_the_labelled_set_and_resumes_it(images, tmp_path, monkeypatch):
    from kerakp.data.formats import load_dataset

    whole, counts = Landmarker().annotate(images, tmp_path / "whole", batch=4, workers=1, progress=False)
    assert counts["kept"] == 24 and len(counts["skipped"]) == 1 and len(load_dataset(whole)) == 24
    stop_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        Landmarker().annotate(images, tmp_path / "resumed", batch=4, workers=1, progress=False)
    assert (tmp_path / "resumed.partial" / "annotations.csv").is_file() and not (tmp_path / "resumed").exists()
    stop_after(monkeypatch, 100)
    resumed, _ = Landmarker().annotate(images, tmp_path / "resumed", batch=4, workers=1, resume=True, progress=False)
    for name in ("annotations.csv", "landmarks.csv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "resumed" / "images").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole" / "images").iterdir())


def test_bulk_bad_input_is_one_line(images, tmp_path):
    run = lambda *a: CliRunner().invoke(main, [str(x) for x in a])   # noqa: E731
    result = run("predict", "300w", images, "--out", tmp_path / "p.csv", "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.output.strip().splitlines()[-1]
    result = run("predict", "300w", images, "--out", tmp_path / "p.txt")
    assert result.exit_code == 2 and "the predictions go to a .csv or .parquet file" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"no")
    result = run("predict", "300w", tmp_path / "bad", "--out", tmp_path / "q.csv", "--workers", "1")
    assert result.exit_code == 2 and "no readable image" in result.output and not list(tmp_path.glob("q.csv*"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install -e '.[ray]')")
def test_ray_writes_the_rows_a_local_run_writes(images, reference, tmp_path):
    counts = Landmarker().predict_to(tmp_path / "ray.csv", images, batch=4, workers=2, ray="local", progress=False)
    assert counts["images"] == 25 and len(counts["skipped"]) == 1
    assert (tmp_path / "ray.csv").read_bytes() == reference.read_bytes()
    assert np.isfinite(pd.read_csv(tmp_path / "ray.csv")["x0"]).all()
    os.environ.pop("RAY_ADDRESS", None)


def test_a_ray_actor_reads_a_batch_into_the_rows_a_local_run_writes(images, reference):
    """The actor of `kerakp.distributed`, called as Ray Data calls it (without Ray: the run itself is slow-marked)."""
    from kerakp.distributed import _Reader

    landmarker = Landmarker()
    names = ["broken.jpg", *sorted(p.name for p in images.glob("*.jpg") if p.name != "broken.jpg")[:3]]
    batch = {"position": np.arange(4), "name": np.array(names), "path": np.array([str(images / n) for n in names])}
    read = pd.DataFrame(_Reader(landmarker._spec(None), landmarker.info.markup, Columns())(batch))
    assert "not a readable image" in read["_error"][0] and read["_error"][1:].eq("").all()
    expected = pd.read_csv(reference).set_index("image").loc[names[1:]]
    got = read.iloc[1:].set_index("image")[expected.columns]
    assert np.allclose(got.to_numpy(float), expected.to_numpy(float), atol=1e-4, equal_nan=True)
