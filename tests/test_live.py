"""The live loop, headless, on synthetic videos: frames, tracking, recording, stats, and its error paths."""
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.synthetic import write_synthetic_video
from kerakp.models.landmark_model import LandmarkModel

SHIPPED = "ytf68-fast"   # a packaged preset, read by name
PRESET = Path(__file__).resolve().parents[1] / "kerakp" / "presets" / "ytf68_mobilenetv2_heatmap.tflite"
ARTIFACTS = Path(__file__).resolve().parents[1] / "runs" / "test_artifacts"   # images kept for a person to look at
WINDOWLESS = re.search(r"GUI:\s*NONE", cv2.getBuildInformation()) is not None   # opencv-python-headless in its place


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "face.avi", frames=40, width=320, height=240, seed=1)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "untrained.keras"
    LandmarkModel("simplecnn", "ibug68", 32, head_units=4).save(path)
    return path


def live(*args):
    return CliRunner().invoke(main, ["live", *map(str, args)], catch_exceptions=False)


def test_synthetic_video_has_its_landmarks(video):
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = capture.read()
    assert frames == 40 and ok and frame.shape == (240, 320, 3)
    truth = np.loadtxt(f"{video}.csv", delimiter=",", skiprows=1)
    assert truth.shape == (40, 1 + 136)
    assert (truth[:, 1::2].min() > 0) and (truth[:, 1::2].max() < 320) and (truth[:, 2::2].max() < 240)


def test_headless_run_records_and_writes_stats(untrained, video, tmp_path):
    stats, record = tmp_path / "stats.json", tmp_path / "out.avi"
    result = live("--tflite", untrained, "--source", video, "--headless", "--stats", stats, "--record", record)
    assert result.exit_code == 0, result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 40 and summary["fps"] > 0
    for key in ("wall_s", "detector_calls", "track_losses", "emotion_counts", "latency_ms"):
        assert key in summary
    assert {"capture", "detect"} <= set(summary["latency_ms"]) and set(summary["latency_ms"]["capture"]) == {"mean", "p50", "p95"}
    written = cv2.VideoCapture(str(record))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 40 and written.read()[0]


def test_a_trained_model_keeps_the_track(video, tmp_path):
    stats = tmp_path / "stats.json"
    result = live("--model", SHIPPED, "--source", video, "--headless", "--stats", stats, "--redetect-every", 100)
    assert result.exit_code == 0, result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 40
    assert summary["detector_calls"] <= 3 and summary["track_losses"] <= 2
    assert sum(summary["emotion_counts"].values()) >= 35
    reads = summary["model_reads"]
    assert reads["per_frame"] == reads["per_face"] == (reads["tracked"] + reads["new"]) / 40 < 1.1
    assert f"model reads {reads['per_frame']:.2f} a frame" in result.output and "ms per frame: capture" in result.output
    assert set(summary["ms_per_frame"]) == {"capture", "detect", "infer", "smooth", "tag", "draw"}


def test_bad_sources_fail_clearly_and_still_write_stats(untrained, tmp_path):
    stats = tmp_path / "stats.json"
    cases = [("7", "camera 7 not found or busy"), (tmp_path / "none.mp4", "none.mp4: video file not found")]
    text = tmp_path / "text.avi"
    text.write_text("not a video")
    cases.append((text, "text.avi"))
    for source, message in cases:
        result = live("--tflite", untrained, "--source", source, "--headless", "--stats", stats)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
        assert json.loads(stats.read_text())["frames"] == 0
        stats.unlink()
    result = live("--tflite", tmp_path / "missing.tflite", "--source", "0", "--headless")
    assert result.exit_code == 2 and "missing.tflite: model file not found" in result.output


