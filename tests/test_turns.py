"""Faces turned towards profile: the detector's second look and turned looks (and no face where there is none),
and a head that turns from frontal to profile and back keeps its track and its landmarks."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from kerakp.data.synthetic import synthetic_face, turning_video_frames, write_video
from kerakp.detect import BLAZEFACE_FULL, BlazeFaceDetector, get_detector

MIRRORED = 255   # the scripted image is black on its left, white on its right: a mirrored copy starts white


class Looks(BlazeFaceDetector):
    """BlazeFace whose whole-image looks answer one centred face with a scripted score per look (`whole`, its
    `mirror`, the `full`-range model's) and whose tiles see nothing; counts the looks taken."""

    def __init__(self, scores, **options):
        super().__init__(**options)
        self.scores, self.looks = scores, []

    def _candidates(self, window, image, min_score=None):
        height, width = image.shape[:2]
        look = "full" if self.model.size == 192 else "mirror" if image[0, 0, 0] == MIRRORED else "whole"
        score = self.scores.get(look, 0.0)
        if window != (0, 0, width, height) or score < (self.min_score if min_score is None else min_score):
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2))
        self.looks.append(look)
        box = np.array([[width / 4, height / 4, 3 * width / 4, 3 * height / 4]])
        eyes = [[0.4 * width, 0.4 * height], [0.6 * width, 0.4 * height]]
        return box, np.array([score]), np.array([eyes + [[width / 2, height / 2]] * 4])


def scripted(whole, mirror, full):
    detector = Looks({"whole": whole, "mirror": mirror})
    detector._other = Looks({"full": full}, min_score=detector.floor, tiles=False, model=BLAZEFACE_FULL, second_look=False)
    image = np.zeros((120, 120, 3), np.uint8)
    image[:, 60:] = MIRRORED
    return detector, image


def test_the_second_look_keeps_a_weak_face_the_three_looks_agree_on():
    detector, image = scripted(0.6, 0.5, 0.45)   # below min_score in the whole image: the first look finds nothing
    (face,) = detector.faces(image)
    assert np.isclose(face.score, (0.6 + 0.5 + 0.45) / 3)
    assert np.allclose(face.box, [29.5, 30, 89.5, 90]) and np.allclose(face.eyes, [[47.5, 48], [71.5, 48]])   # both looks' mean
    assert detector.looks == ["whole", "mirror"] and detector._other.looks == ["full"]
    detector, image = scripted(0.6, 0.5, 0.0)    # the full-range model sees nothing there: the mean is 0.37
    assert detector.faces(image) == []
    detector, image = scripted(0.9, 0.9, 0.9)    # found at once: no second look
    assert len(detector.faces(image)) == 1 and detector.looks == ["whole"] and detector._other.looks == []
    detector = Looks({"whole": 0.6, "mirror": 0.6}, second_look=False)
    assert detector.faces(image) == [] and detector._other is None


def test_the_turned_look_gives_the_face_it_finds_in_the_image_s_own_frame(monkeypatch):
    """Where every upright look finds nothing, the image turned by each of `turned_looks` is looked at in turn;
    a face found turned comes back where it lies in the image (box centre and eyes), its box the same size. The
    live loop's detectors take no turned looks (12 model runs on every empty frame)."""
    from kerakp.inference import Predictor
    from kerakp.tracking import FaceTracker

    image = np.full((320, 320, 3), 100, np.uint8)
    image[80:240, 80:240] = synthetic_face(np.random.default_rng(5), size=160, roll_range=0)["image"]
    detector = BlazeFaceDetector()
    (upright,) = detector.faces(image)
    turn = cv2.getRotationMatrix2D((159.5, 159.5), 15, 1.0)   # the picture taken with the camera turned 15 degrees
    rolled = cv2.warpAffine(image, turn, (320, 320))
    looks, look = [], BlazeFaceDetector._look

    def upright_misses(self, picture, tiles):
        looks.append(tiles)
        return [] if tiles else look(self, picture, tiles)

    monkeypatch.setattr(BlazeFaceDetector, "_look", upright_misses)
    (found,) = detector.faces(rolled)
    assert looks == [True, False]                             # upright: nothing; turned by -15 degrees: the face
    # within a tenth of the box (the turned canvas is larger, so BlazeFace sees the face smaller); turned wrong,
    # the points would be tens of pixels off
    into_rolled, near = lambda points: points @ turn[:, :2].T + turn[:, 2], 0.1 * (upright.box[2] - upright.box[0])
    assert np.allclose(found.eyes, sorted(into_rolled(upright.eyes), key=lambda p: p[0]), atol=near)
    assert np.allclose((found.box[:2] + found.box[2:]) / 2, into_rolled((upright.box[:2] + upright.box[2:]) / 2), atol=near)
    assert np.allclose(found.box[2:] - found.box[:2], upright.box[2:] - upright.box[:2], atol=near)
    tracker = FaceTracker(Predictor("kerakp/presets/300w_fast.tflite"))
    assert detector.turned_looks and tracker.detector.turned_looks == () == tracker.near.turned_looks


