"""The live loop: camera or video → face box → the Predictor's crop/model/decode → smoothing → drawing.

The detector runs only when there is no track (and every `redetect_every` frames), through the Predictor's
whole path (its `detect` latency holds the candidates' passes); otherwise the box comes from the previous
frame's landmarks, so most frames cost one model call (`infer`: `Predictor.track`, with the model's point
offsets as on detection frames). Landmarks are smoothed with an exponential moving average; the expression
tag (when the markup has mouth points) is majority-voted over recent frames. Stats (FPS, per-stage latency,
detector calls, track losses, tag counts) are written at the end, also when the loop stops on an error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kerakp.data.geometry import points_box
from kerakp.emotion import EmotionRule, TagSmoother, features, mouth_points
from kerakp.errors import KerakpError
from kerakp.io import write_json
from kerakp.inference import Prediction, Predictor
from kerakp.quiet import native_stderr_silenced

STAGES = ("capture", "detect", "infer", "draw")


@dataclass
class LiveStats:
    """What one run of the loop did and how long each stage took (milliseconds per frame)."""

    frames: int = 0
    wall_s: float = 0.0
    detector_calls: int = 0
    track_losses: int = 0
    emotion_counts: dict = field(default_factory=dict)
    stage_ms: dict = field(default_factory=lambda: {stage: [] for stage in STAGES})

    def summary(self) -> dict:
        latency = {stage: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
                   for stage, v in self.stage_ms.items() if v}
        return {"frames": self.frames, "wall_s": round(self.wall_s, 3),
                "fps": self.frames / self.wall_s if self.wall_s > 0 else 0.0, "latency_ms": latency,
                "detector_calls": self.detector_calls, "track_losses": self.track_losses,
                "emotion_counts": self.emotion_counts}


class LandmarkTracker:
    """Landmarks frame after frame: detector when untracked, otherwise a crop around the previous landmarks
    (`Predictor.track`)."""

    def __init__(self, predictor: Predictor, redetect_every: int = 30, momentum: float = 0.5):
        self.predictor, self.redetect_every, self.momentum = predictor, redetect_every, momentum
        self.points: np.ndarray | None = None
        self.since_detect = 0

    def _lost(self, points: np.ndarray, shape) -> bool:
        """A track is lost when its landmarks collapse, leave the frame, or jump in size."""
        box = points_box(points)
        side = max(box[2] - box[0], box[3] - box[1])
        centre = (box[:2] + box[2:]) / 2
        inside = 0 <= centre[0] < shape[1] and 0 <= centre[1] < shape[0]
        previous = points_box(self.points) if self.points is not None else None
        jump = previous is not None and not 0.6 < side / max(previous[2] - previous[0], previous[3] - previous[1], 1) < 1.6
        return side < 12 or not inside or jump

    def step(self, frame: np.ndarray, stats: LiveStats) -> np.ndarray | None:
        """Smoothed landmarks of the frame's face, or None when there is none."""
        start = time.perf_counter()
        if self.points is None or self.since_detect >= self.redetect_every:
            stats.detector_calls += 1
            self.since_detect = 0
            points = self.predictor.predict(frame).points
            stats.stage_ms["detect"].append(1000 * (time.perf_counter() - start))
            if points is None:
                self.points = None
                return None
        else:
            points = self.predictor.track(frame, self.points)
            stats.stage_ms["infer"].append(1000 * (time.perf_counter() - start))
        self.since_detect += 1
        if self._lost(points, frame.shape):
            stats.track_losses += 1
            self.points = None
            return None
        if self.points is not None and self.since_detect > 1:
            points = self.momentum * self.points + (1 - self.momentum) * points
        self.points = points
        return points


def draw(frame_bgr: np.ndarray, points, tag: str, fps: float) -> None:
    """Landmarks, their box, the FPS and the expression tag, drawn in place."""
    if points is not None:
        for x, y in points:
            cv2.circle(frame_bgr, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1, cv2.LINE_AA)
        x0, y0, x1, y1 = points_box(points).astype(int)
        cv2.rectangle(frame_bgr, (x0, y0), (x1, y1), (255, 200, 0), 1)
    cv2.putText(frame_bgr, f"{fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2, cv2.LINE_AA)
    if tag:
        cv2.putText(frame_bgr, tag, (10, 52), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 0, 255), 2, cv2.LINE_AA)


def open_source(source: str) -> cv2.VideoCapture:
    """A camera (an index such as `0`) or a video file, with one clear error when neither opens."""
    is_camera = source.isdigit()
    if not is_camera and not Path(source).is_file():
        raise KerakpError(f"{source}: video file not found")
    with native_stderr_silenced():  # OpenCV's own warnings for a missing camera
        capture = cv2.VideoCapture(int(source) if is_camera else source)
    if not capture.isOpened():
        raise KerakpError(f"camera {source} not found or busy" if is_camera else f"{source}: not a readable video")
    return capture


