"""The one inference path: its crops are the training crops, its decode goes back to original pixels."""
import numpy as np
import pytest
from conftest import shared_path

from kerakp.data.formats import load_dataset
from kerakp.data.geometry import crop_from_box, points_box
from kerakp.data.images import read_image
from kerakp.data.sequence import KeypointSequence
from kerakp.detect import BoxCalibration, DetectedFace, HaarDetector, fit_box_calibration, get_detector
from kerakp.errors import KerakpError
from kerakp.inference import Prediction, Predictor, fit_point_offsets
from kerakp.model_info import CropRule
from kerakp.models.landmark_model import LandmarkModel
from kerakp.runtime import open_model


class RecordingPredictor(Predictor):
    """A Predictor whose model answers 'crop centre' and remembers the crops it was given."""

    def run_model(self, crops):
        self.seen = getattr(self, "seen", []) + [crops]
        return np.full((len(crops), 2 * self.schema.num_points), 0.5, np.float32)


@pytest.fixture(scope="module")
def tiny_model():
    return LandmarkModel("simplecnn", "ibug68", 48, head_units=8, crop_scale=1.25)


def test_oracle_crop_is_the_training_crop(tiny_model, synthetic_set):
    predictor = RecordingPredictor(tiny_model, box="oracle", passes=1)
    images = [read_image(p) for p in synthetic_set.paths[:3]]
    predictor.predict_batch(images, list(synthetic_set.keypoints[:3]))
    training = KeypointSequence(synthetic_set, CropRule(48), batch_size=3)[0][0]
    assert np.array_equal(predictor.seen[0], training)


def test_decode_maps_back_through_the_crop(tiny_model, synthetic_set):
    """A model that always says 'crop centre' puts every point at the centre of the box it was given."""
    predictor = RecordingPredictor(tiny_model, box="oracle", passes=1)
    truth = synthetic_set.keypoints[0]
    result = predictor.predict(read_image(synthetic_set.paths[0]), truth)
    box = points_box(truth)
    assert np.allclose(result.points, (box[:2] + box[2:]) / 2, atol=1e-6)
    assert result.detected and result.points.shape == (68, 2)


def test_full_image_box_and_passes(tiny_model):
    predictor = RecordingPredictor(tiny_model, box="full", passes=3, turn=0)
    image = np.zeros((90, 120, 3), np.uint8)
    result = predictor.predict(image)
    assert len(predictor.seen) == 4  # three passes, then the flip test (crop and mirror in one batch)
    assert np.allclose(result.points, [59.5, 44.5])  # the image centre, pass after pass


class LayoutPredictor(Predictor):
    """A Predictor whose model answers one fixed spread of points on every crop."""

    def run_model(self, crops):
        layout = np.random.default_rng(0).uniform(0.3, 0.7, 2 * self.schema.num_points)
        return np.tile(layout, (len(crops), 1)).astype(np.float32)


def test_point_offsets_shift_the_landmarks_by_a_share_of_the_crop_they_were_read_from(tiny_model):
    image = np.zeros((90, 120, 3), np.uint8)
    plain = LayoutPredictor(tiny_model, box="full", passes=1, turn=0)
    shifted = LayoutPredictor(LandmarkModel.from_config({**tiny_model.get_config(), "point_offsets": [[[0.1, -0.05]] * 68] * 2}),
                              box="full", passes=1, turn=0)
    refined = plain.refine([image], [plain.face_boxes(image)[0].box])[0]
    side = crop_from_box(points_box(refined), 1.25).side   # the flip test's crop
    assert side > 10
    assert np.allclose(shifted.predict(image).points - plain.predict(image).points, [0.1 * side, -0.05 * side])
    # the live loop's tracked frames read with the direct offsets too
    assert np.allclose(shifted.track(image, refined) - plain.track(image, refined), [0.1 * side, -0.05 * side])


def test_turned_reads_rotate_about_the_crop_centre_both_ways(tiny_model):
    """A model that reads one fixed layout Q on every crop: the reads of the crop turned by -t and +t degrees
    are Q turned back by +t and -t about the crop centre, so their mean is Q pulled in by cos t, no sideways
    shift; the result is the mean of that and the unturned read."""
    image = np.zeros((90, 120, 3), np.uint8)
    plain = LayoutPredictor(tiny_model, box="full", passes=1, turn=0)
    turned = LayoutPredictor(tiny_model, box="full", passes=1, turn=20)
    first = plain.predict(image)
    read_again, _, _ = plain.flip_test([image], [plain.view(first.points)])   # the unturned read of the result's own box
    centre = (first.box[:2] + first.box[2:]) / 2
    expected = (first.points + 2 * (centre + np.cos(np.deg2rad(20)) * (read_again[0] - centre))) / 3
    assert np.allclose(turned.predict(image).points, expected, atol=1e-3)
    assert turned.predict(image).flip_nme == first.flip_nme   # the score stays the unturned read's


