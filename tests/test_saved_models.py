"""The shipped models: each loads on a fresh install, runs the whole inference path, and still scores on its
own validation persons what its card says (a guard against changes to the path that users run)."""
from pathlib import Path

import numpy as np
import pytest

from kerakp.cli import _subset
from kerakp.data.readers import load_dataset, read_image
from kerakp.evaluate import predict_set
from kerakp.inference import Predictor
from kerakp.metrics import per_image_nme

from conftest import shared_path

SAVED = Path(__file__).resolve().parents[1] / "saved_models"
# model file -> (data folder under ../shared/data, end-to-end NME on its card, measured on all val images)
CARDS = {
    "ytf68_mobilenetv2_heatmap.keras": ("ytf68", 0.0430),
    "ytf68_mobilenetv2_heatmap.tflite": ("ytf68", 0.0430),
    "300w_mobilenetv2_heatmap.keras": ("300w_train", 0.0381),
    "300w_mobilenetv2_heatmap.tflite": ("300w_train", 0.0381),
}


def test_every_shipped_model_has_a_card():
    for model in [*SAVED.glob("*.keras"), *SAVED.glob("*.tflite")]:
        assert model.with_suffix(".md").is_file(), model.name


@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_model_predicts_a_synthetic_face(name, synthetic_set):
    result = Predictor(SAVED / name, fallback="full").predict(read_image(synthetic_set.paths[0]))
    assert result.points.shape == (68, 2) and np.isfinite(result.points).all() and np.isfinite(result.flip_nme)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_model_scores_as_its_card_says(name):
    folder, card_nme = CARDS[name]
    predictor = Predictor(SAVED / name, fallback="full")
    data = _subset(load_dataset(shared_path(folder)), predictor.model, "val")
    data = data.subset(list(range(0, len(data), 3)))  # a third of the validation persons' images, for time
    points, _, _ = predict_set(predictor, data, progress=False)
    nme = per_image_nme(points, data.keypoints, data.schema)
    assert np.mean(nme) < 1.5 * card_nme and np.median(nme) < card_nme
