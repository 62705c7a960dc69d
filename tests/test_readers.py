"""Readers: each layout in original pixels, NaN for missing points, and one clear line for each bad input."""
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from kerakp.data.dataset import join_sets, person_of, photo_of, split_by_person
from kerakp.data.formats import load_dataset
from kerakp.data.images import read_image
from kerakp.data.readers import read_pts_file
from kerakp.errors import KerakpError
from kerakp.schemas import get_schema


def _write_image(path: Path, size=(40, 50)) -> Path:
    cv2.imwrite(str(path), np.full((*size, 3), 128, np.uint8))
    return path


def _write_pts(path: Path, points: np.ndarray, n_points: int | None = None):
    lines = ["version: 1", f"n_points: {n_points or len(points)}", "{"] + [f"{x} {y}" for x, y in points] + ["}"]
    path.write_text("\n".join(lines) + "\n")


def test_ytf68_real_csv_matches_its_columns():
    data = load_dataset(shared_path("ytf68"))
    frame = pd.read_csv(shared_path("ytf68", "training_frames_keypoints.csv"))
    assert len(data) == len(frame) and data.schema.name == "ibug68"
    assert data.keypoints.shape == (len(frame), 68, 2)
    assert np.array_equal(data.keypoints[7].ravel(), frame.iloc[7, 1:].to_numpy(float))
    assert data.paths[0].parent.name == "training" and data.paths[0].is_file()
    assert data.persons[0] == person_of(frame.iloc[0, 0])


def test_300w_pts_are_made_zero_based():
    folder = shared_path("300w_train")
    first = sorted(folder.glob("*.pts"))[0]
    raw = np.loadtxt(first.read_text().split("{")[1].split("}")[0].split("\n")[1:-1])
    assert np.allclose(read_pts_file(first), raw - 1.0)


def test_pts_folder(tmp_path):
    points = np.arange(136, dtype=float).reshape(68, 2) + 1
    for name in ("helen_1_1", "helen_1_2", "afw_9_1"):
        _write_image(tmp_path / f"{name}.jpg")
        _write_pts(tmp_path / f"{name}.pts", points)
    data = load_dataset(tmp_path)
    assert data.schema.name == "ibug68" and len(data) == 3
    assert np.allclose(data.keypoints[0], points - 1)
    assert sorted(set(data.persons)) == ["afw_9", "helen_1"]


def test_300w_person_is_the_source_photo():
    assert photo_of("helen_232194_1.jpg") == photo_of("helen_232194_2.jpg") == "helen_232194"
    assert photo_of("afw_1051618982_1.jpg") == "afw_1051618982"
    assert photo_of("lfpw_image_0262.jpg") != photo_of("lfpw_image_0263.jpg")


def test_five_point_csv_marks_missing_as_nan(tmp_path):
    for name in ("a_1.jpg", "b_1.jpg"):
        _write_image(tmp_path / name)
    header = "image_name," + ",".join(f"point_{i}_{a}" for i in range(1, 6) for a in "xy")
    (tmp_path / "points.csv").write_text(header + "\na_1.jpg,1,2,3,4,5,6,7,8,9,10\nb_1.jpg,1,2,-1,-1,5,6,7,8,9,10\n")
    data = load_dataset(tmp_path / "points.csv")
    assert data.schema.name == "five" and data.keypoints.shape == (2, 5, 2)
    assert np.isnan(data.keypoints[1, 1]).all() and not np.isnan(data.keypoints[0]).any()
    assert data.keypoints[0, 4].tolist() == [9, 10]


def _ytf_csv(tmp_path: Path, rows: list[str], columns: int = 137) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    _write_image(tmp_path / "images" / "x_1.jpg")
    header = "," + ",".join(str(i) for i in range(columns - 1))
    path = tmp_path / "faces_keypoints.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _row(name="x_1.jpg", values=None):
    return ",".join([name] + [str(v) for v in (values or [10.0] * 136)])


