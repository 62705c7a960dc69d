"""The shipped models: each loads on a fresh install, runs the whole inference path, and still scores on its
own validation persons what its card says (a guard against changes to the path that users run)."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from kerakp.data.dataset import model_subset
from kerakp.data.formats import load_dataset
from kerakp.data.images import read_image
from kerakp.evaluate import predict_set
from kerakp.inference import Predictor
from kerakp.metrics import per_image_nme

REPO = Path(__file__).resolve().parents[1]
SAVED, PRESETS = REPO / "saved_models", REPO / "kerakp" / "presets"
# model file -> (data folder under ../shared/data, end-to-end NME on its card, measured on all val images)
CARDS = {
    "saved_models/ytf68_mobilenetv2_heatmap.keras": ("ytf68", 0.0398),
    "kerakp/presets/ytf68_mobilenetv2_heatmap.tflite": ("ytf68", 0.0398),
    "saved_models/300w_mobilenetv2_heatmap.keras": ("300w_train", 0.0347),
    "kerakp/presets/300w_mobilenetv2_heatmap.tflite": ("300w_train", 0.0347),
    "saved_models/ytf68_fast.keras": ("ytf68", 0.0390),
    "kerakp/presets/ytf68_fast.tflite": ("ytf68", 0.0390),
    "saved_models/300w_fast.keras": ("300w_train", 0.0349),
    "kerakp/presets/300w_fast.tflite": ("300w_train", 0.0349),
}


def test_every_shipped_model_has_a_card_that_states_its_data_licence():
    for model in [*SAVED.glob("*.keras"), *SAVED.glob("*.tflite"), *PRESETS.glob("*.tflite")]:
        card = next((folder / f"{model.stem}.md" for folder in (model.parent, PRESETS) if (folder / f"{model.stem}.md").is_file()), None)
        assert card is not None, model.name
    for card in PRESETS.glob("*.md"):
        assert "research use" in card.read_text(), card.name


@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_model_predicts_a_synthetic_face(name, synthetic_set):
    result = Predictor(REPO / name, fallback="full").predict(read_image(synthetic_set.paths[0]))
    assert result.points.shape == (68, 2) and np.isfinite(result.points).all() and np.isfinite(result.flip_nme)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_model_scores_as_its_card_says(name):
    folder, card_nme = CARDS[name]
    predictor = Predictor(REPO / name, fallback="full")
    data = model_subset(load_dataset(shared_path(folder)), predictor.model.info.split, "val")
    data = data.subset(list(range(0, len(data), 3)))  # a third of the validation persons' images, for time
    points, _, _ = predict_set(predictor, data, progress=False)
    nme = per_image_nme(points, data.keypoints, data.schema)
    assert np.mean(nme) < 1.5 * card_nme and np.median(nme) < card_nme


STUB = """#!/bin/sh
echo "$@" >> "$CALLS"
if [ "$1" = train ]; then while [ $# -gt 1 ]; do [ "$1" = --out ] && mkdir -p "$2" && touch "$2/model.keras"; shift; done; fi
"""


@pytest.mark.parametrize("markup", ["ytf68", "300w"])
def test_training_script_chains_existing_configs(markup, tmp_path):
    """scripts/train_heatmap.sh (run with a stand-in `kerakp` that records its calls): every stage's config
    exists, each stage starts from the previous one's model, and the last one is exported and evaluated."""
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin" / "kerakp"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls"),
           "RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "model"), "TFLITE": str(tmp_path / "model.tflite")}
    subprocess.run(["bash", str(REPO / "scripts" / "train_heatmap.sh"), markup], env=env, check=True)
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    trains, (export, evaluate) = calls[:-2], calls[-2:]
    previous = None
    for call in trains:
        assert call[0] == "train" and (REPO / call[call.index("--config") + 1]).is_file()
        assert previous is None or call[call.index("--init") + 1] == previous
        previous = call[call.index("--out") + 1] + "/model.keras"
    assert len(trains) >= 2 and (tmp_path / "model.keras").is_file()
    assert len({call[call.index("--out") + 1] for call in trains}) == len(trains)  # no stage overwrites another
    assert export[:2] == ["export", str(tmp_path / "model.keras")] and evaluate[:2] == ["evaluate", str(tmp_path / "model.tflite")]
