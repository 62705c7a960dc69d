"""Property tests of the readers: damaged files (truncated, random bytes, NaN, infinities, huge numbers, a
value too few or too many) give either a valid data set or one `KerakpError`, never anything else."""
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerakp.data.formats import load_dataset
from kerakp.data.readers import read_landmark_table
from kerakp.errors import KerakpError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_files(folder):
    """One well-formed file per format, each with the image it names."""
    cv2.imwrite(str(folder / "Ann_Lee_01.jpg"), np.full((40, 50, 3), 90, np.uint8))
    xy = [f"{10 + i % 20}.5,{5 + i // 20}" for i in range(68)]
    five = ",".join(str(v) for v in (10, 12, 30, 12, 20, 20, 12, 30, 28, 30))
    kaggle_cols = ["left_eye_center", "right_eye_center", "left_eye_inner_corner", "left_eye_outer_corner",
                   "right_eye_inner_corner", "right_eye_outer_corner", "left_eyebrow_inner_end", "left_eyebrow_outer_end",
                   "right_eyebrow_inner_end", "right_eyebrow_outer_end", "nose_tip", "mouth_left_corner",
                   "mouth_right_corner", "mouth_center_top_lip", "mouth_center_bottom_lip"]
    asf_rows = "\n".join(f"0 0 {0.1 + 0.01 * i:.3f} {0.2 + 0.005 * i:.3f} {i} {max(i - 1, 0)} {min(i + 1, 57)}" for i in range(58))
    return {
        "ytf68": ("landmarks.csv", "," + ",".join(str(i) for i in range(136)) + "\nAnn_Lee_01.jpg," + ",".join(xy) + "\n"),
        "pts": ("Ann_Lee_01.pts", "version: 1\nn_points: 68\n{\n" + "\n".join(p.replace(",", " ") for p in xy) + "\n}\n"),
        "csv": ("points.csv", "image_name," + ",".join(f"point_{i}_{a}" for i in range(1, 6) for a in "xy")
                + "\nAnn_Lee_01.jpg," + five + "\n"),
        "asf": ("Ann_Lee_01.asf", "# imm\n58\n" + asf_rows + "\nAnn_Lee_01.jpg\n"),
        "kaggle": ("training.csv", ",".join(f"{c}_{a}" for c in kaggle_cols for a in "xy") + ",Image\n"
                   + ",".join(["40.5"] * 30) + "," + " ".join(["17"] * 96 * 96) + "\n"),
    }


def damage(text: str, data) -> str:
    """One random damage to a well-formed file."""
    kind = data.draw(st.sampled_from(["truncate", "bytes", "number", "drop", "add"]))
    if kind == "truncate":
        return text[:data.draw(st.integers(0, len(text)))]
    if kind == "bytes":
        at = data.draw(st.integers(0, len(text)))
        junk = data.draw(st.binary(min_size=1, max_size=12)).decode("latin-1")
        return text[:at] + junk + text[at + data.draw(st.integers(0, 12)):]
    numbers = [i for i, c in enumerate(text) if c.isdigit()]
    at = data.draw(st.sampled_from(numbers))
    if kind == "number":
        return text[:at] + data.draw(st.sampled_from(["nan", "inf", "-inf", "1e308", "1e400", "-7", "NaN", ""])) + text[at + 1:]
    if kind == "drop":   # a value (and its separator) goes
        return text[:at] + text[at + 1:].split(",", 1)[-1] if "," in text[at:] else text[:at]
    return text[:at] + "3," + text[at:]


@pytest.mark.parametrize("fmt", ["ytf68", "pts", "csv", "asf", "kaggle"])
@FUZZ
@given(data=st.data())
def test_a_damaged_file_reads_as_a_valid_set_or_fails_in_one_line(fmt, tmp_path, data):
    name, text = valid_files(tmp_path)[fmt]
    (tmp_path / name).write_text(text)
    assert len(load_dataset(tmp_path / name if fmt not in ("pts", "asf") else tmp_path, fmt)) == 1   # the well-formed file
    (tmp_path / name).write_text(damage(text, data), encoding="latin-1")
    try:
        read = load_dataset(tmp_path / name if fmt not in ("pts", "asf") else tmp_path, fmt)
    except KerakpError as err:
        assert "\n" not in str(err)
        return
    assert len(read) == len(read.paths) == len(read.keypoints) >= 1
    assert not np.isinf(read.keypoints).any() and read.keypoints.shape[1:] == (read.schema.num_points, 2)


@FUZZ
@given(data=st.data())
def test_a_damaged_landmark_table_reads_or_fails_in_one_line(tmp_path, data):
    name, text = valid_files(tmp_path)["ytf68"]
    (tmp_path / name).write_text(damage(text, data), encoding="latin-1")
    try:
        names, points, schema = read_landmark_table(tmp_path / name)
    except KerakpError:
        return
    assert len(names) == len(points) and not np.isinf(points).any()


def test_an_asf_coordinate_too_large_for_any_image_fails_in_one_line(tmp_path):
    """A relative coordinate of 1e308 overflows once scaled by the image size (found by the test above)."""
    name, text = valid_files(tmp_path)["asf"]
    (tmp_path / name).write_text(text.replace("0.100 0.200", "1e308 0.200", 1))
    with pytest.raises(KerakpError, match=r"Ann_Lee_01.asf: a point lies beyond any image") as err:
        load_dataset(tmp_path, "asf")
    assert "\n" not in str(err.value)