def test_a_face_only_a_turned_look_finds_is_kept_only_where_the_model_reads_it_consistently():
    """A smooth background now and then fools a turned look (BENCHMARKS.md "Faces found by head yaw"); the
    reader keeps such a face only where its flip test is `consistent`, as the live loop holds a new face."""
    from kerakp import Landmarker

    rng = np.random.default_rng(12)
    small = rng.uniform(40, 220, (6, 8, 3)).astype(np.float32)
    frame = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 6, (480, 640, 3))
    image = cv2.resize(np.clip(frame, 0, 255).astype(np.uint8), (240, 240))
    (face,) = BlazeFaceDetector().faces(image)
    assert face.turned and BlazeFaceDetector(turned_looks=()).faces(image) == []
    assert Landmarker("300w-fast").predict(image) == []


AFLW = Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw21" / "images"


@pytest.mark.skipif(not AFLW.is_dir(), reason="no ../shared/data/aflw21")
def test_a_profile_blazeface_misses_upright_is_found_turned():
    """An AFLW face at yaw -63 (held out), padded to 240 px: no upright look finds it, the image turned does."""
    face = cv2.cvtColor(cv2.imread(str(AFLW / "image50688.jpg")), cv2.COLOR_BGR2RGB)
    image = np.zeros((240, 240, 3), np.uint8)
    image[60:180, 60:180] = face
    assert BlazeFaceDetector(turned_looks=()).faces(image) == []
    (found,) = BlazeFaceDetector().faces(image)
    centre = (found.box[:2] + found.box[2:]) / 2
    assert found.turned and np.all(np.abs(centre - 119.5) < 30)
    from kerakp import Landmarker

    assert len(Landmarker("300w-fast").predict(image)) == 1          # read consistently: kept


def test_face_free_images_give_no_face():
    detector = get_detector("blazeface")
    for seed in range(6):
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        smooth = cv2.resize(rng.uniform(40, 220, (6, 8, 3)).astype(np.float32), (640, 480), interpolation=cv2.INTER_CUBIC)
        smooth = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        assert detector.faces(noise) == [] and detector.faces(smooth) == [], seed


def test_a_tracked_face_turned_towards_profile_is_held_to_the_frontal_standard():
    from kerakp.inference import Predictor
    from kerakp.tracking import FaceTracker

    frames = list(turning_video_frames(31, 320, 240))
    tracker = FaceTracker(Predictor("kerakp/presets/300w_mobilenetv2_heatmap.tflite"))
    frontal, profile = frames[0][1], frames[15][1]            # yaw 0 and 80: the outer eye corners close up
    assert tracker._consistent(frontal, 0.1) and not tracker._consistent(frontal, 0.2)
    assert tracker._consistent(profile, 0.2)                  # 0.2 eye distances are under 0.1 box sides there
    assert not tracker._consistent(profile, 0.6)


def test_a_head_turning_to_profile_and_back_keeps_its_id_and_its_landmarks(tmp_path):
    """A drawn head turning 0 -> 80 -> 0 degrees of yaw over 90 frames (re-detections at 47 and 76 degrees):
    one face in every frame with one id, its landmarks on the face all along."""
    from kerakp import Landmarker
    from kerakp.data.geometry import points_box

    frames = list(turning_video_frames(90, 320, 240))
    video = write_video(tmp_path / "turn.avi", ((image, points) for image, points, _ in frames))
    seen = [faces for _, faces in Landmarker("300w").track(video)]
    assert len(seen) == 90 and all(len(faces) == 1 and faces[0].id == 0 for faces in seen)
    for faces, (_, truth, yaw) in zip(seen, frames):
        box = points_box(truth)
        centre = faces[0].points.mean(axis=0)
        assert np.all((centre > box[:2]) & (centre < box[2:])), yaw
    first = np.mean([np.linalg.norm(faces[0].points - truth, axis=1).mean() for faces, (_, truth, _) in zip(seen[:5], frames)])
    assert first < 0.08 * (box[3] - box[1])                  # frontal: close to the truth


@pytest.mark.slow
def test_frequent_redetection_through_the_turn_keeps_the_id(tmp_path):
    """Another head and re-detections every 10 frames, six of them past 60 degrees."""
    from kerakp import Landmarker

    frames = list(turning_video_frames(60, 320, 240, seed=3))
    video = write_video(tmp_path / "turn.avi", ((image, points) for image, points, _ in frames))
    seen = [faces for _, faces in Landmarker("300w").track(video, redetect_every=10)]
    assert all(len(faces) == 1 and faces[0].id == 0 for faces in seen)


