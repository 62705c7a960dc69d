"""Each markup trains and evaluates end to end: Kaggle 15 (missing labels, whole-image crops, submission file),
the 5-point CSV and IMM 58."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import shared_path

from kerakp.cli import main
from kerakp.data.formats import load_dataset, write_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "kerakp" / "recipes"
TINY = ["--backbone", "simplecnn", "--input-size", "48", "--batch-size", "16", "--set", "head_units=32"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def train_and_evaluate(data, out: Path, *options) -> dict:
    trained = run("train", "--data", data, "--out", out / "run", "--epochs", 1, "--val-fraction", 0.3, *TINY, *options)
    assert trained.exit_code == 0, trained.output
    evaluated = run("evaluate", out / "run" / "model.keras", "--data", data, "--subset", "val", "--out", out / "eval", "--box", "oracle")
    assert evaluated.exit_code == 0, evaluated.output
    return json.loads((out / "eval" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def kaggle_files(synthetic_set, tmp_path_factory):
    """Format-exact Kaggle files from synthetic faces: training.csv (rows 8+ miss 11 points), test.csv and
    IdLookupTable.csv (features asked per image, as the competition does)."""
    out = tmp_path_factory.mktemp("kaggle")
    training = write_dataset(synthetic_set, out / "train", "kaggle", crop_size=96, progress=False)
    frame = pd.read_csv(training, dtype=str, keep_default_na=False)
    frame.loc[8:, "left_eye_inner_corner_x":"right_eyebrow_outer_end_y"] = ""  # as in the real file: eye centres,
    frame.loc[8:, "mouth_left_corner_x":"mouth_center_top_lip_y"] = ""          # nose tip and lower lip remain
    frame.to_csv(training, index=False)
    test = pd.DataFrame({"ImageId": range(1, 7), "Image": frame["Image"][:6]})
    test.to_csv(out / "test.csv", index=False)
    features = [c for c in frame.columns if c != "Image"]
    lookup = pd.DataFrame([(image, feature) for image in range(1, 7) for feature in features[::3]],
                          columns=["ImageId", "FeatureName"])
    lookup.insert(0, "RowId", range(1, len(lookup) + 1))
    lookup["Location"] = ""
    lookup.to_csv(out / "IdLookupTable.csv", index=False)
    return out


@pytest.mark.slow
def test_kaggle_trains_with_missing_points_and_writes_a_submission(kaggle_files, tmp_path):
    data = load_dataset(kaggle_files / "train" / "training.csv")
    assert data.schema.name == "kaggle15" and np.isnan(data.keypoints[8:, 2]).all()
    metrics = train_and_evaluate(kaggle_files / "train" / "training.csv", tmp_path, "--config", CONFIGS / "kaggle15.yaml")
    assert metrics["markup"] == "kaggle15" and np.isfinite(metrics["nme"])
    # the model's whole-image rule wins over --box, --passes and --turn
    assert metrics["box"] == "full" and metrics["passes"] == 1 and metrics["turn"] == 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert np.isfinite(history["loss"]).all()
    result = run("kaggle-submit", tmp_path / "run" / "model.keras", "--test", kaggle_files / "test.csv",
                 "--lookup", kaggle_files / "IdLookupTable.csv", "--out", tmp_path / "submission.csv")
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(tmp_path / "submission.csv")
    lookup = pd.read_csv(kaggle_files / "IdLookupTable.csv")
    assert list(submission.columns) == ["RowId", "Location"] and submission["RowId"].tolist() == lookup["RowId"].tolist()
    assert submission["Location"].between(0, 96).all()


def test_kaggle_submit_names_a_bad_lookup_row(kaggle_files, tmp_path, untrained_kaggle_model):
    lookup = pd.read_csv(kaggle_files / "IdLookupTable.csv")
    lookup.loc[3, "FeatureName"] = "third_eye_x"
    lookup.to_csv(tmp_path / "lookup.csv", index=False)
    result = run("kaggle-submit", untrained_kaggle_model, "--test", kaggle_files / "test.csv", "--lookup", tmp_path / "lookup.csv",
                 "--out", tmp_path / "submission.csv")
    assert result.exit_code == 2 and "lookup.csv row 5: unknown FeatureName 'third_eye_x'" in result.output
    assert not (tmp_path / "submission.csv").exists()


@pytest.fixture(scope="module")
def untrained_kaggle_model(tmp_path_factory):
    from kerakp.models.landmark_model import LandmarkModel

    path = tmp_path_factory.mktemp("kaggle_model") / "untrained.keras"
    LandmarkModel("simplecnn", "kaggle15", 48, head_units=16, crop_scale=1.0, face_box="image").save(path)
    return path


@pytest.mark.slow
def test_five_point_csv_trains_and_evaluates(synthetic_csv, tmp_path):
    converted = run("convert", synthetic_csv, tmp_path / "five", "--to", "csv", "--markup", "five")
    assert converted.exit_code == 0, converted.output
    metrics = train_and_evaluate(tmp_path / "five" / "landmarks.csv", tmp_path, "--set", "calibration_images=0")
    assert metrics["markup"] == "five" and np.isfinite(metrics["nme"])


@pytest.mark.slow
def test_imm58_trains_and_evaluates(tmp_path):
    imm = load_dataset(shared_path("imm58"))
    small = write_dataset(imm.subset(range(0, 240, 8)), tmp_path / "imm", "asf", crop_size=96, progress=False)
    metrics = train_and_evaluate(small, tmp_path, "--set", "calibration_images=0")
    assert metrics["markup"] == "imm58" and np.isfinite(metrics["nme"])


@pytest.mark.slow
def test_imm58_nose_tip_task_trains_on_whole_images_and_evaluates(tmp_path):
    imm = load_dataset(shared_path("imm58"))
    small = write_dataset(imm.subset(range(0, 240, 8)), tmp_path / "imm", "asf", progress=False)
    metrics = train_and_evaluate(small, tmp_path, "--config", CONFIGS / "imm58_nose_tip.yaml")
    assert metrics["markup"] == "nose_tip" and metrics["box"] == "full" and 0 < metrics["nme"] < 1
    per_image = pd.read_csv(tmp_path / "eval" / "per_image.csv")
    assert len(per_image) == metrics["images"]


def test_evaluate_names_a_markup_the_model_cannot_be_scored_on(synthetic_set, tmp_path):
    from kerakp.models.landmark_model import LandmarkModel

    LandmarkModel("simplecnn", "ibug68", 32, head_units=4).save(tmp_path / "m.keras")
    five = write_dataset(synthetic_set, tmp_path / "five", "csv", markup="five", progress=False)
    result = run("evaluate", tmp_path / "m.keras", "--data", five, "--out", tmp_path / "eval")
    assert result.exit_code == 2 and "markup five, but the model predicts ibug68" in result.output
    assert not (tmp_path / "eval").exists()