def test_without_a_display_or_window_support_the_window_is_one_line(video, monkeypatch, tmp_path):
    """No display (a server), or the headless OpenCV: one line naming the way out, not Qt's abort or a traceback;
    and an OpenCV that cannot load (opencv-python without libGL) is one line from the `kerakp` command."""
    import subprocess
    import sys

    if not (WINDOWLESS or sys.platform.startswith("linux")):
        pytest.skip("a window needs no X display here")
    monkeypatch.delenv("DISPLAY", raising=False)
    result = live("--model", SHIPPED, "--source", video)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].endswith("run with --headless"), result.output
    assert ("no window support" if WINDOWLESS else "DISPLAY is not set") in lines[0]
    (tmp_path / "cv2").mkdir()
    (tmp_path / "cv2" / "__init__.py").write_text("raise ImportError('libGL.so.1: cannot open shared object file')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "kerakp", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not done.stdout and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "libGL.so.1" in done.stderr and "apt-get install libgl1" in done.stderr and "opencv-python-headless" in done.stderr


def test_the_one_euro_filter_keeps_a_still_input_still_and_follows_a_step():
    from kerakp.tracking import OneEuroFilter

    still = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    assert all(np.allclose(still(np.array([3.0, -2.0]), i / 30), [3.0, -2.0]) for i in range(60))
    step = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    outputs = [step(np.array([0.0 if i < 10 else 10.0]), i / 30)[0] for i in range(60)]
    assert outputs[9] == 0.0 and 0 < outputs[10] < 10
    settled = next(i for i, v in enumerate(outputs) if v > 9.9)
    assert settled - 10 <= 15   # followed within half a second at 30 FPS
    assert all(a <= b + 1e-12 for a, b in zip(outputs[10:], outputs[11:]))   # no overshoot


def test_the_face_smoother_steadies_a_noisy_face_and_follows_a_moving_one():
    from kerakp.tracking import FaceSmoother

    rng = np.random.default_rng(0)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    face = np.stack([100 + 30 * np.cos(angles), 80 + 40 * np.sin(angles)], -1)
    face[36], face[45] = [80, 70], [120, 70]
    smoother = FaceSmoother((36, 45))
    noisy = [face + rng.normal(0, 0.2, face.shape) for _ in range(90)]          # a model's noise: 0.005 eye distances
    out = np.stack([smoother(p, i / 30) for i, p in enumerate(noisy)])
    raw_motion = np.abs(np.diff(np.stack(noisy), axis=0)).mean()
    assert np.abs(np.diff(out[30:], axis=0)).mean() < 0.5 * raw_motion          # a still face: half as shaky at least
    mover = FaceSmoother((36, 45))
    moving = [face + [3.0 * i, 0] for i in range(60)]                              # 90 px a second
    out = np.stack([mover(p, i / 30) for i, p in enumerate(moving)])
    assert np.abs(out[-1] - moving[-1]).max() < 3.0                  # lags less than one frame of motion behind


def test_landmarks_per_frame_and_stable_ids_for_two_faces(tmp_path):
    """Two synthetic faces side by side, moving: every frame has two rows, each face keeps its id."""
    from kerakp.data.synthetic import synthetic_video_frames, write_video

    left, right = (synthetic_video_frames(30, 240, 240, seed=s) for s in (1, 2))
    video = write_video(tmp_path / "two.avi", ((np.hstack([a, b]), np.vstack([p, q + [240, 0]]))
                                               for (a, p), (b, q) in zip(left, right)))
    out = tmp_path / "marks.csv"
    result = live("--tflite", PRESET, "--source", video, "--headless", "--landmarks", out, "--stats", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    marks = pd.read_csv(out)
    assert list(marks.columns[:4]) == ["frame", "face", "x0", "y0"] and marks.shape[1] == 2 + 136
    assert sorted(marks["frame"].unique()) == list(range(30)) and (marks.groupby("frame").size() == 2).all()
    side = marks.groupby("face")["x30"].agg(["min", "max"])    # the nose tip stays on one side per id
    assert len(side) == 2 and ((side["max"] < 240) | (side["min"] > 240)).all()
    assert json.loads((tmp_path / "s.json").read_text())["faces_per_frame"] == 2.0
    one = live("--tflite", PRESET, "--source", video, "--headless", "--max-faces", "1", "--landmarks", tmp_path / "one.csv")
    assert one.exit_code == 0 and (pd.read_csv(tmp_path / "one.csv").groupby("frame").size() == 1).all()


def test_landmarker_track_yields_faces_with_ids(video):
    from kerakp import Landmarker

    seen = [(frame.shape, [(face.id, face.points.shape) for face in faces]) for frame, faces in Landmarker(PRESET).track(video)]
    assert len(seen) == 40 and all(shape == (240, 320, 3) for shape, _ in seen)
    assert all(faces == [(0, (68, 2))] for _, faces in seen)


def test_a_tracked_face_costs_one_model_read_a_frame_and_the_stats_count_every_read(video):
    """On a one-face clip: three reads when the face is found (one pass and the flip test), then one a frame (two
    with --mirror); a re-detection that confirms the track reads nothing; the counts are the crops the model read."""
    from kerakp import Landmarker
    from kerakp.tracking import LiveStats

    for mirror, per_frame in ((False, 1), (True, 2)):
        landmarker, crops, stats = Landmarker(SHIPPED), [], LiveStats()
        run_model = landmarker.predictor.run_model
        landmarker.predictor.run_model = lambda batch: crops.append(len(batch)) or run_model(batch)
        faces = [[face.id for face in faces] for _, faces in landmarker.track(video, mirror=mirror, stats=stats)]
        assert faces == [[0]] * 40 and stats.detector_calls == 2   # found in frame 0, confirmed in frame 30
        assert stats.model_reads == {"tracked": 39 * per_frame, "new": 3} and sum(crops) == 39 * per_frame + 3
        assert stats.summary()["model_reads"]["per_face"] == (39 * per_frame + 3) / 40


def test_mirrored_tracked_reads_are_the_flip_test_of_the_tracked_crop(video):
    from kerakp import Landmarker
    from kerakp.inference import Predictor

    class Counting(Predictor):
        def run_model(self, crops):
            self.batches = getattr(self, "batches", []) + [len(crops)]
            return super().run_model(crops)

    predictor = Counting(PRESET)
    frame = cv2.cvtColor(cv2.VideoCapture(str(video)).read()[1], cv2.COLOR_BGR2RGB)
    points = predictor.predict(frame).points
    predictor.batches = []
    mirrored = predictor.track(frame, points, mirror=True)
    assert predictor.batches == [2]                        # the crop and its mirror, one batch
    assert np.allclose(mirrored, predictor.flip_test([frame], [predictor.view(points)])[0][0])
    assert np.abs(mirrored - predictor.track(frame, points)).max() > 0.01   # not the single read
    faces = [faces for _, faces in Landmarker(PRESET).track(video, mirror=True)]
    assert len(faces) == 40 and all(len(f) == 1 and f[0].id == 0 for f in faces)


@pytest.mark.slow
@pytest.mark.skipif(WINDOWLESS, reason="this OpenCV has no window support (opencv-python-headless replaced opencv-python)")
def test_the_window_loop_under_xvfb_answers_its_keys(tmp_path):
    """`kerakp live` in a real window of the OpenCV kerakp installs, on a virtual X screen (Xvfb): s saves a
    snapshot, r pauses and resumes the recording, q quits; the snapshot is kept for a look."""
    import shutil
    import subprocess
    import sys
    import time

    for tool, package in (("Xvfb", "xvfb"), ("xdotool", "xdotool")):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (apt-get install {package}; .ci/run installs it)")
    looped = tmp_path / "long.avi"
    from kerakp.data.synthetic import synthetic_video_frames, write_video

    write_video(looped, synthetic_video_frames(1500, 320, 240, seed=1))
    ready, told = os.pipe()
    screen = subprocess.Popen(["Xvfb", "-displayfd", str(told), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                              pass_fds=[told], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(told)
    try:
        env = {**os.environ, "DISPLAY": ":" + os.read(ready, 16).decode().strip()}   # a free display, once it answers
        loop = subprocess.Popen([sys.executable, "-m", "kerakp", "live", "--model", SHIPPED, "--source", str(looped),
                                 "--record", str(tmp_path / "rec.avi"), "--stats", str(tmp_path / "s.json")],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        find = ["xdotool", "search", "--name", "kerakp live"]
        deadline = time.time() + 120
        while time.time() < deadline and loop.poll() is None and subprocess.run(find, env=env, capture_output=True).returncode:
            time.sleep(0.5)
        window = subprocess.run(find, env=env, capture_output=True, text=True).stdout.split()
        assert window, loop.communicate(timeout=60)[1]
        time.sleep(1)
        for key in ("s", "r", "r", "q"):
            subprocess.run(["xdotool", "windowfocus", "--sync", window[0], "key", key], env=env, check=False)   # no window manager
            time.sleep(0.7)
        out, err = loop.communicate(timeout=60)
    finally:
        os.close(ready)
        screen.terminate()
        screen.wait(timeout=30)
    assert loop.returncode == 0, err
    frames = json.loads((tmp_path / "s.json").read_text())["frames"]
    assert 0 < frames < 1500                                    # q stopped it before the video ended
    recorded = int(cv2.VideoCapture(str(tmp_path / "rec.avi")).get(cv2.CAP_PROP_FRAME_COUNT))
    assert 0 < recorded < frames                               # r paused the recording for a while
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "snapshot_001.png", ARTIFACTS / "live_window_snapshot.png")   # what the window showed
