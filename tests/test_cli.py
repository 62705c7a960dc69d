"""The command line end to end: help, train -> evaluate -> predict on real faces, resume, and bad input."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main

TINY = ["--backbone", "simplecnn", "--input-size", "48", "--batch-size", "16", "--set", "head_units=32",
        "--set", "calibration_images=20"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: kerakp {command} [OPTIONS]") and len(result.output.splitlines()) > 3


@pytest.fixture(scope="module")
def trained(ytf68_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run("train", "--data", ytf68_subset, "--out", out, "--epochs", 1, "--val-fraction", 0.3, *TINY)
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_the_run_folder(trained):
    for name in ("model.keras", "last.keras", "history.csv", "training_curves.png", "config.yaml", "split.json"):
        assert (trained / name).is_file(), name
    assert (trained / "model.keras").stat().st_size < 0.5 * (trained / "last.keras").stat().st_size  # no optimizer state
    split = json.loads((trained / "split.json").read_text())
    assert split["val_images"] > 0 and split["train_images"] + split["val_images"] == 60


def test_resume_continues_the_run(trained, ytf68_subset, tmp_path):
    import shutil

    run_dir = tmp_path / "resumed"
    shutil.copytree(trained, run_dir)
    result = run("train", "--data", ytf68_subset, "--out", run_dir, "--epochs", 2, "--val-fraction", 0.3, "--resume", *TINY)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    again = run("train", "--data", ytf68_subset, "--out", run_dir, "--epochs", 2, "--resume", *TINY)
    assert again.exit_code == 2 and "already trained 2 of 2 epochs" in again.output


@pytest.mark.slow
def test_train_starts_from_a_trained_model_or_refuses_one_that_does_not_fit(trained, ytf68_subset, synthetic_csv, tmp_path):
    result = run("train", "--data", ytf68_subset, "--out", tmp_path / "heat", "--epochs", 1, "--head", "heatmap",
                 "--init", trained / "model.keras", *TINY)
    assert result.exit_code == 0, result.output
    assert f"weight tensors from {trained / 'model.keras'}" in result.output   # the backbone; the head is new
    for init, message in [(tmp_path / "none.keras", "none.keras: model file not found"),
                          (trained / "model.keras", "has backbone 'simplecnn', this run trains 'resnet18'")]:
        result = run("train", "--data", synthetic_csv, "--out", tmp_path / "refused", "--epochs", 1, "--init", init,
                     *TINY, "--backbone", "resnet18")
        assert result.exit_code == 2 and message in result.output.strip().splitlines()[-1], result.output
        assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_the_accuracy_levers_train(trained, ytf68_subset, tmp_path):
    result = run("train", "--data", ytf68_subset, "--out", tmp_path / "levers", "--epochs", 1, "--head", "heatmap",
                 "--init", trained / "model.keras", "--set", "loss_along=0.5",
                 "--set", "heatmap_spread=1.5", "--set", "heatmap_weight=0.01", "--set", "decode_window=2", *TINY)
    assert result.exit_code == 0, result.output
    config = json.loads(__import__("zipfile").ZipFile(tmp_path / "levers" / "model.keras").read("config.json"))["config"]
    assert (config["heatmap_spread"], config["heatmap_weight"], config["decode_window"]) == (1.5, 0.01, 2)


@pytest.mark.slow
def test_the_seed_makes_a_run_repeatable(synthetic_csv, tmp_path):
    """The seed fixes the split, the augmentation, the initial weights and dropout: the same seed trains the
    same losses, another seed others."""
    def losses(seed, name):
        result = run("train", "--data", synthetic_csv, "--out", tmp_path / name, "--epochs", 2, "--seed", seed, *TINY)
        assert result.exit_code == 0, result.output
        return pd.read_csv(tmp_path / name / "history.csv")[["loss", "val_loss"]].to_numpy()

    first = losses(0, "a")
    assert np.allclose(losses(0, "b"), first, rtol=1e-5) and not np.allclose(losses(1, "c"), first, rtol=1e-3)


@pytest.mark.slow
def test_extra_data_is_trained_on_and_never_validated_on(synthetic_csv, tmp_path):
    from kerakp.data.synthetic import write_synthetic_set

    extra = write_synthetic_set(tmp_path / "extra", num_images=12, images_per_person=4, size=96, seed=3, progress=False)
    result = run("train", "--data", synthetic_csv, "--extra-data", extra, "--out", tmp_path / "run", "--epochs", 1, *TINY)
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    from kerakp.data.dataset import split_by_person
    from kerakp.data.formats import load_dataset

    main_set, extra_set = load_dataset(synthetic_csv), load_dataset(extra)
    val_persons = {main_set.persons[i] for i in split_by_person(main_set, 0.15, 0)[1]}
    kept = sum(person not in val_persons for person in extra_set.persons)   # a validation person's faces never train
    assert split["extra_images"] == kept and split["train_images"] + split["val_images"] == 48
    assert str(extra) in (tmp_path / "run" / "config.yaml").read_text()
    result = run("train", "--data", synthetic_csv, "--extra-data", tmp_path / "absent", "--out", tmp_path / "none", *TINY)
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].endswith("absent: no such file or folder")
    five = tmp_path / "five"
    five.mkdir()
    (five / "a_1.jpg").write_bytes(next((synthetic_csv.parent / "images").iterdir()).read_bytes())
    header = "image_name," + ",".join(f"point_{i}_{a}" for i in range(1, 6) for a in "xy")
    (five / "points.csv").write_text(header + "\na_1.jpg,10,20,30,20,20,30,12,40,28,40\n")
    result = run("train", "--data", synthetic_csv, "--extra-data", five / "points.csv", "--out", tmp_path / "none", *TINY)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(f"error: {five / 'points.csv'}: markup five, this run trains ibug68")
    assert not (tmp_path / "none").exists()


def test_evaluate_reports_end_to_end(trained, ytf68_subset, tmp_path):
    result = run("evaluate", trained / "model.keras", "--data", ytf68_subset, "--subset", "val", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("nme", "pck@0.05", "pck@0.10", "auc@0.5", "auc@0.08", "failure@0.08", "mae_px", "rmse_px",
                "mean_point_error_px", "detector_misses"):
        assert key in metrics
    assert metrics["box"] == "detector" and 0 < metrics["images"] < 60 and metrics["turn"] == 12.0
    per_image = pd.read_csv(tmp_path / "per_image.csv")
    assert len(per_image) == metrics["images"] and np.isclose(per_image["nme"].mean(), metrics["nme"])
    assert (tmp_path / "ced.png").stat().st_size > 1000 and (tmp_path / "grid.png").stat().st_size > 1000
    oracle = run("evaluate", trained / "model.keras", "--data", ytf68_subset, "--box", "oracle", "--turn", "0",
                 "--out", tmp_path / "o")
    assert "ground-truth boxes: not an end-to-end result" in oracle.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["turn"] == 0


def test_predict_writes_one_row_per_face(trained, ytf68_subset, tmp_path):
    images = ytf68_subset.parent / "training"
    out = tmp_path / "pred.csv"
    result = run("predict", trained / "model.keras", images, "--out", out, "--no-fallback", "--max-faces", 1)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns[:5]) == ["image", "found", "detected", "x0", "y0"] and frame.shape == (60, 3 + 136)
    assert set(frame["image"]) == {p.name for p in images.iterdir()}
    found = frame[frame["found"] == 1]
    assert len(found) > 55 and not found.iloc[:, 3:].isna().any().any() and (found["detected"] == 1).all()
    assert frame[frame["found"] == 0].iloc[:, 3:].isna().all().all()
    # where the detector finds no face the whole image is read, unless --no-fallback
    import cv2

    (tmp_path / "blank").mkdir()
    cv2.imwrite(str(tmp_path / "blank" / "grey.png"), np.full((120, 160, 3), 128, np.uint8))
    for fallback, found in (("--fallback", 1), ("--no-fallback", 0)):
        assert run("predict", trained / "model.keras", tmp_path / "blank", "--out", tmp_path / f"{fallback}.csv",
                   fallback).exit_code == 0
        grey = pd.read_csv(tmp_path / f"{fallback}.csv")
        assert list(grey[["face", "found", "detected"]].iloc[0]) == [0, found, 0] and len(grey) == 1
    # by default every face of an image gets a row, numbered from the largest
    assert run("predict", trained / "model.keras", images, "--out", out).exit_code == 2     # refused: it exists
    assert run("predict", trained / "model.keras", images, "--out", out, "--overwrite").exit_code == 0
    faces = pd.read_csv(out)
    assert list(faces.columns[:4]) == ["image", "face", "found", "detected"] and set(faces["image"]) == set(frame["image"])
    assert (faces.groupby("image")["face"].min() == 0).all() and (faces["found"] == 1).all()


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    from kerakp.models.landmark_model import LandmarkModel

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    LandmarkModel("simplecnn", "ibug68", 32, head_units=4).save(path)
    return path


def test_bad_inputs_get_one_line_and_exit_2(untrained_model, synthetic_csv, tmp_path):
    cases = [
        (["train", "--data", tmp_path / "nope.csv"], "nope.csv: no such file or folder"),
        (["train", "--data", synthetic_csv, "--backbone", "vgg7"], "'--backbone': 'vgg7' is not one of 'mobilenetv2'"),
        (["train", "--data", synthetic_csv, "--set", "epochz=3"], "unknown config key 'epochz'"),
        (["train", "--data", synthetic_csv, "--set", "epochs=ten"], "config key 'epochs': expected int"),
        (["train", "--data", synthetic_csv, "--set", "augment.occlusion=half"], "config key 'augment.occlusion': expected a number"),
        (["train", "--data", synthetic_csv, "--config", tmp_path / "none.yaml"], "none.yaml: config file not found"),
        (["train", "--data", synthetic_csv, "--set", "extra_data=[3]"], "config key 'extra_data': expected a list of paths"),
        (["evaluate", tmp_path / "none.keras", "--data", synthetic_csv], "none.keras: model file not found"),
        (["evaluate", untrained_model, "--data", synthetic_csv, "--subset", "val"], "records no validation split"),
    ]
    for args, message in cases:
        result = run(*args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
        assert message in lines[0]
    broken = tmp_path / "images"
    broken.mkdir()
    (broken / "fine.jpg").write_bytes(next((synthetic_csv.parent / "images").iterdir()).read_bytes())
    (broken / "zbroken.jpg").write_bytes(b"not an image")
    out = tmp_path / "pred.csv"
    result = run("predict", untrained_model, broken, "--out", out)   # the unreadable file is skipped and named
    assert result.exit_code == 0 and "skipped 1 of 2 files, not readable images: zbroken.jpg" in result.output
    assert list(pd.read_csv(out)["image"]) == ["fine.jpg"]
    (broken / "fine.jpg").unlink()
    result = run("predict", untrained_model, broken, "--out", tmp_path / "none.csv")
    assert result.exit_code == 2 and "zbroken.jpg: not a readable image" in result.output
    assert not (tmp_path / "none.csv").exists() and not list(tmp_path.glob("*none*"))


def test_quickstart_runs_on_its_own_synthetic_faces(tmp_path):
    result = run("quickstart", "--out", tmp_path, "--images", 36, "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert "nme" in result.output and (tmp_path / "evaluate" / "ced.png").is_file()
    assert (tmp_path / "run" / "training_curves.png").is_file()


def test_backend_option_sets_or_refuses_the_backend():
    import keras

    current = keras.backend.backend()
    assert run("--backend", current, "info").exit_code == 0
    other = "jax" if current != "jax" else "tensorflow"
    result = run("--backend", other, "info")
    assert result.exit_code == 2 and f"already running on '{current}'; cannot switch to '{other}'" in result.output


def test_fit_detector_refits_the_box_calibration_and_point_offsets(trained, ytf68_subset, tmp_path):
    from kerakp.runtime import load_keras_model

    out = tmp_path / "fitted.keras"
    result = run("fit-detector", trained / "model.keras", "--data", ytf68_subset, "--images", 40, "--out", out)
    assert result.exit_code == 0, result.output
    fitted, original = load_keras_model(out), load_keras_model(trained / "model.keras")
    assert original.box_calibration["haar"]["samples"] <= 20 < fitted.box_calibration["haar"]["samples"] <= 40
    assert original.box_calibration["blazeface"]["samples"] == 20 < fitted.box_calibration["blazeface"]["samples"] == 40
    assert all(np.array_equal(a, b) for a, b in zip(fitted.get_weights(), original.get_weights()))
    assert np.shape(original.point_offsets) == np.shape(fitted.point_offsets) == (2, 68, 2)   # train fits them too
    assert not np.array_equal(original.point_offsets, fitted.point_offsets) and "direct reading median" in result.output
    # a model that records no split fits on every image
    from kerakp.models.landmark_model import LandmarkModel

    LandmarkModel("simplecnn", "ibug68", 48, head_units=8).save(tmp_path / "nosplit.keras")
    assert run("fit-detector", tmp_path / "nosplit.keras", "--data", ytf68_subset, "--images", 60).exit_code == 0
    assert load_keras_model(tmp_path / "nosplit.keras").box_calibration["haar"]["samples"] > 40
    wrong = run("fit-detector", tmp_path / "model.tflite", "--data", ytf68_subset)
    assert wrong.exit_code == 2 and "model.tflite: model file not found" in wrong.output and not out.with_suffix(".tmp.keras").exists()
    # --detector refits one detector's calibration and keeps the others; --no-offsets keeps the offsets
    again = tmp_path / "again.keras"
    result = run("fit-detector", out, "--data", ytf68_subset, "--images", 10, "--detector", "blazeface", "--no-offsets", "--out", again)
    assert result.exit_code == 0, result.output
    refitted = load_keras_model(again)
    assert refitted.box_calibration["haar"] == fitted.box_calibration["haar"] and refitted.box_calibration["blazeface"]["samples"] == 10
    assert np.array_equal(refitted.point_offsets, fitted.point_offsets)
    # --extra: another set's training part fits the box too (turned copies); one of another markup is refused
    turned = tmp_path / "turned.keras"
    result = run("fit-detector", out, "--data", ytf68_subset, "--images", 10, "--detector", "blazeface", "--extra", ytf68_subset, "--out", turned)
    assert result.exit_code == 0, result.output
    assert 10 < load_keras_model(turned).box_calibration["blazeface"]["samples"] <= 20
    five = tmp_path / "five.csv"
    cv2.imwrite(str(tmp_path / "face.png"), np.zeros((64, 64, 3), np.uint8))
    five.write_text("image,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\nface.png,20,20,40,20,30,30,22,40,38,40\n")
    wrong = run("fit-detector", out, "--data", ytf68_subset, "--extra", five, "--out", tmp_path / "never.keras")
    assert wrong.exit_code == 2 and "markup five, but" in wrong.output and not (tmp_path / "never.keras").exists(), wrong.output


@pytest.mark.parametrize("fmt, markup", [("ytf68", "ibug68"), ("pts", "ibug68"), ("csv", "five")])
def test_annotate_writes_a_trainable_set_with_flip_disagreement(trained, synthetic_csv, tmp_path, fmt, markup):
    from kerakp.data.formats import load_dataset
    from kerakp.data.images import read_image
    from kerakp.inference import Predictor

    images = synthetic_csv.parent / "images"
    result = run("annotate", trained / "model.keras", images, "--out", tmp_path / "labels", "--format", fmt, "--box", "full",
                 "--markup", markup)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "labels" / "annotations.csv")
    labelled = load_dataset(tmp_path / "labels")
    assert labelled.schema.name == markup and len(labelled) == table["found"].sum() == 48
    assert (table["flip_nme"] >= 0).all()
    # the proxy is the Predictor's flip disagreement (tests/test_inference.py checks what it measures)
    predictor = Predictor(trained / "model.keras", box="full")
    assert np.isclose(predictor.predict(read_image(images / table["image"][0])).flip_nme, table["flip_nme"][0], atol=1e-3)
    strict = run("annotate", trained / "model.keras", images, "--out", tmp_path / "strict", "--box", "full",
                 "--max-disagreement", float(table["flip_nme"].median()))
    assert strict.exit_code == 0 and len(load_dataset(tmp_path / "strict")) == (table["flip_nme"] <= table["flip_nme"].median()).sum()
