"""`kerakp compare` on tiny synthetic data: every backbone builds, trains, lowers its loss and predicts the same
output shape, and the table and plots are written (tests/test_export.py exports every backbone)."""
import json

import keras
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main

BACKBONES = ["simplecnn", "mobilenetv2"]


@pytest.mark.slow
def test_compare_trains_evaluates_and_ranks(synthetic_csv, tmp_path):
    out = tmp_path / "compare"
    result = CliRunner().invoke(main, ["compare", "--backbones", ",".join(BACKBONES), "--data", str(synthetic_csv),
                                       "--budget", "3", "--box", "oracle", "--out", str(out), "--set", "input_size=48",
                                       "--set", "batch_size=8", "--set", "head_units=32", "--set", "calibration_images=0",
                                       "--set", "val_fraction=0.25", "--set", "learning_rate=0.003"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compare.json").read_text())
    rows = {r["backbone"]: r for r in report["rows"]}
    assert set(rows) == set(BACKBONES) and report["val_images"] > 0
    for name in BACKBONES:
        history = pd.read_csv(out / name / "history.csv")
        assert history["loss"].iloc[-1] < history["loss"].iloc[0], name
        model = keras.models.load_model(out / name / "model.keras")
        assert model.predict_on_batch(np.zeros((2, 48, 48, 3), np.float32)).shape == (2, 136)
        assert np.isfinite(rows[name]["nme"]) and rows[name]["keras_ms"] > 0
    assert rows["simplecnn"]["params"] < rows["mobilenetv2"]["params"]
    assert rows["simplecnn"]["model_mb"] < rows["mobilenetv2"]["model_mb"]
    table = (out / "compare.md").read_text().splitlines()
    assert table[0].startswith("| backbone | init | nme") and len(table) == 2 + len(BACKBONES)
    assert (out / "ced.png").stat().st_size > 0 and (out / "nme_vs_latency.png").stat().st_size > 0


def test_compare_refuses_an_unknown_backbone(synthetic_csv, tmp_path):
    result = CliRunner().invoke(main, ["compare", "--backbones", "simplecnn,vgg7", "--data", str(synthetic_csv)])
    assert result.exit_code == 2 and "unknown backbone 'vgg7'" in result.output
