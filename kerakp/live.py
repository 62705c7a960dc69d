"""The live window: `Landmarker.track` (`kerakp.tracking`) on a camera or video, drawn (keys q quit, r record,
s snapshot), recorded, with per-frame landmarks and statistics."""
from __future__ import annotations

import ctypes
import os
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from kerakp.errors import KerakpError
from kerakp.io import write_csv, write_json


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


def display_problem() -> str | None:
    """Why no X display can show a window (None where one answers at $DISPLAY), asked through libX11 as Qt's
    xcb plugin asks."""
    if not os.environ.get("DISPLAY"):
        return "DISPLAY is not set"
    try:
        x11 = ctypes.CDLL("libX11.so.6")
    except OSError:
        return "no libX11.so.6"
    x11.XOpenDisplay.restype, x11.XCloseDisplay.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        return f"display {os.environ['DISPLAY']} does not answer"
    x11.XCloseDisplay(display)
    return None


def open_window(title: str) -> None:
    """The live window, or one line saying why there can be none: an OpenCV built without windows (the
    headless wheel), or no display to show one on (checked first for OpenCV's Qt build, the opencv-python
    wheel on Linux, which aborts the process rather than raise there)."""
    gui = re.search(r"GUI:\s*(\w+)", cv2.getBuildInformation())
    gui = gui.group(1) if gui else ""
    if gui == "NONE":
        raise KerakpError("this OpenCV has no window support (opencv-python-headless): pip uninstall -y "
                          "opencv-python-headless && pip install --force-reinstall \"opencv-python<5\", or run with --headless")
    problem = display_problem() if gui.startswith("QT") and sys.platform.startswith("linux") else None
    if problem:
        raise KerakpError(f"no display to show the window on ({problem}): run with --headless")
    try:
        cv2.namedWindow(title)
    except cv2.error as err:
        raise KerakpError(f"OpenCV cannot open a window ({str(err).strip().splitlines()[-1][:160]}): run with --headless") from None


def run_live(landmarker, source: str = "0", record: Path | None = None, headless: bool = False,
             stats_path: Path | None = None, redetect_every: int = 30, emotion_rule=None,
             max_frames: int | None = None, max_faces: int | None = None, min_cutoff: float | None = None,
             beta: float | None = None, landmarks_path: Path | None = None, snapshots: Path = Path("."),
             mirror: bool = False, overwrite: bool = False, threads: int | None = None) -> dict:
    """Run `landmarker.track` (a `Landmarker`) with expressions until the video ends, `q` is pressed or
    `max_frames`; returns the stats, written (with the per-frame landmarks) also when the loop stops on an error
    or an interrupt. Existing output files are replaced only with `overwrite`; `threads` also caps OpenCV's."""
    from kerakp.drawing import draw
    from kerakp.io import refuse_existing
    from kerakp.tracking import LiveStats

    for path in (record, stats_path, landmarks_path):
        if path is not None:
            refuse_existing(path, overwrite)
    if threads:
        cv2.setNumThreads(threads)
    stats = LiveStats()
    schema = landmarker.info.schema
    smoothing = {k: v for k, v in (("min_cutoff", min_cutoff), ("beta", beta)) if v is not None}
    recorder, rows, window_open, taken = None, [], False, 0
    window = "kerakp live (q quit, r record, s snapshot)"
    try:
        began = time.perf_counter()
        for index, (frame, faces) in enumerate(landmarker.track(
                source, max_faces, redetect_every, mirror, expressions=True, rule=emotion_rule, stats=stats,
                max_frames=max_frames, **smoothing)):
            if recorder is None:
                recorder = Recorder(record, stats.source_fps or 30.0)
                if not headless:
                    open_window(window)
                    window_open = True
            if landmarks_path is not None:
                rows += [[index, face.id, *np.round(face.points, 2).ravel()] for face in faces]
            started = time.perf_counter()
            stats.wall_s = time.perf_counter() - began
            if recorder.on or not headless:
                frame_bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                draw(frame_bgr, faces, stats.frames / stats.wall_s, schema)
                recorder.write(frame_bgr)
            if not headless:
                cv2.imshow(window, frame_bgr)
                key = cv2.waitKey(1) & 0xFF
                if key == ord("q"):
                    break
                if key == ord("r") and record is not None:
                    recorder.on = not recorder.on
                if key == ord("s"):
                    taken += 1
                    cv2.imwrite(str(Path(snapshots) / f"snapshot_{taken:03d}.png"), frame_bgr)
            stats.timed("draw", started)
        if stats.frames == 0:
            raise KerakpError(f"{source}: no frames could be read")
    finally:
        if recorder is not None:
            recorder.close()
        if window_open:
            cv2.destroyAllWindows()
        summary = stats.summary()
        if stats_path is not None:
            write_json(stats_path, summary)
        if landmarks_path is not None:
            import pandas as pd

            columns = ["frame", "face"] + [f"{a}{k}" for k in range(schema.num_points) for a in "xy"]
            write_csv(pd.DataFrame(rows, columns=columns), landmarks_path)
    return summary
