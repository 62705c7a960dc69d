"""Partial labels (issue 42): the AFLW 21 markup, its reader, and a 68-point model trained on 68-point faces and
AFLW faces together through one correspondence table, each visible AFLW point supervising its counterpart."""
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.dataset import join_sets, supervising
from kerakp.data.formats import load_dataset
from kerakp.models.custom import CropNME, MaskedKeypointLoss
from kerakp.schemas import CORRESPONDENCES, SCHEMAS, carry_points, derive_points, get_schema

from conftest import shared_path

IBUG, AFLW = get_schema("ibug68"), get_schema("aflw21")
TINY = ["--backbone", "simplecnn", "--input-size", "48", "--batch-size", "16", "--set", "head_units=32",
        "--set", "calibration_images=0"]


def write_aflw(folder, synthetic_set, hide: float = 0.3, seed: int = 0):
    """Synthetic faces as an AFLW 21 set: their 68 points mapped to AFLW's 21, a share hidden (blank)."""
    (folder / "images").mkdir(parents=True)
    points = derive_points(synthetic_set.keypoints, IBUG, AFLW)
    points[np.random.default_rng(seed).random(points.shape[:2]) < hide] = np.nan
    rows = []
    for i, path in enumerate(synthetic_set.paths):
        shutil.copy(path, folder / "images" / path.name)
        rows.append([f"images/{path.name}", 0.0, *points[i].ravel()])
    columns = ["file", "yaw"] + [f"{a}{i}" for i in range(1, 22) for a in "xy"]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "labels.csv", index=False, float_format="%.2f")
    return folder


def test_aflw21_mirrors_into_itself_and_maps_onto_ibug68():
    assert AFLW.num_points == 21 and AFLW.norm is None and AFLW.flip[0] == 5 and AFLW.flip[14] == 14
    table = CORRESPONDENCES["aflw21", "ibug68"]
    assert len(table) == 21 and table[12] == table[16] == ()          # the ear lobes supervise nothing
    for i, group in enumerate(table):   # a mirrored point's counterpart is the mirror of its counterpart
        assert sorted(IBUG.flip[p] for p in group) == sorted(table[AFLW.flip[i]])
    points = np.random.default_rng(0).uniform(0, 100, (3, 68, 2))
    aflw = derive_points(points, IBUG, AFLW)
    assert np.allclose(aflw[:, 7], points[:, 36:42].mean(axis=1)) and np.isnan(aflw[:, 12]).all()
    assert np.allclose(aflw[:, 20], points[:, 8])


def test_an_aflw_label_supervises_its_counterpart_or_its_groups_mean():
    rng = np.random.default_rng(1)
    aflw = rng.uniform(0, 1, (2, 21, 2))
    aflw[0, 3] = np.nan
    ibug = rng.uniform(0, 1, (2, 68, 2))
    sets = supervising([_set(ibug, IBUG), _set(aflw, AFLW)], IBUG)
    markup = sets[0].schema
    assert markup.num_points == 71 and markup.derived[0] == tuple(range(36, 42))
    carried = sets[1].keypoints
    assert np.allclose(carried[:, 17], aflw[:, 0]) and np.isnan(carried[0, 22]).all()   # hidden stays unlabelled
    assert np.allclose(carried[:, 68], aflw[:, 7]) and np.isnan(carried[:, 0]).all()    # jaw: no AFLW point
    assert np.isnan(sets[0].keypoints[:, 68:]).all()
    assert markup.flip[68] == 69 and markup.flip[70] == 70                                # eye centres swap
    # the loss compares the group's mean output with the label; a plain target (validation) reads the outputs alone
    loss = MaskedKeypointLoss("mse", groups=markup.derived)
    pred = rng.uniform(0, 1, (1, 68, 2))
    target = carry_points(derive_points(pred, IBUG, AFLW), AFLW, IBUG, markup.derived)
    assert float(loss(target.reshape(1, -1).astype("float32"), pred.reshape(1, -1).astype("float32"))) == pytest.approx(0, abs=1e-12)
    target[0, 68, 0] += 0.1   # the eye centre off by 0.1 in x: one coordinate of the labelled ones
    labelled = np.isfinite(target).sum()
    assert float(loss(target.reshape(1, -1).astype("float32"), pred.reshape(1, -1).astype("float32"))) \
        == pytest.approx(0.01 / labelled, rel=1e-4)
    metric = CropNME((36, 45))   # a face without both outer eye corners does not count
    metric.update_state(target.reshape(1, -1).astype("float32"), pred.reshape(1, -1).astype("float32"))
    assert float(metric.result()) == 0.0


def _set(points, schema):
    from pathlib import Path

    from kerakp.data.dataset import LandmarkSet

    return LandmarkSet(schema, [Path(f"{schema.name}{i}.jpg") for i in range(len(points))], points,
                       [str(i) for i in range(len(points))])


