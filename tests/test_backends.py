"""Keras multi-backend: train a step on each installed backend, load each saved model on every other with the
same predictions, and run `kerakp train` with TensorFlow absent (the lent GPU machine has none)."""
import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BACKENDS = ("tensorflow", "jax", "torch")
JOB = Path(__file__).with_name("backend_job.py")


def installed(backend: str):
    return pytest.param(backend, marks=pytest.mark.skipif(
        importlib.util.find_spec(backend) is None, reason=f"Keras backend '{backend}' is not installed"))


def job(backend: str, *args) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run([sys.executable, str(JOB), *map(str, args)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_csv):
    """One trained-and-saved model per backend, made lazily."""
    made = {}

    def get(backend: str) -> Path:
        if backend not in made:
            out = tmp_path_factory.mktemp(backend)
            assert f"backend {backend}" in job(backend, "train", out, synthetic_csv)
            made[backend] = out
        return made[backend]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("backend", [installed(b) for b in BACKENDS])
def test_training_step_and_save(backend, trained):
    saved = np.load(trained(backend) / "crops.npz")
    assert np.isfinite(saved["loss"]) and saved["predictions"].shape == (8, 136)


@pytest.mark.slow
@pytest.mark.parametrize("source, target", list(itertools.permutations(BACKENDS, 2)))
def test_a_model_saved_on_one_backend_predicts_the_same_on_another(source, target, trained, tmp_path):
    for backend in (source, target):
        if importlib.util.find_spec(backend) is None:
            pytest.skip(f"Keras backend '{backend}' is not installed")
    run = trained(source)
    job(target, "predict", run / "model.keras", run / "crops.npz", tmp_path / "out.npz")
    ours, theirs = np.load(tmp_path / "out.npz")["predictions"], np.load(run / "crops.npz")["predictions"]
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="Keras backend 'jax' is not installed")
def test_kerakp_trains_without_tensorflow(synthetic_csv, tmp_path):
    output = job("jax", "--no-tensorflow", "cli-train", synthetic_csv, tmp_path / "run")
    assert "backend jax tensorflow imported: False" in output
    assert (tmp_path / "run" / "model.keras").is_file() and (tmp_path / "run" / "training_curves.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="Keras backend 'jax' is not installed")
def test_export_switches_to_tensorflow_for_a_model_trained_on_jax(trained, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    model = trained("jax") / "model.keras"
    out = tmp_path / "jax_model.tflite"
    done = subprocess.run([sys.executable, "-m", "kerakp", "export", str(model), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.is_file() and "max |export - keras|" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "kerakp", "--backend", "jax", "export", str(model)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "converts through TensorFlow; drop --backend jax" in refused.stderr
