"""The live loop, headless, on synthetic videos: frames, tracking, recording, stats, and its error paths."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.synthetic import write_synthetic_video
from kerakp.models.landmark_model import LandmarkModel

SHIPPED = Path(__file__).resolve().parents[1] / "saved_models" / "ytf68_mobilenetv2.tflite"


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


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no shipped model at {SHIPPED}")
def test_a_trained_model_keeps_the_track(video, tmp_path):
    stats = tmp_path / "stats.json"
    result = live("--tflite", SHIPPED, "--source", video, "--headless", "--stats", stats, "--redetect-every", 100)
    assert result.exit_code == 0, result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 40
    assert summary["detector_calls"] <= 3 and summary["track_losses"] <= 2
    assert sum(summary["emotion_counts"].values()) >= 35


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


def test_a_window_needs_gui_support(untrained, video):
    try:
        cv2.namedWindow("probe")
        cv2.destroyAllWindows()
        pytest.skip("this OpenCV has window support")
    except cv2.error:
        result = live("--tflite", untrained, "--source", video)
        assert result.exit_code == 2 and "--headless" in result.output