def test_the_aflw_reader_keeps_visible_points_and_counts_what_it_drops(synthetic_set, tmp_path):
    folder = write_aflw(tmp_path / "aflw", synthetic_set.subset(range(6)))
    frame = pd.read_csv(folder / "labels.csv")
    frame.iloc[1, 2:] = np.nan                          # a face with no visible point: skipped
    frame.loc[2, "x15"] = 500.0                          # a nose tip outside its image: dropped
    frame.to_csv(folder / "labels.csv", index=False)
    with pytest.warns(UserWarning, match="1 points outside their image dropped, 1 faces with fewer than two"):
        data = load_dataset(folder)
    assert data.schema.name == "aflw21" and len(data) == 5 and np.isnan(data.keypoints[1, 14]).all()
    assert data.boxes is not None and (data.boxes[:, 2:] > data.boxes[:, :2]).all()
    (folder / "labels.csv").write_text("file,yaw,x1\nimages/a.jpg,0,1\n")
    with pytest.raises(Exception, match="header must be file,yaw,x1,y1"):
        load_dataset(folder, format="aflw21")


@pytest.mark.slow
def test_a_68_point_model_trains_on_aflw_faces_and_is_scored_on_them(synthetic_csv, synthetic_set, tmp_path):
    aflw = write_aflw(tmp_path / "aflw", synthetic_set.subset(range(24)))
    run = CliRunner().invoke
    result = run(main, ["train", "--data", str(synthetic_csv), "--extra-data", str(aflw), "--out", str(tmp_path / "run"),
                        "--epochs", "1", "--set", "split_extra=true", *TINY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert 0 < split["extra_images"] < 24                          # its held-out share is kept out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run(main, ["evaluate", str(tmp_path / "run" / "model.keras"), "--data", str(aflw), "--subset", "all",
                            "--box", "oracle", "--out", str(tmp_path / "eval")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["markup"] == "aflw21" and np.isfinite(metrics["nme"])


def test_a_markup_without_a_correspondence_is_refused_in_one_line(synthetic_csv, tmp_path):
    from kerakp.data.synthetic import write_synthetic_set

    imm = load_dataset(write_synthetic_set(tmp_path / "s", num_images=4, size=96, seed=2, progress=False))
    assert ("imm58", "ibug68") not in CORRESPONDENCES and "imm58" in SCHEMAS
    with pytest.raises(Exception, match="markup imm58 has no correspondence to ibug68"):
        supervising([_set(np.zeros((1, 58, 2)), get_schema("imm58")), imm], IBUG)
    assert len(join_sets(supervising([imm, imm], IBUG))) == 8   # one markup: the sets as they are


@pytest.mark.slow
def test_the_real_aflw21_set_reads_with_crop_boxes_around_the_whole_face():
    folder = shared_path("aflw21")
    with pytest.warns(UserWarning, match="points outside their image dropped"):
        data = load_dataset(folder)
    assert len(data) == 11088 and data.schema.name == "aflw21"
    sides = data.boxes[:, 2:] - data.boxes[:, :2]
    # the mean face fitted to the visible points spans the face: about as wide as the 120 px crop is, not the narrow
    # box of a profile's visible points
    assert 40 < np.median(sides[:, 0]) < 110 and 40 < np.median(sides[:, 1]) < 110
    visible = np.nanmax(data.keypoints[..., 0], axis=1) - np.nanmin(data.keypoints[..., 0], axis=1)
    assert np.median(sides[:, 0] - visible) > 0


def test_a_turned_head_hides_its_far_side_and_a_frontal_one_shows_every_point():
    from kerakp.analysis import visibility

    assert (visibility((0.0, 0.0, 0.0), IBUG) > 0.79).all()
    turned = visibility((70.0, 0.0, 0.0), IBUG)        # turned to its own left: the image-right half goes behind
    assert (turned[[12, 13, 14, 15, 16, 45, 46]] < 0.2).all() and (turned[[0, 1, 2, 3, 36, 39, 30, 8]] > 0.6).all()
    assert np.allclose(visibility((-70.0, 0.0, 0.0), IBUG)[list(IBUG.flip)], turned, atol=0.1)   # mirror pose, mirror points
    assert np.isnan(visibility((np.nan, 0.0, 0.0), IBUG)).all()
    with pytest.raises(Exception, match="markup 'five' has no visibility model"):
        visibility((0.0, 0.0, 0.0), get_schema("five"))


def test_hidden_points_are_drawn_hollow_and_written_as_v_columns(synthetic_csv, tmp_path):
    from kerakp.drawing import draw_face

    image = np.zeros((40, 40, 3), np.uint8)
    draw_face(image, np.array([[10.0, 10.0], [30.0, 30.0]]), seen=np.array([True, False]), radius=3)
    assert image[10, 10].any() and not image[30, 30].any() and image[30, 26].any()   # filled, then a ring
    photo = next((synthetic_csv.parent / "images").iterdir())
    result = CliRunner().invoke(main, ["predict", "300w-fast", str(photo), "--out", str(tmp_path / "p.csv"),
                                       "--visibility"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "p.csv").iloc[0]
    seen = row[[f"v{i}" for i in range(68)]].to_numpy(float)
    assert ((seen >= 0) & (seen <= 1)).all() and seen.mean() > 0.8    # a frontal drawn face: nearly all seen
