"""Faces tracked from frame to frame: the one frame loop (`track`), what `Landmarker.track` and the live window
(`kerakp.live`) both run.

`FaceTracker` keeps a `Track` per face, with a stable id. A tracked face costs one model read per frame
(`Predictor.track`: the crop around its last landmarks, no mirrored read), two with `mirror` (the crop and its
mirror, as the whole path reads: as accurate as reading each frame alone, BENCHMARKS.md "Live loop"). The detector
runs when there is no track and every `redetect_every` frames: its faces are matched to the tracks by box overlap
or centre (`same_place`; a confirmed track costs no read unless the detector's box is another size, `same_size`: a read
that shrank off a turned face is then read afresh from the detector's box); a track the frame's detection misses (a face turned
towards profile scores low in a whole frame) is looked for in a window around it (`FaceTracker._seen_near`), else
confirmed by a consistent flip test of its crop (two reads); one neither confirms twice running is dropped. A new
face costs three reads, one pass from its detector box and the flip test around the landmarks it gives (the whole
path's second pass is left to its next frame's tracked read), and is kept if the model reads it consistently (its
flip disagreement measured so that a turned face is held to a frontal one's standard, `FaceTracker._consistent`). A track
whose landmarks collapse, leave the frame or jump in size is dropped at once. `LiveStats` counts the reads of
each kind and times each stage. Landmarks are smoothed by One Euro filters (`OneEuroFilter`) in the face's own
frame (`FaceSmoother`); with an expression rule, tags are majority-voted per face and blinks counted.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kerakp.analysis import BlinkDetector, openness
from kerakp.data.geometry import box_iou, box_side, points_box, sureness
from kerakp.emotion import EmotionRule, TagSmoother, features, mouth_points
from kerakp.errors import KerakpError
from kerakp.inference import REJECT, Candidate, Predictor, consistent
from kerakp.quiet import native_stderr_silenced

STAGES = ("capture", "detect", "infer", "smooth", "tag", "draw")
DEFAULT_MIN_CUTOFF, DEFAULT_BETA = 0.3, 100.0  # chosen on the synthetic videos (BENCHMARKS.md, "Live loop")
NEW_FACE_PASSES = 1   # a new face's refining passes before its flip test (the module docstring)
NEAR_WINDOW, NEAR_AGREE = 3.0, 0.4   # the look around a track: window / landmark box side, second look's bar
SAME_PLACE_IOU = 0.3   # boxes overlapping by more than this are one face (`same_place`)
MIN_SIDE, SIZE_JUMP = 12, (0.6, 1.6)   # a track is lost under this box side (px) or outside this size ratio to its last read
MIN_WINDOW = 8   # the smallest window (px) `_seen_near` looks in
HELD_SIDE = (0.9, 1.25)   # a turned face's next crop keeps its side within this of `Track.side`


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012): an exponential low-pass whose cutoff rises
    with the signal's speed, `min_cutoff + beta * |speed|` (Hz), so a still signal is smoothed hard and a
    moving one followed with little lag. Works elementwise on arrays; `t` in seconds."""

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value = self.speed = self.t = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.value is None or t <= self.t:
            self.value, self.speed, self.t = x.copy(), np.zeros_like(x), t
            return self.value.copy()
        dt, self.t = t - self.t, t
        self.speed = self.speed + self._alpha(self.d_cutoff, dt) * ((x - self.value) / dt - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        self.value = self.value + self._alpha(cutoff, dt) * (x - self.value)
        return self.value.copy()


class FaceSmoother:
    """Landmarks smoothed in the face's own frame: the pose (centre and scale in units of the first frame's
    eye distance, log scale, roll) and the shape (points in the pose's frame, in eye distances) each through a
    One Euro filter, so a head that moves moves the pose, which the filter follows, and the shape stays
    steady. Markups without a normalising pair are filtered as they are."""

    def __init__(self, norm, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA):
        self.norm, self.unit = norm, None
        self.pose, self.shape = OneEuroFilter(min_cutoff, beta), OneEuroFilter(min_cutoff, beta)

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        if self.norm is None or np.isnan(points[list(self.norm)]).any():
            return self.shape(points, t)
        left, right = points[self.norm[0]], points[self.norm[1]]
        side = float(np.linalg.norm(right - left))
        if side < 1e-6:
            return points
        self.unit = self.unit or side
        angle = math.atan2(*(right - left)[::-1])
        centre = np.nanmean(points, axis=0)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        shape = (points - centre) @ rotation / side                     # R^T (p - c) / s, row vectors
        cx, cy, log_side, angle = self.pose(np.array([*centre / self.unit, math.log(side), angle]), t)
        shape = self.shape(shape, t)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return np.array([cx, cy]) * self.unit + math.exp(log_side) * shape @ rotation.T


@dataclass
class Track:
    """One tracked face: its id, the last raw landmarks (where the next crop looks), the smoothed ones
    (what is shown), its smoother, tag vote and how many detector checks in a row missed it."""

    id: int
    raw: np.ndarray
    points: np.ndarray
    smoother: FaceSmoother
    tags: TagSmoother = field(default_factory=TagSmoother)
    tag: str = ""
    misses: int = 0
    blinks: BlinkDetector = field(default_factory=BlinkDetector)
    eyes_closed: bool = False
    side: float = 0.0   # its box side when last read frontal or from a detector box (`FaceTracker._view`)


@dataclass
class LiveStats:
    """What one run of the loop did and how long each stage took (milliseconds per frame)."""

    frames: int = 0
    wall_s: float = 0.0
    source_fps: float = 0.0
    detector_calls: int = 0
    track_losses: int = 0
    faces: int = 0
    blinks: int = 0
    emotion_counts: dict = field(default_factory=dict)
    stage_ms: dict = field(default_factory=lambda: {stage: [] for stage in STAGES})
    model_reads: dict = field(default_factory=lambda: {"tracked": 0, "new": 0})   # crops read, by what asked

    def timed(self, stage: str, started: float) -> None:
        self.stage_ms[stage].append(1000 * (time.perf_counter() - started))

    def summary(self) -> dict:
        """Latency per stage where it ran (mean, p50, p95), each stage's milliseconds per frame of the run (they
        add up to the frame's time), and the model reads per frame and per face in a frame."""
        latency = {stage: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
                   for stage, v in self.stage_ms.items() if v}
        per = lambda total, count: total / count if count else 0.0  # noqa: E731
        reads = sum(self.model_reads.values())
        return {"frames": self.frames, "wall_s": round(self.wall_s, 3), "fps": per(self.frames, self.wall_s),
                "latency_ms": latency, "ms_per_frame": {stage: per(float(np.sum(v)), self.frames) for stage, v in self.stage_ms.items()},
                "model_reads": {**self.model_reads, "per_frame": per(reads, self.frames), "per_face": per(reads, self.faces)},
                "detector_calls": self.detector_calls, "track_losses": self.track_losses,
                "faces_per_frame": self.faces / self.frames if self.frames else 0.0, "source_fps": self.source_fps, "blinks": self.blinks,
                "emotion_counts": self.emotion_counts}


def same_size(box: np.ndarray, before: np.ndarray) -> bool:
    """Whether a face's box is within `SIZE_JUMP` of its size in `before`."""
    return SIZE_JUMP[0] < box_side(box) / max(box_side(before), 1) < SIZE_JUMP[1]


def same_place(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes of one face: overlapping by IoU over 0.3, or either's centre inside the other (a turned face's
    landmark box is narrower than the box the detector gives it)."""
    def centre_in(box, other) -> bool:
        centre = (box[:2] + box[2:]) / 2
        return bool(np.all((centre >= other[:2]) & (centre <= other[2:])))

    return box_iou(a, b) > SAME_PLACE_IOU or centre_in(a, b) or centre_in(b, a)


class FaceTracker:
    """Faces frame after frame (see the module docstring); `step` returns the live tracks, oldest first."""

    def __init__(self, predictor: Predictor, redetect_every: int = 30, max_faces: int | None = None,
                 min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, reject: float = REJECT,
                 mirror: bool = False):
        self.predictor, self.redetect_every, self.max_faces = predictor, max(1, redetect_every), max_faces
        self.min_cutoff, self.beta, self.reject, self.mirror = min_cutoff, beta, reject, mirror
        self.tracks: list[Track] = []
        self.next_id, self.since_detect = 0, 0
        self.detector = copy.copy(predictor.detector)   # the same detector, with its own tiling state
        if hasattr(self.detector, "tiles_per_call"):
            self.detector.tiles_per_call = 1   # an empty frame reads one tile: a small face shows up within nine
            self.detector.turned_looks = ()    # and no turned looks (a turning face is tracked from frontal)
        self.near = copy.copy(predictor.detector)   # the look around a track the frame's detection missed
        if hasattr(self.near, "agree"):
            self.near.agree, self.near.turned_looks = NEAR_AGREE, ()

    @staticmethod
    def _lost(view: np.ndarray, points: np.ndarray, shape) -> bool:
        """A track is lost when its landmarks collapse, leave the frame, or jump in size from the landmarks its
        crop was set around (`_view`)."""
        box = points_box(points)
        if box is None:
            return True
        centre = (box[:2] + box[2:]) / 2
        inside = 0 <= centre[0] < shape[1] and 0 <= centre[1] < shape[0]
        return box_side(box) < MIN_SIDE or not inside or not same_size(box, points_box(view))

    def _keep(self, track: Track, points: np.ndarray, anchored: bool = False) -> None:
        """A read becomes the track's landmarks; its size becomes the track's `side` where it is sure: a frontal
        read (`sureness` 1) or one from a detector box (`anchored`)."""
        norm = self.predictor.schema.norm
        track.raw = points
        if anchored or not norm or sureness(points, norm) >= 1.0:
            track.side = box_side(points_box(points))

    def _view(self, track: Track) -> np.ndarray:
        """The landmarks the next crop is set around: the last read, scaled about its centre into `HELD_SIDE` of
        the track's `side`. A turned face's read is a less sure measure of its size, and a read a little small
        would set a smaller crop, be read smaller again, and spiral off the face."""
        box = points_box(track.raw)
        now = box_side(box)
        held = float(np.clip(now, HELD_SIDE[0] * track.side, HELD_SIDE[1] * track.side)) if track.side else now
        if held == now or now <= 0:
            return track.raw
        centre = (box[:2] + box[2:]) / 2
        return centre + (track.raw - centre) * (held / now)

    def _new(self, frame: np.ndarray, candidate: Candidate, t: float, stats: LiveStats) -> Track | None:
        """A track for a newly detected face (`_read`); None where the model reads it inconsistently (a false
        detection)."""
        points = self._read(frame, candidate, stats)
        if points is None:
            return None
        track = Track(self.next_id, points, points, FaceSmoother(self.predictor.schema.norm, self.min_cutoff, self.beta),
                      side=box_side(points_box(points)))
        track.points = track.smoother(points, t)
        self.next_id += 1
        return track

    def _read(self, frame: np.ndarray, candidate: Candidate, stats: LiveStats) -> np.ndarray | None:
        """A detected face's landmarks by one pass and the flip test (the module docstring); None where the model
        reads it inconsistently."""
        before = self.predictor.crops_read
        (read,) = self.predictor.read_candidates([frame], [[candidate]], passes=NEW_FACE_PASSES)[0]
        stats.model_reads["new"] += self.predictor.crops_read - before
        return read.points if self._consistent(read.points, read.flip_nme) else None

    def _consistent(self, points: np.ndarray | None, flip_nme: float) -> bool:
        """Whether the model read a face consistently (`consistent`, at the tracker's `reject`)."""
        return consistent(points, flip_nme, self.predictor.schema.norm, self.reject)

    def _still_seen(self, frame: np.ndarray, track: Track, stats: LiveStats) -> bool:
        """For a track the frame's detection did not confirm: whether the detector finds it in a window around
        it (`_seen_near`), or else the model reads its crop consistently (the flip test, two reads)."""
        if self._seen_near(frame, track):
            return True
        before = self.predictor.crops_read
        means, scores, _ = self.predictor.flip_test([frame], [self.predictor.view(self._view(track))])
        stats.model_reads["tracked"] += self.predictor.crops_read - before
        return self._consistent(means[0], float(scores[0]))

    def _seen_near(self, frame: np.ndarray, track: Track) -> bool:
        """Whether the detector finds a face at the track's place in a window of `NEAR_WINDOW` times its landmark
        box around it (the face at a third to half of the window, where a face turned towards profile, weak in
        the whole frame, is found: BENCHMARKS.md "Faces found by head yaw"), its second look's bar lowered to
        `NEAR_AGREE` since a face is expected there."""
        box = points_box(track.raw)
        centre, half = (box[:2] + box[2:]) / 2, NEAR_WINDOW / 2 * max(box_side(box), MIN_SIDE)
        x0, y0 = np.maximum(np.floor(centre - half), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(centre + half), [frame.shape[1], frame.shape[0]]).astype(int)
        if x1 - x0 < MIN_WINDOW or y1 - y0 < MIN_WINDOW:
            return False
        shift = np.array([x0, y0, x0, y0])
        found = self.predictor.face_boxes(np.ascontiguousarray(frame[y0:y1, x0:x1]), detector=self.near)
        return any(same_place(candidate.box + shift, box) for candidate in found)

    def _detect(self, frame: np.ndarray, t: float, stats: LiveStats) -> None:
        started = time.perf_counter()
        stats.detector_calls += 1
        self.since_detect = 0
        found = self.predictor.face_boxes(frame, detector=self.detector)
        confirmed = set()
        for candidate in found:
            boxes = [points_box(track.raw) for track in self.tracks]
            same = [i for i, box in enumerate(boxes) if same_place(candidate.box, box)]
            if same:
                nearest = max(same, key=lambda i: box_iou(candidate.box, boxes[i]))
                track = self.tracks[nearest]
                confirmed.add(track.id)
                if not same_size(candidate.box, boxes[nearest]):   # a read that shrank or swelled off its face
                    if (fresh := self._read(frame, candidate, stats)) is not None:
                        self._keep(track, fresh, anchored=True)
            elif self.max_faces is None or len(self.tracks) < self.max_faces:
                track = self._new(frame, candidate, t, stats)
                if track is not None:
                    self.tracks.append(track)
                    confirmed.add(track.id)
        for track in list(self.tracks):
            if track.id not in confirmed and self._still_seen(frame, track, stats):
                confirmed.add(track.id)
            track.misses = 0 if track.id in confirmed else track.misses + 1
            if track.misses >= 2:   # neither the detector nor the model has seen it twice running
                self.tracks.remove(track)
                stats.track_losses += 1
        stats.timed("detect", started)

    def step(self, frame: np.ndarray, t: float, stats: LiveStats) -> list[Track]:
        """Read every track once, drop the lost, run the detector when due, smooth; the live tracks."""
        started, before = time.perf_counter(), self.predictor.crops_read
        for track in list(self.tracks):
            view = self._view(track)
            points = self.predictor.track(frame, view, self.mirror)
            if self._lost(view, points, frame.shape):
                self.tracks.remove(track)
                stats.track_losses += 1
                continue
            self._keep(track, points)
        stats.model_reads["tracked"] += self.predictor.crops_read - before
        if self.tracks:
            stats.timed("infer", started)
        fresh = {track.id for track in self.tracks}
        self.since_detect += 1
        if not self.tracks or self.since_detect >= self.redetect_every:
            self._detect(frame, t, stats)
        started = time.perf_counter()
        for track in self.tracks:
            if track.id in fresh:
                track.points = track.smoother(track.raw, t)
        stats.timed("smooth", started)
        return self.tracks


def open_source(source: str) -> cv2.VideoCapture:
    """A camera (an index such as `0`) or a video file, with one clear error when neither opens."""
    is_camera = str(source).isdigit()
    if not is_camera and not Path(source).is_file():
        raise KerakpError(f"{source}: video file not found")
    with native_stderr_silenced():  # OpenCV's own warnings for a missing camera or a damaged file
        capture = cv2.VideoCapture(int(source) if is_camera else str(source))
    if not capture.isOpened():
        raise KerakpError(f"camera {source} not found or busy" if is_camera else f"{source}: not a readable video")
    return capture


def frames(source, stats: LiveStats, max_frames: int | None = None):
    """(frame index, seconds, BGR frame) of a camera or video until it ends or `max_frames`; time is the
    video's own (its frame rate) or, for a camera, the clock."""
    capture = open_source(str(source))
    fps = stats.source_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    video = not str(source).isdigit() and fps > 0
    began = time.perf_counter()
    try:
        index = 0
        while max_frames is None or index < max_frames:
            started = time.perf_counter()
            ok, frame_bgr = capture.read()
            if not ok:
                break
            stats.timed("capture", started)
            yield index, index / fps if video else time.perf_counter() - began, frame_bgr
            index += 1
    finally:
        capture.release()


def tag_faces(tracks: list[Track], schema, rule: EmotionRule | None, stats: LiveStats) -> None:
    """Each track's expression tag, majority-voted over its recent frames (markups with mouth points), and
    whether its eyes are closed (`BlinkDetector`, iBUG 68)."""
    if not tracks:
        return
    started = time.perf_counter()
    if schema.name == "ibug68":
        for track in tracks:
            ratios, before = openness(track.raw, schema), track.blinks.blinks   # unsmoothed: a blink is brief
            track.eyes_closed = track.blinks.update((ratios["left_eye"] + ratios["right_eye"]) / 2)
            stats.blinks += track.blinks.blinks - before
    if rule is None:
        stats.timed("tag", started)
        return
    tags = rule.tag(features(np.stack([track.points for track in tracks]), schema))
    for track, tag in zip(tracks, tags):
        track.tag = track.tags.update(tag)
        if track.tag:
            stats.emotion_counts[track.tag] = stats.emotion_counts.get(track.tag, 0) + 1
    stats.timed("tag", started)


def emotion_rule_for(schema, rule: EmotionRule | None) -> EmotionRule | None:
    """`rule` (default kerakp's fitted rule) for a markup with mouth points; None for one without."""
    try:
        mouth_points(schema)
    except KerakpError:   # a markup without mouth points is tracked but not tagged
        return None
    return rule or EmotionRule()


def track(predictor: Predictor, source="0", redetect_every: int = 30, max_faces: int | None = None,
          min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, max_frames: int | None = None,
          stats: LiveStats | None = None, mirror: bool = False, expressions: bool = False, rule: EmotionRule | None = None):
    """(RGB frame, its `Track`s, oldest first) for each frame of a camera index or video file; with
    `expressions`, each track's tag (by `rule`, default kerakp's fitted one) and blinks (`tag_faces`)."""
    stats = stats if stats is not None else LiveStats()
    tracker = FaceTracker(predictor, redetect_every, max_faces, min_cutoff, beta, mirror=mirror)
    rule = emotion_rule_for(predictor.schema, rule) if expressions else None
    for _, t, frame_bgr in frames(source, stats, max_frames):
        frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        tracks = tracker.step(frame, t, stats)
        if expressions:
            tag_faces(tracks, predictor.schema, rule, stats)
        stats.frames += 1
        stats.faces += len(tracks)
        yield frame, tracks