def test_a_read_collapsed_to_one_point_is_not_a_consistent_face():
    from types import SimpleNamespace

    from kerakp.schemas import get_schema
    from kerakp.tracking import FaceTracker

    tracker = SimpleNamespace(predictor=SimpleNamespace(schema=get_schema("ibug68")), reject=0.1)
    assert not FaceTracker._consistent(tracker, np.zeros((68, 2)), 0.0)   # was a ZeroDivisionError in the live loop


def test_the_next_crop_turns_less_as_the_eye_line_shortens():
    """`view_turn`: a read's eye line sets the next crop's turn in full on a frontal face, by its `sureness` squared
    near profile, where a point's error over a short eye line is tens of degrees (the tracked read then spiralled
    off a turning head)."""
    from kerakp.data.geometry import FRONTAL_NORM, level_turn, sureness, view_turn

    frames = list(turning_video_frames(31, 320, 240))
    frontal, profile = frames[0][1], frames[15][1]             # yaw 0 and 80
    assert sureness(frontal, (36, 45)) == 1.0 and view_turn(frontal, (36, 45)) == level_turn(frontal, (36, 45))
    tilted = profile.copy()
    tilted[45, 1] += 0.1 * np.ptp(profile[:, 1])               # the far eye corner read 10 % of the face low
    sure = sureness(tilted, (36, 45))
    assert 0.3 < sure < 0.6 and abs(level_turn(tilted, (36, 45))) > 20
    assert np.isclose(view_turn(tilted, (36, 45)), level_turn(tilted, (36, 45)) * sure ** 2)
    assert abs(view_turn(tilted, (36, 45))) < abs(level_turn(tilted, (36, 45))) / 3
    missing = frontal.copy()
    missing[36] = np.nan
    assert np.isnan(sureness(missing, (36, 45))) and view_turn(missing, (36, 45)) == 0.0
    assert 0 < FRONTAL_NORM < 1


def test_a_track_read_off_its_face_is_read_afresh_where_the_detector_finds_it():
    """A tracked read that shrank off its face (a third of its size) is re-read from the detector's box at the
    next detection, keeping its id."""
    from kerakp.data.geometry import box_side, points_box
    from kerakp.inference import Predictor
    from kerakp.tracking import FaceTracker, LiveStats

    frames = list(turning_video_frames(3, 320, 240, max_yaw=0.0))
    tracker, stats = FaceTracker(Predictor("kerakp/presets/300w_fast.tflite"), redetect_every=1), LiveStats()
    (track,) = tracker.step(frames[0][0], 0.0, stats)
    truth = box_side(points_box(frames[1][1]))
    centre = track.raw.mean(axis=0)
    track.raw, track.side = centre + (track.raw - centre) / 3, 0.0   # no size held for it (`_view`)
    (again,) = tracker.step(frames[1][0], 1 / 30, stats)
    assert again.id == track.id and abs(box_side(points_box(again.raw)) / truth - 1) < 0.2
    assert stats.model_reads["new"] == 6                     # the first face's three reads and the re-read's three


def test_a_turned_face_keeps_the_size_it_was_last_read_frontal_at():
    """The next crop of a turned face is set within `HELD_SIDE` of its size when last read frontal: a read near
    profile a little small would otherwise shrink the crop frame after frame (a student's read did, off the face);
    a frontal read sets the size again."""
    from kerakp.data.geometry import box_side, points_box
    from kerakp.inference import Predictor
    from kerakp.tracking import HELD_SIDE, FaceTracker

    frames = list(turning_video_frames(31, 320, 240))
    frontal, profile = frames[0][1], frames[15][1]
    tracker = FaceTracker(Predictor("kerakp/presets/300w_fast.tflite"))
    track = type("T", (), {"raw": frontal, "side": 0.0})()
    tracker._keep(track, frontal)
    assert track.side == box_side(points_box(frontal))
    centre = profile.mean(axis=0)
    small = centre + (profile - centre) * 0.5                  # a turned read at half the size
    tracker._keep(track, small)
    assert track.side == box_side(points_box(frontal))             # not sure of it: the size stays
    view = tracker._view(track)
    assert np.isclose(box_side(points_box(view)), HELD_SIDE[0] * track.side)
    assert np.allclose(points_box(view).reshape(2, 2).mean(axis=0), points_box(small).reshape(2, 2).mean(axis=0))
    tracker._keep(track, small, anchored=True)                 # read from a detector box: the size follows
    assert track.side == box_side(points_box(small)) and tracker._view(track) is track.raw