def test_an_upright_model_reads_later_passes_turned_level_by_the_last_pass(tiny_model):
    """Each pass after the first, the flip test and the turned reads crop around the last points turned so
    their outer eye corners lie level; a plain model's crops, and every first pass, are unturned."""
    class Recording(LayoutPredictor):
        def crop(self, image, box, angle=0.0):
            self.angles = getattr(self, "angles", []) + [angle]
            return super().crop(image, box, angle)

    image = np.zeros((90, 120, 3), np.uint8)
    upright = Recording(LandmarkModel.from_config({**tiny_model.get_config(), "upright": True}), box="full", passes=3, turn=10)
    plain = Recording(tiny_model, box="full", passes=3, turn=10)
    result = upright.predict(image)
    plain.predict(image)
    assert plain.angles == [0.0] * 4 + [-10.0, 10.0]   # three passes, the flip test, the two turned reads
    first = plain.refine([image], [plain.face_boxes(image)[0].box], passes=1)[0]
    left, right = upright.schema.norm
    level = lambda points: -np.degrees(np.arctan2(*(points[right] - points[left])[::-1]))
    assert abs(level(first)) > 1   # the layout is tilted
    assert upright.angles[0] == 0 and np.isclose(upright.angles[1], level(first))
    assert np.allclose(upright.angles[-2:], level(result.points) + np.array([-10, 10]))   # turned reads of the result


def test_fitted_point_offsets_recover_a_labelling_shift(synthetic_set):
    """Labels that sit a fixed share of the crop right of and below what the model reads (its reads include
    the model's own offsets): the fit finds those offsets plus the shift."""
    model = open_model("saved_models/ytf68_mobilenetv2_heatmap.keras")
    images = [read_image(p) for p in synthetic_set.paths[:8]]
    reads = [r.points for r in Predictor(model, box="full").predict_batch(images)]
    sides = np.array([1.25 * np.ptp(points, axis=0).max() for points in reads])
    labels = np.stack(reads) + np.array([0.03, 0.02]) * sides[:, None, None]
    offsets = np.array(fit_point_offsets(model, images, labels)[0])   # (direct, mirrored reading) x 68 points x (x, y)
    assert offsets.shape == (2, 68, 2)
    shift = offsets - np.asarray(model.point_offsets)
    assert np.allclose(np.median(shift.mean(axis=0), axis=0), [0.03, 0.02], atol=0.005)


def test_a_model_trained_on_whole_images_reads_the_flip_test_on_the_whole_image():
    model = LandmarkModel("simplecnn", "nose_tip", 48, head_units=8, crop_scale=1.0, face_box="image")
    predictor = RecordingPredictor(model, box="detector", passes=2)
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    predictor.predict(image)
    (first,), (direct, mirrored) = predictor.seen   # one pass, then the flip test on the same crop
    assert np.array_equal(direct, first) and np.array_equal(mirrored, first[:, ::-1])


def test_no_face_gives_no_points(tiny_model):
    predictor = RecordingPredictor(tiny_model, box="detector")
    result = predictor.predict(np.full((200, 200, 3), 90, np.uint8))
    assert result.points is None and not result.detected
    fallback = RecordingPredictor(tiny_model, box="detector", fallback="full").predict(np.full((200, 200, 3), 90, np.uint8))
    assert fallback.points is not None and not fallback.detected


class FakeDetector:
    name = "fake"
    default_calibration = BoxCalibration()

    def __init__(self, *boxes):
        self.boxes = [np.array(b, dtype=np.float64) for b in boxes]

    def faces(self, image):
        return [DetectedFace(box, 0.9) for box in self.boxes]