class Recorder:
    """Writes annotated frames to a video file (opened on the first frame, toggled with `r`)."""

    def __init__(self, path: Path | None, fps: float):
        self.path, self.fps, self.writer, self.on = path, fps, None, path is not None

    def write(self, frame: np.ndarray) -> None:
        if not self.on or self.path is None:
            return
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            open(self.path, "wb").close()   # an unwritable folder fails here, naming the path
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                self.writer = None
                self.path.unlink(missing_ok=True)
                raise KerakpError(f"{self.path}: OpenCV cannot write {self.path.suffix or 'this'} videos (use .avi or .mp4)")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def track(predictor: Predictor, source="0", redetect_every: int = 30, momentum: float = 0.5,
          max_frames: int | None = None, stats: LiveStats | None = None):
    """(RGB frame, [Prediction] of its faces) for each frame of a camera index or video file, tracked
    (`LandmarkTracker`), until the source ends or `max_frames`."""
    stats = stats if stats is not None else LiveStats()
    tracker = LandmarkTracker(predictor, redetect_every, momentum)
    capture = open_source(str(source))
    try:
        while max_frames is None or stats.frames < max_frames:
            start = time.perf_counter()
            ok, frame_bgr = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            stats.stage_ms["capture"].append(1000 * (time.perf_counter() - start))
            points = tracker.step(frame, stats)
            stats.frames += 1
            yield frame, [] if points is None else [Prediction(points, points_box(points), True)]
    finally:
        capture.release()


def run_live(predictor: Predictor, source: str = "0", record: Path | None = None, headless: bool = False,
             stats_path: Path | None = None, redetect_every: int = 30, momentum: float = 0.5,
             emotion_rule: EmotionRule | None = None, emotion_window: int = 15, max_frames: int | None = None) -> dict:
    """Run the loop until the video ends, `q` is pressed or `max_frames`; returns (and writes) the stats."""
    stats = LiveStats()
    tracker = LandmarkTracker(predictor, redetect_every, momentum)
    try:
        mouth_points(predictor.schema)
        rule, smoother = emotion_rule or EmotionRule(), TagSmoother(emotion_window)
    except KerakpError:  # a markup without mouth points is tracked but not tagged
        rule = smoother = None
    capture = recorder = None
    snapshots, fps, window_open = 0, 0.0, False
    window = "kerakp live (q quit, r record, s snapshot)"
    try:
        capture = open_source(source)
        recorder = Recorder(record, capture.get(cv2.CAP_PROP_FPS) or 30.0)
        if not headless:
            try:
                cv2.namedWindow(window)
                window_open = True
            except cv2.error:
                raise KerakpError("this OpenCV has no window support (opencv-python-headless): "
                                  "install opencv-python<5 or run with --headless") from None
        began = time.perf_counter()
        while max_frames is None or stats.frames < max_frames:
            start = time.perf_counter()
            ok, frame_bgr = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            stats.stage_ms["capture"].append(1000 * (time.perf_counter() - start))
            points = tracker.step(frame, stats)
            tag = ""
            if smoother is not None:
                tag = smoother.update(rule.tag(features(points[None], predictor.schema))[0] if points is not None else "")
                if tag:
                    stats.emotion_counts[tag] = stats.emotion_counts.get(tag, 0) + 1
            start = time.perf_counter()
            stats.frames += 1
            stats.wall_s = time.perf_counter() - began
            fps = stats.frames / stats.wall_s
            if recorder.on or not headless:
                draw(frame_bgr, points, tag, fps)
                recorder.write(frame_bgr)
            if not headless:
                cv2.imshow(window, frame_bgr)
                key = cv2.waitKey(1) & 0xFF
                if key == ord("q"):
                    break
                if key == ord("r") and record is not None:
                    recorder.on = not recorder.on
                if key == ord("s"):
                    snapshots += 1
                    cv2.imwrite(f"snapshot_{snapshots:03d}.png", frame_bgr)
            stats.stage_ms["draw"].append(1000 * (time.perf_counter() - start))
        if stats.frames == 0:
            raise KerakpError(f"{source}: no frames could be read")
    finally:
        if capture is not None:
            capture.release()
        if recorder is not None:
            recorder.close()
        if window_open:
            cv2.destroyAllWindows()
        summary = stats.summary()
        if stats_path is not None:
            write_json(stats_path, summary)
    return summary
