"""Every layout round-trips (read -> write -> read identical), markups convert through their named parts, and
the IMM 58 flip map mirrors real faces onto themselves."""
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import shared_path

from kerakp.cli import main
from kerakp.data.formats import WRITABLE, load_dataset, write_dataset
from kerakp.errors import KerakpError
from kerakp.schemas import convert_points, get_schema


@pytest.mark.parametrize("fmt", [f for f in WRITABLE if f != "kaggle"])
def test_each_layout_round_trips(synthetic_set, tmp_path, fmt):
    first = load_dataset(write_dataset(synthetic_set, tmp_path / "a", fmt, progress=False))
    second = load_dataset(write_dataset(first, tmp_path / "b", fmt, progress=False))
    assert first.schema.name == second.schema.name == "ibug68"
    assert first.names == second.names == synthetic_set.names
    assert np.array_equal(first.keypoints, second.keypoints)
    assert np.abs(first.keypoints - synthetic_set.keypoints).max() < 1e-5
    assert np.array_equal(first.image(3), synthetic_set.image(3))


def test_kaggle_layout_round_trips_from_synthetic_crops(synthetic_set, tmp_path):
    first = load_dataset(write_dataset(synthetic_set, tmp_path / "a", "kaggle", crop_size=96, progress=False))
    second = load_dataset(write_dataset(first, tmp_path / "b", "kaggle", progress=False))
    assert first.schema.name == "kaggle15" and first.pixels.shape == (len(synthetic_set), 96, 96, 3)
    assert np.array_equal(first.pixels, second.pixels) and np.array_equal(first.keypoints, second.keypoints)
    assert first.names == second.names
    frame = pd.read_csv(tmp_path / "a" / "training.csv")
    assert list(frame.columns[:2]) == ["left_eye_center_x", "left_eye_center_y"] and frame.columns[-1] == "Image"
    # the subject's left eye is on the image's right
    assert (frame["left_eye_center_x"] > frame["right_eye_center_x"]).all()


def test_kaggle_rows_with_missing_keypoints_read_as_nan(synthetic_set, tmp_path):
    written = write_dataset(synthetic_set, tmp_path / "k", "kaggle", crop_size=96, progress=False)
    frame = pd.read_csv(written, dtype=str, keep_default_na=False)
    frame.loc[1:, "left_eye_outer_corner_x":"right_eyebrow_outer_end_y"] = ""
    frame.to_csv(written, index=False)
    data = load_dataset(written)
    assert np.isnan(data.keypoints[1, 3]).all() and not np.isnan(data.keypoints[0]).any()


def test_kaggle_image_with_wrong_pixel_count_names_the_row(synthetic_set, tmp_path):
    written = write_dataset(synthetic_set, tmp_path / "k", "kaggle", crop_size=96, progress=False)
    frame = pd.read_csv(written, dtype=str)
    frame.loc[2, "Image"] = "1 2 3"
    frame.to_csv(written, index=False)
    with pytest.raises(KerakpError, match=r"row 4: Image has 3 pixels, expected 96x96"):
        load_dataset(written)


def test_68_points_convert_to_five_through_the_schema_parts(synthetic_set):
    five = convert_points(synthetic_set.keypoints, synthetic_set.schema, get_schema("five"))
    assert np.array_equal(five[:, [0, 1, 2, 3, 4]], synthetic_set.keypoints[:, [36, 45, 30, 48, 54]])
    kaggle = convert_points(synthetic_set.keypoints, synthetic_set.schema, get_schema("kaggle15"))
    assert np.allclose(kaggle[:, 1], synthetic_set.keypoints[:, 36:42].mean(axis=1))  # image-left eye centre
    with pytest.raises(KerakpError, match="its points cannot be made from other markups"):
        convert_points(five, get_schema("five"), get_schema("ibug68"))
    with pytest.raises(KerakpError, match="five has no right_eye"):
        convert_points(five, get_schema("five"), get_schema("kaggle15"))


def test_writers_refuse_what_the_format_cannot_hold_and_leave_nothing(synthetic_set, tmp_path):
    data = synthetic_set.subset(range(4))
    data.keypoints = data.keypoints.copy()
    data.keypoints[2, 5] = np.nan
    with pytest.raises(KerakpError, match="has missing points, which the pts format cannot store"):
        write_dataset(data, tmp_path / "out", "pts", progress=False)
    assert list(tmp_path.iterdir()) == []
    write_dataset(data, tmp_path / "out", "csv", progress=False)
    with pytest.raises(KerakpError, match="already exists"):
        write_dataset(data, tmp_path / "out", "csv", progress=False)
    with pytest.raises(KerakpError, match="add --crop 96"):
        write_dataset(data, tmp_path / "k", "kaggle", progress=False)


def test_convert_command_writes_compact_crops(synthetic_csv, tmp_path):
    result = CliRunner().invoke(main, ["convert", str(synthetic_csv), str(tmp_path / "small"), "--to", "csv",
                                       "--markup", "five", "--crop", "64"])
    assert result.exit_code == 0, result.output
    data = load_dataset(tmp_path / "small")
    assert data.schema.name == "five" and data.image(0).shape == (64, 64, 3)
    assert np.nanmax(data.keypoints) < 64 and np.nanmin(data.keypoints) > 0
    coarse = CliRunner().invoke(main, ["convert", str(synthetic_csv), str(tmp_path / "coarse"), "--to", "csv",
                                       "--markup", "five", "--crop", "64", "--quality", "30"])
    assert coarse.exit_code == 0, coarse.output
    size = lambda folder: sum(f.stat().st_size for f in (tmp_path / folder / "images").iterdir())
    assert size("coarse") < 0.6 * size("small")


def test_imm58_reads_relative_coordinates_and_persons():
    data = load_dataset(shared_path("imm58"))
    assert len(data) == 240 and data.schema.name == "imm58" and len(set(data.persons)) == 40
    height, width = cv2.imread(str(data.paths[0])).shape[:2]
    first = open(data.paths[0].with_suffix(".asf")).read().split("\n")
    row = next(line for line in first if line.startswith("0 \t4"))
    x, y = map(float, row.split()[2:4])
    assert np.allclose(data.keypoints[0, 0], [x * width, y * height])


def test_imm58_flip_map_mirrors_the_mean_face_onto_itself():
    data = load_dataset(shared_path("imm58"))
    schema = data.schema
    a, b = schema.norm

    def normalised(points):
        centred = points - points.mean(axis=-2, keepdims=True)
        return centred / np.linalg.norm(centred[..., a, :] - centred[..., b, :], axis=-1)[..., None, None]

    mean = normalised(data.keypoints).mean(axis=0)
    mirrored = mean * [-1, 1]
    residual = np.linalg.norm(mirrored[list(schema.flip)] - mean, axis=-1)
    unflipped = np.linalg.norm(mirrored - mean, axis=-1)
    assert residual.max() < 0.05 and unflipped.mean() > 5 * residual.mean()
    nose = schema.point("nose_tip")
    assert abs(mean[nose, 0]) < 0.05 and mean[nose, 1] > mean[schema.point("left_eye_outer"), 1]
