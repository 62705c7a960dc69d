"""Emotion tags: hand-built faces, roll invariance, markups without a mouth, calibration, smoothing, CLI."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.readers import read_landmark_table
from kerakp.emotion import EmotionRule, TagSmoother, accuracy, features, fit_rule, load_rule, normalise_labels
from kerakp.errors import KerakpError
from kerakp.schemas import get_schema

IBUG = get_schema("ibug68")


def face(corner_y=80.0, half_width=35.0, top=75.0, bottom=95.0):
    """iBUG-68 points with eye corners 100 px apart at y = 0 and a mouth centred at x = 50 (inner lip y = 80)."""
    points = np.tile([50.0, 50.0], (68, 1))
    points[36], points[45] = [0, 0], [100, 0]
    points[48], points[54] = [50 - half_width, corner_y], [50 + half_width, corner_y]
    points[51], points[57], points[62] = [50, top], [50, bottom], [50, 80]
    return points


@pytest.mark.parametrize("points, tag, expected", [
    (face(corner_y=76, half_width=40), "positive", (0.8, 0.2, -0.04)),  # corners lifted, wide mouth
    (face(corner_y=80, half_width=30), "neutral", (0.6, 0.2, 0.0)),
    (face(corner_y=76, half_width=30), "neutral", (0.6, 0.2, -0.04)),  # lifted but narrow: not a smile
    (face(corner_y=85, half_width=30), "negative", (0.6, 0.2, 0.05)),  # corners dropped
    (face(top=70, bottom=105), "negative", (0.7, 0.35, 0.0)),          # mouth wide open
])
def test_hand_built_faces(points, tag, expected):
    feats = features(points[None], IBUG)
    assert np.allclose(feats[0], expected)
    assert EmotionRule().tag(feats)[0] == tag


def test_tags_do_not_change_with_head_roll():
    base = np.stack([face(corner_y=76, half_width=40), face(corner_y=80, half_width=30), face(corner_y=85)])
    for degrees in (-35, -10, 20, 40):
        a = np.deg2rad(degrees)
        rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        rolled = (base - 50) @ rotation.T + [300, 200]
        assert np.allclose(features(rolled, IBUG), features(base, IBUG))
        assert list(EmotionRule().tag(features(rolled, IBUG))) == ["positive", "neutral", "negative"]


def test_a_markup_without_mouth_points_is_refused():
    with pytest.raises(KerakpError, match="markup 'five' cannot be tagged: it has no upper_lip_top, lower_lip_bottom"):
        features(np.zeros((1, 5, 2)), get_schema("five"))


def test_missing_landmarks_give_no_tag():
    points = np.stack([face(), np.full((68, 2), np.nan)])
    assert list(EmotionRule().tag(features(points, IBUG))) == ["neutral", ""]


def test_calibration_improves_accuracy_on_held_out_synthetic_faces(tmp_path):
    from kerakp.data.synthetic import write_synthetic_set

    def labelled(seed):
        csv = write_synthetic_set(tmp_path / str(seed), 300, 6, 128, roll_range=30, seed=seed, progress=False)
        names, points, schema = read_landmark_table(csv)
        attributes = pd.read_csv(csv.parent / "attributes.csv").set_index("image").loc[names]
        return features(points, schema), normalise_labels(attributes["expression"])

    (fit_feats, fit_labels), (test_feats, test_labels) = labelled(11), labelled(12)
    rule = fit_rule(fit_feats, fit_labels)
    before = accuracy(test_labels, EmotionRule().tag(test_feats))
    after = accuracy(test_labels, rule.tag(test_feats))
    assert after > before + 0.05 and after > 0.9


def test_smoother_ignores_flicker():
    smoother = TagSmoother(window=5)
    shown = [smoother.update(t) for t in ["neutral"] * 4 + ["positive"] + ["neutral"] * 2 + ["positive"] * 5]
    assert shown[:7] == ["neutral"] * 7
    assert shown[-1] == "positive"
    assert smoother.update("") == "positive"  # no face: keep the last tag


def test_rule_config_and_labels(tmp_path):
    from pathlib import Path

    import yaml

    repo_config = Path(__file__).resolve().parents[1] / "kerakp" / "recipes" / "emotion_published.yaml"
    assert load_rule(repo_config) == EmotionRule()  # the shipped config is the published rule
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"positive_w": 0.5}))
    with pytest.raises(KerakpError, match="bad.yaml: expected keys among"):
        load_rule(tmp_path / "bad.yaml")
    with pytest.raises(KerakpError, match=r"unknown expression labels \['angry'\]"):
        normalise_labels(["smile", "angry"])


def test_cli_tags_landmarks_and_calibrates(synthetic_csv, tmp_path):
    runner = CliRunner()
    out = tmp_path / "tags.csv"
    result = runner.invoke(main, ["emotion", "--landmarks", str(synthetic_csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["image", "tag", "w", "h", "c", "left_eye", "right_eye", "mouth_open"] and len(frame) == 48
    assert set(frame["tag"]) <= {"positive", "neutral", "negative"}
    config = tmp_path / "fitted.yaml"
    result = runner.invoke(main, ["emotion", "calibrate", "--landmarks", str(synthetic_csv), "--labels",
                                  str(synthetic_csv.parent / "attributes.csv"), "--out", str(config)])
    assert result.exit_code == 0, result.output
    before, after = [float(line.split()[2]) for line in result.output.splitlines() if "accuracy" in line]
    assert after >= before and config.is_file()
    assert load_rule(config) != EmotionRule()
    result = runner.invoke(main, ["emotion", "--landmarks", str(synthetic_csv), "--config", str(config), "--out", str(out)])
    assert result.exit_code == 2 and "tags.csv: already exists" in result.output
    result = runner.invoke(main, ["emotion", "--landmarks", str(synthetic_csv), "--config", str(config), "--out", str(out),
                                  "--overwrite"])
    assert result.exit_code == 0
    five = tmp_path / "five.csv"
    five.write_text("image_name," + ",".join(f"point_{i}_{a}" for i in range(1, 6) for a in "xy") + "\na.jpg" + ",1" * 10 + "\n")
    result = runner.invoke(main, ["emotion", "--landmarks", str(five), "--out", str(tmp_path / "five_tags.csv")])
    assert result.exit_code == 2 and "markup 'five' cannot be tagged" in result.output