class BrightnessPredictor(Predictor):
    """Reads bright crops as a mirror-symmetric face (consistent under flips) and dark ones as the same face
    shifted left, whatever the flip (inconsistent): a stand-in for faces and false detections."""

    def run_model(self, crops):
        size, schema = self.input_size, self.schema
        face = size * (0.5 + 0.3 * np.stack([np.cos(np.linspace(0, 2 * np.pi, schema.num_points, endpoint=False)),
                                              np.sin(np.linspace(0, 2 * np.pi, schema.num_points, endpoint=False))], -1))
        face = (face + schema.flip_points(face, size)) / 2  # symmetric: mirrored and re-indexed, it is itself
        outputs = np.repeat(((face + 0.5) / size).reshape(1, -1), len(crops), axis=0)
        outputs[crops.mean(axis=(1, 2, 3)) < 100, 0::2] -= 0.1
        return outputs


def _two_tone(dark_box) -> np.ndarray:
    image = np.full((200, 200, 3), 200, np.uint8)
    x0, y0, x1, y1 = dark_box
    image[y0:y1, x0:x1] = 20
    return image


def test_the_most_consistent_candidate_wins(tiny_model):
    dark, bright = (0, 0, 100, 100), (110, 110, 170, 170)
    predictor = BrightnessPredictor(tiny_model, detector=FakeDetector(dark, bright), passes=1)
    result = predictor.predict(_two_tone((0, 0, 120, 120)))
    centre = (result.box[:2] + result.box[2:]) / 2
    assert result.detected and np.all((centre > 110) & (centre < 170)) and result.flip_nme < 1e-6


def test_a_doubtful_detection_loses_to_the_whole_image(tiny_model):
    image = _two_tone((0, 0, 60, 60))
    only_dark = BrightnessPredictor(tiny_model, detector=FakeDetector((5, 5, 55, 55)), passes=1)
    assert only_dark.predict(image).detected and only_dark.predict(image).flip_nme > only_dark.doubt
    rescued = BrightnessPredictor(tiny_model, detector=FakeDetector((5, 5, 55, 55)), passes=1, fallback="full").predict(image)
    assert not rescued.detected and rescued.flip_nme < 1e-6


class ScriptedPredictor(Predictor):
    """The detector's face reads with disagreement 0.10 at one place, the whole image with `fallback_score`
    at another."""

    def __init__(self, model, fallback_score: float):
        super().__init__(model, detector=FakeDetector((50, 50, 150, 150)), fallback="full", turn=0)
        self.fallback_score = fallback_score

    def choose(self, images, found):
        whole = [not some[0].detected for some in found]
        return [Prediction(np.full((self.schema.num_points, 2), 10.0 if w else 100.0), None, not w,
                           self.fallback_score if w else 0.10) for w in whole]


def test_the_whole_image_replaces_a_detected_face_only_by_a_margin(tiny_model):
    image = np.full((200, 200, 3), 90, np.uint8)
    kept = ScriptedPredictor(tiny_model, fallback_score=0.08).predict(image)
    assert kept.detected and kept.points[0, 0] == 100.0
    replaced = ScriptedPredictor(tiny_model, fallback_score=0.05).predict(image)
    assert not replaced.detected and replaced.points[0, 0] == 10.0


def _iou(a, b) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@pytest.mark.parametrize("name, gain", [("haar", 0.05), ("blazeface", 0.03)])   # BlazeFace's boxes fit better raw
def test_calibration_maps_detector_boxes_to_landmark_boxes(name, gain):
    data = load_dataset(shared_path("ytf68")).subset(range(0, 3452, 40))
    images = [read_image(p) for p in data.paths]
    detector = get_detector(name)
    calibration = fit_box_calibration(detector, images[::2], data.keypoints[::2])
    assert calibration.samples > 20
    found = [(detector.faces(image), points_box(points)) for image, points in zip(images[1::2], data.keypoints[1::2])]
    found = [(faces[0].box, truth) for faces, truth in found if faces]
    assert len(found) > 0.8 * len(images[1::2])
    calibrated = np.median([_iou(calibration.apply(box), truth) for box, truth in found])
    raw = np.median([_iou(box, truth) for box, truth in found])
    assert calibrated > 0.7 and calibrated > raw + gain


class CascadeThatNeedsSize:
    """Stands in for the Haar cascade: finds one face, at (10, 10) 40 px wide, only in images >= 200 px tall."""

    def __init__(self):
        self.shapes = []

    def detectMultiScale(self, gray, *args, **kwargs):
        self.shapes.append(gray.shape)
        return np.array([[10, 10, 40, 40]]) if gray.shape[0] >= 200 else ()


