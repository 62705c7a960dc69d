"""Training past one device and past memory: data-parallel on two virtual CPU devices (JAX, TensorFlow),
mixed precision, the decode cache's budget, and packed sets."""
import gc
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.augment import Augment
from kerakp.data.dataset import split_by_person
from kerakp.data.formats import load_dataset
from kerakp.data.sequence import KeypointSequence
from kerakp.model_info import CropRule

JOB = Path(__file__).with_name("scale_job.py")


def job(backend, devices, distributes, precision, data, out) -> dict:
    """The runs of `tests/scale_job.py` (one per way of distributing, in one process) by name."""
    done = subprocess.run([sys.executable, str(JOB), backend, str(devices), distributes, precision, str(data), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install -e '.[jax]')")
def test_data_parallel_on_two_jax_devices_matches_one_device(synthetic_csv, tmp_path):
    runs = job("jax", 2, "none,data-parallel", "float32", synthetic_csv, tmp_path)
    one, two = runs["none"], runs["data-parallel"]
    assert abs(two["loss"] / one["loss"] - 1) < 0.02
    assert np.allclose(two["outputs"], one["outputs"], atol=1e-3)   # crop fractions; Adam amplifies rounding


@pytest.mark.slow
def test_data_parallel_on_two_tensorflow_devices_matches_one_device(synthetic_csv, tmp_path):
    """MirroredStrategy over two logical CPUs: the first epoch's loss and the saved model's outputs match the
    one-device run's, and the saved model loads on one device and predicts as it did."""
    runs = job("tensorflow", 2, "none,data-parallel", "float32", synthetic_csv, tmp_path)
    one, two = runs["none"], runs["data-parallel"]
    assert abs(two["loss"] / one["loss"] - 1) < 0.02
    # Adam turns rounding in near-zero gradients into whole steps (up to 1e-3 on some sets); BatchNorm statistics
    # per replica instead of over the global batch move the outputs by 0.07-0.1
    assert np.allclose(two["outputs"], one["outputs"], atol=5e-3)
    from kerakp.runtime import load_keras_model

    crops = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert np.allclose(load_keras_model(tmp_path / "data-parallel" / "model.keras").predict_on_batch(crops),
                       two["outputs"], atol=1e-5)


@pytest.mark.slow
def test_mixed_precision_trains_and_saves_a_float32_model(synthetic_csv, tmp_path):
    mixed = job("tensorflow", 1, "none", "mixed_bfloat16", synthetic_csv, tmp_path)["none"]
    assert np.isfinite(mixed["loss"]) and mixed["dtype"] == "float32"
    from kerakp.runtime import load_keras_model

    model = load_keras_model(tmp_path / "none" / "model.keras")
    assert {w.dtype for w in model.weights} == {"float32"} and model.dtype_policy.name == "float32"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install -e '.[jax]')")
def test_a_batch_that_does_not_divide_over_the_devices_is_one_line(synthetic_csv, tmp_path):
    import os

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-m", "kerakp", "--backend", "jax", "train", "--data", str(synthetic_csv),
                           "--out", str(tmp_path / "run"), "--distribute", "data-parallel", "--batch-size", "3",
                           "--backbone", "simplecnn", "--set", "calibration_images=0"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --batch-size 3 does not divide over 2 devices; use a multiple of 2"], done.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_the_decode_cache_keeps_to_its_budget(synthetic_set):
    one_image = synthetic_set.image(0).nbytes
    seq = KeypointSequence(synthetic_set, CropRule(32), 8, Augment(), cache_mb=3.5 * one_image / (1 << 20))
    for i in range(len(seq)):
        seq[i]
    assert len(seq._images) == 3 and seq.cached_bytes <= seq.cache_bytes
    none = KeypointSequence(synthetic_set, CropRule(32), 8, cache_mb=0)
    none[0]
    assert len(none._images) == 0
    everything = KeypointSequence(synthetic_set, CropRule(32), 8)
    for i in range(len(everything)):
        everything[i]
    assert len(everything._images) == len(synthetic_set)


@pytest.mark.slow
def test_a_packed_set_reads_like_its_source_and_trains(synthetic_csv, tmp_path):
    packed = tmp_path / "packed"
    result = CliRunner().invoke(main, ["pack", str(synthetic_csv), str(packed), "--size", "96"])
    assert result.exit_code == 0, result.output
    source, read = load_dataset(synthetic_csv), load_dataset(packed)
    assert len(read) == len(source) and read.schema.name == "ibug68" and read.persons == source.persons
    assert split_by_person(read, 0.2, 0) == split_by_person(source, 0.2, 0)
    image = read.image(0)
    assert image.shape == (96, 96, 3) and not isinstance(image, np.memmap)
    box = read.keypoints[0].max(axis=0) - read.keypoints[0].min(axis=0)
    assert abs(96 / max(box) - 2.0) < 0.05                         # context 2: the face fills half the crop
    assert type(read.subset([0, 2]).pixels).__name__ == "ImageRows"  # a subset keeps references, no copies
    if Path("/proc/self/fd").is_dir():                                # a dropped pack closes its file
        held = lambda: [os.path.realpath(f"/proc/self/fd/{n}") for n in os.listdir("/proc/self/fd")].count(  # noqa: E731
            str((packed / "images.npy").resolve()))
        before = held()
        del read, image
        gc.collect()
        assert before >= 1 and held() == before - 1
    again = CliRunner().invoke(main, ["pack", str(synthetic_csv), str(packed), "--size", "96"])
    assert again.exit_code == 2 and "packed: already exists" in again.stderr
    trained = CliRunner().invoke(main, ["train", "--data", str(packed), "--out", str(tmp_path / "run"), "--epochs", "1",
                                        "--backbone", "simplecnn", "--input-size", "32", "--batch-size", "8",
                                        "--set", "head_units=8", "--set", "calibration_images=8", "--cache-mb", "1"])
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "run" / "split.json").read_text())["train_images"] < len(source)
