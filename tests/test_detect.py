"""Face detectors: BlazeFace's anchors, decoder and NMS, its recall on synthetic faces of every skin tone,
several faces in one image, tiles for a small face, no TensorFlow, and the detector option."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.geometry import box_iou, points_box
from kerakp.data.synthetic import SKIN_TONES, random_person, synthetic_face
from kerakp.detect import (
    BLAZEFACE_FULL,
    BLAZEFACE_SHORT,
    BlazeFaceDetector,
    BoxCalibration,
    DetectedFace,
    calibration_for,
    fit_box_calibration,
    get_detector,
    ssd_anchors,
    weighted_nms,
)
from kerakp.errors import KerakpError, KerakpWarning
from kerakp.inference import Predictor

SHIPPED = Path(__file__).resolve().parents[1] / "kerakp" / "presets" / "ytf68_mobilenetv2_heatmap.tflite"


def test_anchors_follow_mediapipes_layers():
    short = ssd_anchors(BLAZEFACE_SHORT.size, BLAZEFACE_SHORT.layers)
    assert short.shape == (896, 2)          # 16 x 16 cells x 2 + 8 x 8 cells x 6
    assert np.allclose(short[:2], [0.5 / 16, 0.5 / 16]) and np.allclose(short[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(short[512:518], [0.5 / 8, 0.5 / 8]) and np.allclose(short[-1], [7.5 / 8, 7.5 / 8])
    assert ssd_anchors(BLAZEFACE_FULL.size, BLAZEFACE_FULL.layers).shape == (2304, 2)


class ScriptedInterpreter:
    """Answers one detection: anchor `index`, a box (centre offset, size) and keypoints in input pixels."""

    def __init__(self, index, offset, size, keypoints, logit=5.0):
        self.raw = np.zeros((1, 896, 16), np.float32)          # the model's outputs, batch 1
        self.raw[0, index, :4] = [*offset, *size]
        self.raw[0, index, 4:] = np.ravel(keypoints)
        self.logits = np.full((1, 896, 1), -20.0, np.float32)
        self.logits[0, index] = logit
        self.given = None

    def set_tensor(self, index, value):
        self.given = value[0]

    def invoke(self):
        pass

    def get_tensor(self, index):
        return {"regressors": self.raw, "classifiers": self.logits}[index]


def scripted_detector(interpreter, **options):
    detector = BlazeFaceDetector(**options)
    detector.interpreter, detector.regressors, detector.classifiers = interpreter, "regressors", "classifiers"
    return detector


def test_the_decoder_maps_anchor_offsets_back_through_the_letterbox():
    """An image 200 wide, 100 tall is scaled by s = 128/200 and centred 32 px down in the 128 x 128 input; a
    point decoded at input (x, y) is at image (x / s - 0.5, (y - 32) / s - 0.5)."""
    anchors = ssd_anchors(128, BLAZEFACE_SHORT.layers)
    index = 600                                       # an anchor of the 8 x 8 layer
    centre_in = anchors[index] * 128 + [3.0, -2.0]
    interpreter = ScriptedInterpreter(index, [3.0, -2.0], [40.0, 30.0], [[-10, -5], [10, -5]] + [[0, 0]] * 4)
    detector = scripted_detector(interpreter, tiles=False)
    image = np.full((100, 200, 3), 255, np.uint8)
    (face,) = detector.faces(image)
    s = 128 / 200
    to_image = lambda p: (np.asarray(p) - [0, 32]) / s - 0.5  # noqa: E731
    assert np.allclose(face.box, [*to_image(centre_in - [20, 15]), *to_image(centre_in + [20, 15])], atol=1e-4)
    anchor = anchors[index] * 128                     # keypoints are offsets from the anchor, as the box centre is
    assert np.allclose(face.eyes, [to_image(anchor + [-10, -5]), to_image(anchor + [10, -5])], atol=1e-4)
    assert np.isclose(face.score, 1 / (1 + np.exp(-5)))
    given = interpreter.given                         # the letterboxed input in [-1, 1], black bars above and below
    assert given.shape == (128, 128, 3) and np.allclose(given[:32], -1) and np.allclose(given[33:95], 1)
    interpreter.logits[0, index] = -1.0               # below min_score: nothing
    assert detector.faces(image) == []


def test_weighted_nms_merges_overlapping_boxes_and_keeps_the_rest():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.6, 0.7])
    extras = np.zeros((3, 6, 2))
    kept = weighted_nms(boxes, scores, extras, iou=0.3)
    assert [score for _, score, _ in kept] == [0.9, 0.7]
    assert np.allclose(kept[0][0], [0.6 / 1.5, 0, 10 + 0.6 / 1.5, 10])   # score-weighted mean of the pair
    assert np.allclose(kept[1][0], boxes[2])


def test_blazeface_finds_synthetic_faces_of_every_skin_tone():
    rng = np.random.default_rng(3)
    detector = get_detector("blazeface")
    for tone in SKIN_TONES:
        for _ in range(3):
            person = random_person(rng)
            person.skin = tone.astype(np.float64)
            face = synthetic_face(rng, person, size=160)
            faces = detector.faces(face["image"])
            assert faces and faces[0].score >= 0.6, tone
            truth = BoxCalibration(0, 0.06, 0.97).apply(faces[0].box)
            assert box_iou(truth, points_box(face["points"])) > 0.5, tone


def several_faces(sides=(160, 130, 100)):
    """A 320 x 320 image holding three synthetic faces of different sizes (the smallest about an eighth of
    the frame, where short-range BlazeFace still sees a face), and their points."""
    rng = np.random.default_rng(5)
    image, truths = np.full((320, 320, 3), 128, np.uint8), []
    for side, (x, y) in zip(sides, [(0, 0), (170, 10), (60, 190)]):
        face = synthetic_face(rng, size=side, roll_range=5)
        image[y:y + side, x:x + side] = face["image"]
        truths.append(face["points"] + [x, y])
    return image, truths


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no shipped model at {SHIPPED}")
def test_every_face_of_an_image_is_read_largest_first(tmp_path):
    image, truths = several_faces()
    (faces,) = Predictor(SHIPPED, turn=0).predict_faces([image])
    assert len(faces) == 3 and all(face.detected and face.score >= 0.6 for face in faces)
    assert [face.score for face in faces] == sorted([face.score for face in faces], reverse=True)   # surest first
    for truth in truths:   # each face read on its own
        assert max(box_iou(face.box, points_box(truth)) for face in faces) > 0.6
    assert len(Predictor(SHIPPED, turn=0).predict_faces([image], max_faces=2)[0]) == 2
    cv2.imwrite(str(tmp_path / "group.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(main, ["predict", str(SHIPPED), str(tmp_path / "group.png"), "--out", str(out), "--turn", "0"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["image", "face", "found", "detected"] and list(table["face"]) == [0, 1, 2]
    assert "3 faces in 1 of 1 images" in result.output
    one = CliRunner().invoke(main, ["predict", str(SHIPPED), str(tmp_path), "--out", str(out), "--max-faces", "1", "--turn", "0",
                                    "--overwrite"])
    assert one.exit_code == 0 and list(pd.read_csv(out).columns[:3]) == ["image", "found", "detected"] and len(pd.read_csv(out)) == 1


def test_tiles_find_a_face_too_small_for_the_whole_frame():
    rng = np.random.default_rng(11)
    face = synthetic_face(rng, size=128, roll_range=5)
    frame = np.full((480, 640, 3), 110, np.uint8)
    frame[300:428, 450:578] = face["image"]               # a face about 50 px wide, 8 % of the frame
    truth = face["points"] + [450, 300]
    assert get_detector("blazeface", tiles=False).faces(frame) == []
    faces = get_detector("blazeface").faces(frame)
    assert len(faces) == 1
    centre = (faces[0].box[:2] + faces[0].box[2:]) / 2
    box = points_box(truth)
    assert np.all((centre > box[:2]) & (centre < box[2:]))


def test_fit_box_calibration_uses_the_detected_face_nearest_the_labelled_one():
    class TwoFaces:
        name, default_calibration = "two", BoxCalibration()

        def faces(self, image):
            return [DetectedFace(np.array([0.0, 0, 40, 40]), 0.9), DetectedFace(np.array([100.0, 100, 150, 150]), 0.8)]

    points = np.array([[110.0, 115], [140, 145]])
    fitted = fit_box_calibration(TwoFaces(), [None], [points])
    assert fitted.samples == 1 and np.isclose(fitted.scale, 30 / 50) and np.isclose(fitted.dy, 5 / 50)
    partial = np.array([[110.0, 115], [np.nan, np.nan], [140, 145]])   # a hidden point: no landmark box to fit
    assert fit_box_calibration(TwoFaces(), [None, None], [points, partial]).samples == 1


def test_the_box_calibration_follows_where_the_detector_saw_the_eyes():
    rng = np.random.default_rng(0)
    pairs = [np.array([[30, 40], [70, 40]]) + rng.normal(0, 5, (2, 2)) for _ in range(60)]

    def landmark_box(eyes):   # 25 px below the eyes' midpoint, wider apart eyes: a larger face
        centre, side = eyes.mean(axis=0) + [0, 25], 90 * np.exp(0.5 * ((eyes[1, 0] - eyes[0, 0]) / 100 - 0.4))
        return np.stack([centre - side / 2, centre + side / 2])

    class SeesEyes:
        name, default_calibration = "eyes", BoxCalibration()

        def faces(self, index):
            return [DetectedFace(np.array([0.0, 0, 100, 100]), 0.9, pairs[index])]

    fitted = fit_box_calibration(SeesEyes(), range(60), [landmark_box(e) for e in pairs])
    assert fitted.samples == 60 and np.array(fitted.eyes).shape == (5, 3)
    turned = np.array([[40.0, 30], [75, 50]])                        # a face off centre and turned in its box
    assert np.allclose(fitted.apply(np.array([0.0, 0, 100, 100]), turned), landmark_box(turned).ravel())
    assert np.allclose(fitted.apply(np.array([0.0, 0, 100, 100])),   # no eyes seen: the medians
                       BoxCalibration(fitted.dx, fitted.dy, fitted.scale).apply(np.array([0.0, 0, 100, 100])))


def test_a_model_without_the_detectors_calibration_warns_and_uses_the_detectors_defaults():
    class Model:
        box_calibration = {"haar": {"dx": 0.0, "dy": 0.2, "scale": 0.8, "samples": 9}}

    with pytest.warns(KerakpWarning, match="no box calibration for the blazeface detector"):
        calibration = calibration_for(Model(), get_detector("blazeface"))
    assert calibration == BlazeFaceDetector.default_calibration
    assert calibration_for(Model(), get_detector("haar")).dy == 0.2


def test_unknown_detector_names_the_known_ones(tmp_path):
    with pytest.raises(KerakpError, match=r"unknown detector 'mtcnn' \(known: blazeface, haar\)"):
        get_detector("mtcnn")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    for args, line in ((["predict", str(SHIPPED), str(image), "--detector", "mtcnn"],   # the choices come from the table
                        "error: Invalid value for '--detector': 'mtcnn' is not one of 'blazeface', 'haar'. (see `kerakp predict --help`)"),
                       (["train", "--data", str(tmp_path), "--detector", "mtcnn"],
                        "error: unknown detector 'mtcnn' (known: blazeface, haar)")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.output.strip().splitlines() == [line], result.output


def test_blazeface_and_calibration_run_without_tensorflow(synthetic_csv):
    """A JAX-only machine fits box calibrations: nothing on that path may import TensorFlow."""
    code = f"""
import sys
sys.modules["tensorflow"] = None          # any import of TensorFlow now fails
import os
os.environ["KERAS_BACKEND"] = "jax"
from kerakp.data.formats import load_dataset
from kerakp.train import calibrate_detector
fitted = calibrate_detector([load_dataset({str(synthetic_csv)!r})], 12, seed=0, progress=False, names=["blazeface"])
assert fitted["blazeface"]["samples"] >= 10, fitted
print("ok", fitted["blazeface"]["scale"])
"""
    pytest.importorskip("jax")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]
