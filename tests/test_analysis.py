"""Face analysis with known truth: head pose (signs, mirror, accuracy), per-point confidence, openness and
blinks, aligned crops, and the command-line options that show them."""
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp import Landmarker
from kerakp.analysis import ALIGN_TEMPLATE, BlinkDetector, confidence, euler, head_pose, openness, rotation_from
from kerakp.cli import main
from kerakp.data.synthetic import posed_face
from kerakp.errors import KerakpError
from kerakp.schemas import convert_points, get_schema

IBUG, FIVE = get_schema("ibug68"), get_schema("five")


def test_rotation_and_euler_angles_are_inverse():
    for pose in [(30, -10, 5), (-44, 19, -24), (0, 0, 0)]:
        assert np.allclose(euler(rotation_from(*pose)), pose, atol=1e-9)


@pytest.mark.parametrize("pose, axis, sign", [((30, 0, 0), 0, 1), ((-30, 0, 0), 0, -1), ((0, 15, 0), 1, 1),
                                              ((0, -15, 0), 1, -1), ((0, 0, 20), 2, 1), ((0, 0, -20), 2, -1)])
def test_pose_signs_follow_the_stated_conventions(pose, axis, sign):
    """yaw > 0: the nose moves to the image's right; pitch > 0: the face looks up; roll > 0: clockwise."""
    face = posed_face(np.random.default_rng(1), *pose)
    estimate = head_pose(face["points"], face["image"].shape, IBUG)
    assert np.sign(estimate[axis]) == sign and abs(estimate[axis]) > 0.5 * abs(pose[axis])
    assert all(abs(estimate[k]) < 6 for k in range(3) if k != axis)
    if axis == 0:
        assert np.sign(face["points"][30, 0] - face["points"][[36, 45], 0].mean()) == sign


def test_the_whole_drawn_head_turns_with_its_landmarks():
    """Hair, forehead and ears are drawn turned in 3-D too: a face looking down shows more of its hair."""
    from dataclasses import replace

    from kerakp.data.synthetic import random_person

    person = replace(random_person(np.random.default_rng(0)), hair=np.array([20.0, 20.0, 200.0]))
    hair = []
    for pitch in (-20, 0, 20):
        image = posed_face(np.random.default_rng(0), 0, pitch, 0, person=person)["image"].astype(int)
        hair.append(((image[..., 2] > image[..., 0] + 80) & (image[..., 2] > image[..., 1] + 80)).sum())
    assert hair[0] > 1.3 * hair[1] > 1.3 * 1.3 * hair[2]


def test_pose_from_true_landmarks_is_within_a_few_degrees_and_mirrors():
    rng = np.random.default_rng(2)
    errors = []
    for _ in range(20):
        pose = (rng.uniform(-40, 40), rng.uniform(-15, 15), rng.uniform(-20, 20))
        face = posed_face(rng, *pose)
        estimate = head_pose(face["points"], face["image"].shape, IBUG)
        errors.append(np.abs(np.array(estimate) - pose))
        mirrored = IBUG.flip_points(face["points"], face["image"].shape[1])
        yaw, pitch, roll = head_pose(mirrored, face["image"].shape, IBUG)
        assert np.allclose((yaw, pitch, roll), (-estimate[0], estimate[1], -estimate[2]), atol=1.0)
    assert np.all(np.mean(errors, axis=0) < [7, 4, 4])


def test_pose_works_from_five_points_and_refuses_a_markup_with_too_few():
    face = posed_face(np.random.default_rng(3), 25, 0, 10)
    five = convert_points(face["points"], IBUG, FIVE)
    yaw, _, roll = head_pose(five, face["image"].shape, FIVE)
    assert yaw > 8 and roll > 3
    with pytest.raises(KerakpError, match="markup 'nose_tip' has 1 of the named points head pose needs"):
        head_pose(np.zeros((1, 2)), (100, 100), get_schema("nose_tip"))


def test_openness_tells_closed_eyes_and_the_blink_detector_counts_closings():
    rng = np.random.default_rng(4)
    open_eyes, closed = posed_face(rng, 0, 0, 0), posed_face(rng, 0, 0, 0, eyes_closed=True)
    assert 0.2 < openness(open_eyes["points"], IBUG)["left_eye"] < 0.6
    assert openness(closed["points"], IBUG)["right_eye"] < 0.05
    with pytest.raises(KerakpError, match="markup 'five' has no eye and lip contours"):
        openness(np.zeros((5, 2)), FIVE)
    detector, ratios = BlinkDetector(), np.full(100, 0.33) + np.random.default_rng(0).normal(0, 0.003, 100)
    ratios[[20, 21, 22, 50, 51, 80]] = 0.28                                # three closings, one a single frame
    states = [detector.update(r) for r in ratios]
    assert detector.blinks == 3 and states[21] and not states[30]


def test_confidence_falls_with_the_flip_disagreement():
    values = confidence(np.array([0.0, 0.02, 0.04, 0.2]), [0.02] * 4)
    assert np.allclose(values[:3], [1.0, 0.5, 0.25]) and values[3] < 0.01


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pose")
    face = posed_face(np.random.default_rng(5), 20, 0, 8, size=240)
    cv2.imwrite(str(folder / "face.png"), cv2.cvtColor(face["image"], cv2.COLOR_RGB2BGR))
    return folder / "face.png", face


def test_a_predicted_face_has_pose_confidence_openness_and_aligns(photo):
    lm = Landmarker("300w")
    (face,) = lm.predict(photo[0], max_faces=1)
    yaw, pitch, roll = face.pose
    assert yaw > 5 and roll > 3
    assert face.confidence.shape == (68,) and ((0 <= face.confidence) & (face.confidence <= 1)).all()
    assert set(face.openness) == {"left_eye", "right_eye", "mouth"}
    crop = face.aligned(photo[1]["image"])
    again = lm.predict(crop, max_faces=1)
    assert again and crop.shape == (112, 112, 3)
    eyes = np.stack([again[0].points[36:42].mean(axis=0), again[0].points[42:48].mean(axis=0)])
    assert np.abs(eyes - ALIGN_TEMPLATE[:2]).max() < 5        # the eyes land on the template


def test_the_command_line_adds_pose_and_confidence_and_writes_aligned_crops(photo, tmp_path):
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(main, ["predict", "300w", str(photo[0]), "--out", str(out), "--pose", "--confidence"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert {"yaw", "pitch", "roll", "c0", "c67"} <= set(table.columns) and table["yaw"].iloc[0] > 5
    result = CliRunner().invoke(main, ["align", "300w", str(photo[0]), "--out", str(tmp_path / "crops"), "--size", "96"])
    assert result.exit_code == 0 and "wrote 1 aligned faces" in result.output
    assert cv2.imread(str(tmp_path / "crops" / "face.png")).shape == (96, 96, 3)
    again = CliRunner().invoke(main, ["align", "300w", str(photo[0]), "--out", str(tmp_path / "crops")])
    assert again.exit_code == 2 and "crops: already exists" in again.stderr
    tags = tmp_path / "tags.csv"
    assert CliRunner().invoke(main, ["emotion", "300w", str(photo[0]), "--out", str(tags)]).exit_code == 0
    assert {"left_eye", "right_eye", "mouth_open"} <= set(pd.read_csv(tags).columns)
