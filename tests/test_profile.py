"""3-D face profiling (`kerakp.data.profile`): turned faces labelled where their 3-D points project, with the far
side hidden, written as a set that reads back with its persons, and broken meshes dropped and counted."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import shared_path

from kerakp.analysis import face3d, rotation_from, visibility
from kerakp.cli import main
from kerakp.data.dataset import person_of
from kerakp.data.formats import load_dataset
from kerakp.data.profile import Dropped, profile_set, turn_face
from kerakp.data.synthetic import posed_face, random_person
from kerakp.schemas import get_schema

SCALE = 60.0                      # pixels per mean-face unit (eye distance 1)
FAR_JAW, NEAR_JAW = list(range(12, 17)), list(range(0, 5))   # at a positive yaw (nose to the image's right)


def mean_face_labels(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A grey image and the mean face's 68 points seen from the front (orthographic), eye distance SCALE px."""
    return np.full((size, size, 3), 128, np.uint8), face3d()[:, :2] * SCALE + [size / 2, size / 2 - 10]


@pytest.mark.parametrize("yaw", [60.0, -35.0])
def test_turned_labels_are_where_the_turned_3d_points_project(yaw):
    image, points = mean_face_labels()
    face = turn_face(image, points, yaw, 0.0)
    expected = (face3d() @ rotation_from(yaw, 0.0, 0.0).T)[:, :2] * SCALE
    error = (face.points - face.points.mean(axis=0)) - (expected - expected.mean(axis=0))
    assert np.linalg.norm(error, axis=1).max() < 0.1 * SCALE    # the source's fitted pitch is a few degrees off
    assert face.image.shape == image.shape and face.pose[:2] == (yaw, 0.0)


def test_far_side_is_hidden_at_60_degrees_and_agrees_with_the_visibility_model():
    image, points = mean_face_labels()
    face = turn_face(image, points, 60.0, 0.0)
    assert not face.visible[FAR_JAW].any() and face.visible[NEAR_JAW].all()
    assert face.visible[[36, 39, 30, 48]].all()                        # the near eye, the nose tip, the near mouth corner
    model = visibility(face.pose, get_schema("ibug68")) > 0.5
    assert (model == face.visible).mean() > 0.85


@pytest.mark.parametrize("yaw", [60.0, -60.0])
def test_a_turned_drawn_face_matches_the_same_face_drawn_turned(yaw):
    """The synthetic faces' own head (not kerakp's mean face) drawn turned: the profiled frontal drawing lands close,
    its nose on the same side, its far jaw hidden."""
    person = random_person(np.random.default_rng(5))
    front = posed_face(np.random.default_rng(1), 0.0, 0.0, 0.0, person, size=256)
    drawn = posed_face(np.random.default_rng(1), yaw, 0.0, 0.0, person, size=256)
    face = turn_face(front["image"], front["points"], yaw, 0.0)
    eye = np.linalg.norm(front["points"][45] - front["points"][36])
    ours, truth = face.points - face.points.mean(axis=0), drawn["points"] - drawn["points"].mean(axis=0)
    assert np.sqrt(((ours - truth) ** 2).sum(axis=1).mean()) < 0.25 * eye
    assert np.sign(ours[30, 0]) == np.sign(truth[30, 0]) == np.sign(yaw)
    far, near = (FAR_JAW, NEAR_JAW) if yaw > 0 else ([16 - i for i in FAR_JAW], [16 - i for i in NEAR_JAW])
    assert not face.visible[far].any() and face.visible[near].all()


def crumpled(points: np.ndarray) -> np.ndarray:
    """Labels whose jaw side (points 2-6) lies over the nose: a 3-D shape no turn can show unfolded."""
    bad = points.copy()
    bad[2:7, 0] = points[30, 0] + 0.1 * (points[2:7, 0] - points[30, 0])
    return bad


def test_a_folded_mesh_is_dropped_and_counted(synthetic_set, tmp_path):
    image, points = mean_face_labels()
    with pytest.raises(Dropped) as drop:
        turn_face(image, crumpled(points), 45.0, 0.0)
    assert drop.value.reason == "folded"
    data = synthetic_set.subset(range(4))
    keypoints = data.keypoints.copy()
    keypoints[0] = crumpled(keypoints[0])
    report = profile_set(replace(data, keypoints=keypoints), tmp_path / "out", per_face=3, seed=0, progress=False)
    assert report.dropped["folded"] + report.dropped["torn"] >= 2 and report.written >= 9
    assert report.written + sum(report.dropped.values()) == 12
    assert len(load_dataset(tmp_path / "out")) == report.written


def test_a_profiled_set_reads_back_with_its_source_persons(synthetic_set, tmp_path):
    data = synthetic_set.subset(range(12))                  # two synthetic persons, six faces each
    report = profile_set(data, tmp_path / "out", per_face=2, seed=3, progress=False)
    assert report.written == 24 and report.sources == 12 and report.seconds > 0
    turned = load_dataset(tmp_path / "out")
    assert turned.schema.name == "ibug68" and len(turned) == 24
    sources = dict(zip([n.rsplit(".", 1)[0] for n in data.names], data.persons))
    for name, person in zip(turned.names, turned.persons):
        assert person == person_of(name) == sources[name.split("/")[0]]
    seen = pd.read_csv(tmp_path / "out" / "visibility.csv")
    assert list(seen["image"]) == turned.names
    assert seen["yaw"].abs().between(15, 90).all() and set(np.unique(seen.filter(like="v"))) <= {0, 1}
    assert (seen.filter(like="v").to_numpy() == 0).any(axis=1).mean() > 0.9   # turned past 15 degrees: some hidden
    assert np.isfinite(turned.keypoints).all()


def test_cli_profiles_a_set_and_refuses_another_markup(synthetic_csv, tmp_path):
    runner = CliRunner()
    done = runner.invoke(main, ["profile", str(synthetic_csv), str(tmp_path / "p"), "--per-face", "1", "--max-yaw", "45"])
    assert done.exit_code == 0, done.output
    assert "profiled faces from 48" in done.output and (tmp_path / "p" / "landmarks.csv").is_file()
    again = runner.invoke(main, ["profile", str(synthetic_csv), str(tmp_path / "p")])
    assert again.exit_code == 2 and "already exists" in again.output
    backwards = runner.invoke(main, ["profile", str(synthetic_csv), str(tmp_path / "r"), "--min-yaw", "60", "--max-yaw", "30"])
    assert backwards.exit_code == 2 and "yaw range 60-30" in backwards.output and not (tmp_path / "r").exists()
    five = tmp_path / "five"
    assert runner.invoke(main, ["convert", str(synthetic_csv), str(five), "--to", "csv", "--markup", "five"]).exit_code == 0
    refused = runner.invoke(main, ["profile", str(five), str(tmp_path / "q")])
    assert refused.exit_code == 2 and "profiling turns iBUG-68 faces" in refused.output and not (tmp_path / "q").exists()


def test_real_300w_faces_turn_with_few_drops(tmp_path):
    data = load_dataset(shared_path("300w_train")).subset(range(0, 2000, 250))   # 8 photos, one of each 250
    report = profile_set(data, tmp_path / "out", per_face=2, seed=0, progress=False)
    assert report.written >= 14, report.line()
    turned = load_dataset(tmp_path / "out")
    assert set(turned.persons) <= set(data.persons)
    inside = (turned.keypoints >= -5).all(axis=(1, 2)) & (turned.keypoints[..., 0] < 390).all(axis=1)
    assert inside.mean() > 0.9                              # 300-W crops: at most 384 px, the face in the middle half