@pytest.mark.parametrize("case, message", [
    ("missing image", r"faces_keypoints.csv row 3: image not found: .*ghost_1.jpg"),
    ("bad number", r"faces_keypoints.csv row 2: cannot parse 'ten' as a number"),
    ("wrong columns", r"faces_keypoints.csv: expected a name column plus 2K coordinate columns, got 6 columns"),
    ("unknown count", r"no single known markup has 7 points"),
])
def test_bad_ytf_csv_names_file_and_row(tmp_path, case, message):
    if case == "missing image":
        path = _ytf_csv(tmp_path, [_row(), _row("ghost_1.jpg")])
    elif case == "bad number":
        path = _ytf_csv(tmp_path, [_row(values=["ten"] + [1] * 135)])
    elif case == "wrong columns":
        path = _ytf_csv(tmp_path, ["x_1.jpg,1,2,3,4,5"], columns=6)
    else:
        path = _ytf_csv(tmp_path, ["x_1.jpg," + ",".join(["1"] * 14)], columns=15)
    with pytest.raises(KerakpError, match=message):
        load_dataset(path)


def test_bad_pts_and_unknown_format(tmp_path):
    _write_image(tmp_path / "a_1.jpg")
    _write_pts(tmp_path / "a_1.pts", np.ones((68, 2)), n_points=70)
    with pytest.raises(KerakpError, match=r"a_1.pts: 68 points listed, header says 70"):
        load_dataset(tmp_path)
    (tmp_path / "a_1.pts").write_text("version: 1\nn_points: 68\n")
    with pytest.raises(KerakpError, match=r"a_1.pts: not a .pts file"):
        load_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(KerakpError, match=r"notes.txt: unknown data format"):
        load_dataset(tmp_path / "notes.txt")
    with pytest.raises(KerakpError, match=r"nowhere: no such file or folder"):
        load_dataset(tmp_path / "nowhere")


def test_corrupt_image_is_named(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(KerakpError, match=r"broken.jpg: not a readable image"):
        read_image(path)
    with pytest.raises(KerakpError, match=r"absent.png: image not found"):
        read_image(tmp_path / "absent.png")


def test_person_split_keeps_persons_apart(synthetic_set):
    train, val = split_by_person(synthetic_set, 0.25, seed=0)
    assert sorted(train + val) == list(range(len(synthetic_set)))
    assert not {synthetic_set.persons[i] for i in train} & {synthetic_set.persons[i] for i in val}
    assert 0.15 * len(synthetic_set) <= len(val) <= 0.35 * len(synthetic_set)
    assert split_by_person(synthetic_set, 0.25, seed=0) == (train, val)
    assert person_of("Luis_Fonsi_21.jpg") == "Luis_Fonsi" and person_of("helen_232194_1.jpg") == "helen_232194"


def test_join_sets_keeps_every_face_and_its_crop_box(synthetic_set):
    first, second = synthetic_set.subset(range(10)), synthetic_set.subset(range(10, 16))
    joined = join_sets([first, second])
    assert len(joined) == 16 and joined.boxes is None
    assert np.array_equal(joined.keypoints, synthetic_set.keypoints[:16]) and joined.paths == synthetic_set.paths[:16]
    boxed = join_sets([first, replace(second, boxes=np.tile([1.0, 2.0, 30.0, 40.0], (6, 1)))])
    assert np.allclose(boxed.boxes[0], first.crop_box(0)) and np.allclose(boxed.boxes[10], [1, 2, 30, 40])
    with pytest.raises(KerakpError, match="cannot join markups ibug68, nose_tip"):
        join_sets([first, second.as_markup(get_schema("nose_tip"))])
    with pytest.raises(KerakpError, match="cannot join sets with embedded images to sets of image files"):
        join_sets([first, replace(second, pixels=np.zeros((6, 8, 8, 3), np.uint8))])