def test_haar_takes_a_second_look_at_twice_the_size_of_a_small_image():
    detector = HaarDetector()
    detector.cascade = CascadeThatNeedsSize()
    faces = detector.faces(np.zeros((120, 150, 3), np.uint8))
    assert detector.cascade.shapes == [(120, 150), (240, 300)]
    assert np.allclose([face.box for face in faces], [[5, 5, 25, 25]])   # mapped back to the image's pixels
    detector.cascade = CascadeThatNeedsSize()
    assert detector.faces(np.zeros((400, 500, 3), np.uint8)) and detector.cascade.shapes == [(400, 500)]
    detector.cascade = CascadeThatNeedsSize()
    assert detector.faces(np.zeros((100, 400, 3), np.uint8)) == [] and len(detector.cascade.shapes) == 1  # 800 > 640


def test_load_model_errors(tmp_path):
    with pytest.raises(KerakpError, match="absent.keras: model file not found"):
        open_model(tmp_path / "absent.keras")
    (tmp_path / "junk.keras").write_bytes(b"zip? no")
    with pytest.raises(KerakpError, match="junk.keras: not a loadable Keras model"):
        open_model(tmp_path / "junk.keras")
    with pytest.raises(KerakpError, match="unknown box source 'eyes'"):
        Predictor(LandmarkModel("simplecnn", "ibug68", 32, head_units=4), box="eyes")


def test_a_plain_model_reads_a_far_rolled_head_turned_back_to_its_training_tilts(tiny_model):
    """A model not trained upright reads crops turned only by the roll beyond `max_roll`; an upright one
    turns level."""
    eyes = np.zeros((68, 2))
    eyes[36], eyes[45] = [0, 0], [np.cos(np.deg2rad(40)), np.sin(np.deg2rad(40))]   # a head rolled 40 degrees
    plain = Predictor(tiny_model, box="full", max_roll=15)
    upright = Predictor(LandmarkModel.from_config({**tiny_model.get_config(), "upright": True}), box="full")
    assert np.isclose(plain.view(eyes)[1], -25) and np.isclose(upright.view(eyes)[1], -40)
    eyes[45] = [1, np.tan(np.deg2rad(10))]                                            # rolled 10 degrees
    assert plain.view(eyes)[1] == 0 and np.isclose(upright.view(eyes)[1], -10)


def test_the_fast_setting_reads_the_detector_box_once_turned_level_by_the_eyes_it_saw(tiny_model):
    """`passes=0`: no refining passes; the flip test (one batch: crop and mirror) reads the calibrated detector
    box, turned so the detector's eyes lie level (an upright model) or back to `max_roll` (a plain one)."""
    class Eyed(FakeDetector):
        def faces(self, image):
            eyes = np.array([[40.0, 40], [40 + np.cos(np.deg2rad(30)), 40 + np.sin(np.deg2rad(30))]])   # rolled 30
            return [DetectedFace(box, 0.9, eyes) for box in self.boxes]

    class Recording(RecordingPredictor):
        def crop(self, image, box, angle=0.0):
            self.views = getattr(self, "views", []) + [(box, angle)]
            return super().crop(image, box, angle)

    image = np.zeros((120, 120, 3), np.uint8)
    upright = LandmarkModel.from_config({**tiny_model.get_config(), "upright": True})
    for model, turn in ((upright, -30.0), (tiny_model, -15.0)):
        fast = Recording(model, detector=Eyed([20, 20, 80, 80]), passes=0, turn=0)
        result = fast.predict(image)
        assert len(fast.seen) == 1 and len(fast.seen[0]) == 2          # one batch: the crop and its mirror
        (box, angle), = fast.views
        calibrated = fast.calibration.apply(np.array([20.0, 20, 80, 80]))
        assert np.allclose(box, calibrated) and np.isclose(angle, turn)
        assert np.allclose(result.points, (calibrated[:2] + calibrated[2:]) / 2)   # the model says 'centre'


def test_a_dark_crop_is_brightened_and_a_normal_one_left_alone(tiny_model):
    predictor = Predictor(tiny_model, box="full")
    box = np.array([10.0, 10, 50, 50])
    rng = np.random.default_rng(0)
    normal = rng.integers(60, 200, (60, 60, 3)).astype(np.uint8)
    crop, _ = predictor.crop(normal, box)
    assert crop.dtype == np.uint8 and np.array_equal(crop, predictor.crop(normal, box)[0])
    dark, _ = predictor.crop((normal // 5).astype(np.uint8), box)
    assert 2 * predictor.dark * 0.9 < dark.mean() < 2 * predictor.dark * 1.1     # brought up to twice the threshold
    assert dark.std() < 2 * (normal // 5).std()       # smoothed before the 4-fold gain (4 times the spread without)
