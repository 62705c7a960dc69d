"""Every bad input gets one line: for each command and bad input, the exit code, exactly one line on stderr
naming the culprit, no traceback, and nothing new under the output's folder. Also: an interrupt leaves a
consistent run that resumes, an interrupted export writes nothing, and metrics stay valid JSON."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.models.landmark_model import LandmarkModel

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "kerakp" / "presets" / "ytf68_mobilenetv2_heatmap.tflite"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def files_under(folder: Path) -> set:
    return {p for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_csv):
    """A folder of bad and good inputs."""
    w = tmp_path_factory.mktemp("world")
    good = next((synthetic_csv.parent / "images").iterdir())
    (w / "zero.jpg").write_bytes(b"")
    (w / "good.jpg").write_bytes(good.read_bytes())
    (w / "text.keras").write_text("not a model")
    shutil.copyfile(PRESET, w / "lonely.tflite")
    (w / "empty.avi").write_bytes(b"")
    (w / "corrupt.avi").write_bytes(b"RIFF" + os.urandom(2000))
    calibration = {"dx": 0.0, "dy": 0.06, "scale": 0.97, "samples": 1}
    LandmarkModel("simplecnn", "ibug68", 32, head_units=4,
                  box_calibration={"blazeface": calibration, "haar": calibration}).save(w / "tiny.keras")
    (w / "tiny.tflite").write_bytes(b"already here")
    (w / "existing").mkdir()
    (w / "existing" / "notes.txt").write_text("keep me")
    (w / "taken.csv").write_text("keep me")
    data = w / "data"
    (data / "images").mkdir(parents=True)
    frame = pd.read_csv(synthetic_csv).head(6)
    for name in frame.iloc[:, 0]:
        shutil.copyfile(synthetic_csv.parent / "images" / name, data / "images" / name)
    frame.to_csv(data / "landmarks.csv", index=False)
    short = data.parent / "short"
    shutil.copytree(data, short)
    lines = (short / "landmarks.csv").read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]                   # row 3 lacks its last value
    (short / "landmarks.csv").write_text("\n".join(lines) + "\n")
    broken = data.parent / "broken"
    shutil.copytree(data, broken)
    (broken / "images" / frame.iloc[1, 0]).write_bytes(b"")   # a zero-byte image inside a data set
    return w


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder nothing can be written into (a read-only tmpfs; root ignores file modes), or a skip."""
    folder = tmp_path_factory.mktemp("readonly")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only folder here (running as root without mount)")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


CASES = [   # (arguments; {W}: the world folder, {RO}: a read-only folder), text of the one error line
    ("predict {W}/tiny.keras {W}/zero.jpg --out {W}/p.csv", "zero.jpg: not a readable image"),
    ("predict {W}/tiny.keras {W}/absent.jpg --out {W}/p.csv", "absent.jpg: no such image or folder"),
    ("predict {W}/text.keras {W}/good.jpg --out {W}/p.csv", "text.keras: not a loadable Keras model (a .keras file is a zip archive; this one is not)"),
    ("predict {W}/lonely.tflite {W}/good.jpg --out {W}/p.csv", "no lonely.tflite.json beside it"),
    ("predict {W}/tiny.keras {W}/good.jpg --out {W}/taken.csv", "taken.csv: already exists"),
    ("predict {W}/tiny.keras {W}/good.jpg --max-faces 0", "Invalid value for '--max-faces'"),
    ("predict {W}/tiny.keras {W}/good.jpg --detector mtcnn --out {W}/p.csv", "'--detector': 'mtcnn' is not one of 'blazeface', 'haar'"),
    ("predict {W}/tiny.keras {W}/good.jpg --out {RO}/p.csv", "Read-only file system"),
    ("evaluate {W}/tiny.keras --data {W}/broken --out {W}/e", "not a readable image"),
    ("evaluate {W}/tiny.keras --data {W}/short --out {W}/e", "landmarks.csv row 3: 136 values, the header has 137"),
    ("evaluate {W}/tiny.keras --data {W}/data --out {W}/existing", "existing: already exists"),
    ("evaluate {W}/tiny.keras --data {W}/data --out {RO}/e", "Read-only file system"),
    ("train --data {W}/data --epochs 0 --out {W}/t", "config key 'epochs': expected a value from 1"),
    ("train --data {W}/data --epochs -1 --out {W}/t", "config key 'epochs': expected a value from 1"),
    ("train --data {W}/data --batch-size 0 --out {W}/t", "config key 'batch_size': expected a value from 1"),
    ("train --data {W}/data --lr -0.001 --out {W}/t", "config key 'learning_rate': expected a value from 0.0 (excluded)"),
    ("train --data {W}/data --set learning_rate=-0.001 --out {W}/t", "config key 'learning_rate'"),
    ("train --data {W}/data --set val_fraction=1.5 --out {W}/t", "config key 'val_fraction'"),
    ("train --data {W}/data --input-size 8 --out {W}/t", "config key 'input_size'"),
    ("train --data {W}/data --out {RO}/t --epochs 1 --backbone simplecnn --input-size 32", "Read-only file system"),
    ("train --data {W}/zero.jpg --out {W}/t", "unknown data format"),
    ("quickstart --epochs 0 --out {W}/q", "Invalid value for '--epochs'"),
    ("export {W}/tiny.keras", "tiny.tflite: already exists"),
    ("export {W}/tiny.keras --format savedmodel --out {W}/existing", "existing: already exists"),
    ("export {W}/text.keras --out {W}/x.tflite", "text.keras: not a loadable Keras model"),
    ("export {W}/tiny.keras --out {RO}/x.tflite", "Read-only file system"),
    ("convert {W}/data {W}/existing --to pts", "existing: already exists"),
    ("convert {W}/data {RO}/c --to pts", "Read-only file system"),
    ("annotate {W}/tiny.keras {W}/good.jpg --out {W}/existing", "existing: already exists"),
    ("fit-detector {W}/text.keras --data {W}/data", "text.keras: not a loadable Keras model"),
    ("kaggle-submit {W}/tiny.keras --test {W}/taken.csv --lookup {W}/taken.csv --out {W}/k.csv", "needs a kaggle15 model"),
    ("live --tflite {W}/tiny.keras --source 7 --headless", "camera 7 not found or busy"),
    ("live --tflite {W}/tiny.keras --source {W}/empty.avi --headless", "empty.avi: not a readable video"),
    ("live --tflite {W}/tiny.keras --source {W}/corrupt.avi --headless", "corrupt.avi: not a readable video"),
    ("live --tflite {W}/tiny.keras --source {W}/video.avi --headless --record {RO}/v.avi", "Read-only file system"),
    ("live --tflite {W}/tiny.keras --source {W}/video.avi --headless --stats {RO}/s.json", "Read-only file system"),
    ("live --tflite {W}/tiny.keras --source {W}/video.avi --headless --stats {W}/taken.csv", "taken.csv: already exists"),
    ("synth {RO}/s --images 6", "Read-only file system"),
    ("synth-video {RO}/v.avi --frames 2", "Read-only file system"),
    ("synth-video {W}/v.xyz --frames 2", "v.xyz: OpenCV cannot write .xyz videos"),
    ("emotion --landmarks {W}/data/landmarks.csv --out {RO}/e.csv", "Read-only file system"),
    ("emotion {W}/tiny.keras", "give MODEL and at least one image"),
    ("--backend torch info", "the torch backend needs torch, which is not installed: pip install torch"),
    ("predict", "Missing argument 'MODEL'"),
]


@pytest.mark.parametrize("command, message", CASES, ids=[c[0][:70] for c in CASES])
def test_bad_input_gets_one_line_and_leaves_nothing(world, read_only, command, message):
    if "torch" in command and __import__("importlib").util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here")
    if "{W}/video.avi" in command and not (world / "video.avi").exists():
        from kerakp.data.synthetic import write_synthetic_video

        write_synthetic_video(world / "video.avi", frames=3, width=96, height=96)
    before, before_ro = files_under(world), files_under(read_only)
    args = command.replace("{W}", str(world)).replace("{RO}", str(read_only)).split()
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (command, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (command, result.stderr)
    assert ".tmp" not in lines[0] and ".kerakp-" not in lines[0], lines[0]   # the user's path, not a staging one
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert files_under(world) == before and files_under(read_only) == before_ro, command
    assert (world / "existing" / "notes.txt").read_text() == "keep me" and (world / "taken.csv").read_text() == "keep me"


def test_an_internal_error_is_one_line_with_exit_1_and_the_traceback_with_debug(world, monkeypatch):
    import kerakp.api

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(kerakp.api.Landmarker, "predict_to", broken)
    args = ["predict", str(world / "tiny.keras"), str(world / "good.jpg"), "--out", str(world / "p.csv")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        "error: internal error in `kerakp predict`: ZeroDivisionError: a bug (run with --debug or KERAKP_DEBUG=1 for the traceback)"]
    debug = CliRunner().invoke(main, ["--debug", *args])
    assert isinstance(debug.exception, ZeroDivisionError)


def test_metrics_leave_out_unlabelled_images_and_stay_strict_json(world, tmp_path):
    data = tmp_path / "nan"
    shutil.copytree(world / "data", data)
    frame = pd.read_csv(data / "landmarks.csv")
    frame.iloc[2, 1:] = np.nan                               # a row whose every point is missing
    frame.to_csv(data / "landmarks.csv", index=False)
    result = run("evaluate", world / "tiny.keras", "--data", data, "--out", tmp_path / "e", "--box", "full")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "e" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert metrics["images"] == 5 and metrics["unlabelled"] == 1 and "unlabelled" in result.output


def test_a_diverging_run_stops_at_once_in_one_line_and_leaves_nothing(world, tmp_path, monkeypatch):
    import keras

    import kerakp.train

    monkeypatch.setattr(kerakp.train, "MaskedKeypointLoss", lambda *args, **kwargs: (
        lambda truth, predicted: keras.ops.mean(predicted) * float("nan")))   # a loss that is NaN from the first batch
    result = CliRunner().invoke(main, ["train", "--data", str(world / "data"), "--out", str(tmp_path / "run"), "--epochs", "3",
                                       "--backbone", "simplecnn", "--input-size", "32", "--batch-size", "2",
                                       "--set", "calibration_images=0"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and lines == ["error: training diverged: the loss became nan in epoch 1, batch 1; "
                                               "no epoch finished (try a lower --lr)"], result.stderr
    assert not (tmp_path / "run").exists()


def test_a_truncated_checkpoint_cannot_resume_and_says_so(world, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.keras").write_bytes((world / "tiny.keras").read_bytes()[:500])
    (run_dir / "history.csv").write_text("epoch,loss\n0,1.0\n")
    result = CliRunner().invoke(main, ["train", "--data", str(world / "data"), "--out", str(run_dir), "--resume",
                                       "--epochs", "3", "--backbone", "simplecnn", "--input-size", "32"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: {run_dir / 'last.keras'}: not a loadable Keras model, cannot resume "
        + result.stderr.split("cannot resume ", 1)[1].strip()]


def _interrupt(args, when, cwd, timeout=300):
    """Run `kerakp ARGS` in a subprocess, send SIGINT once `when()` is true; returns (exit code, stderr).
    The child gets SIGINT's default action back: a job started in the background (nohup, `&`) ignores it."""
    process = subprocess.Popen([sys.executable, "-m", "kerakp", *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + timeout
    while not when() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


@pytest.mark.slow
def test_an_interrupted_run_is_consistent_and_resumes_where_it_stopped(synthetic_csv, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--data", synthetic_csv, "--out", run_dir, "--epochs", 6, "--backbone", "simplecnn",
            "--input-size", 64, "--batch-size", 4, "--set", "calibration_images=8"]
    history = run_dir / "history.csv"
    code, err = _interrupt(args, lambda: history.exists() and len(history.read_text().splitlines()) >= 2, tmp_path)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    first = pd.read_csv(history)
    assert 1 <= len(first) < 6 and list(first["epoch"]) == list(range(len(first)))
    assert (run_dir / "last.keras").is_file() and (run_dir / "model.keras").is_file()
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]          # nothing half-written
    assert run("train", *args[1:]).exit_code == 2                           # a run is there: not replaced
    resumed = run(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    after = pd.read_csv(history)
    assert list(after["epoch"]) == list(range(6)) and np.allclose(after["loss"][:len(first)], first["loss"])


@pytest.mark.parametrize("library", ["drops", "converts"])
def test_a_ctrl_c_a_library_swallows_still_stops_the_command_and_writes_nothing(world, tmp_path, monkeypatch, library):
    import dataclasses

    import kerakp.export

    spec = kerakp.export.FORMATS["tflite"]

    def swallowing(*args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            if library == "converts":
                raise RuntimeError("conversion cancelled") from None
        spec.write(*args)

    monkeypatch.setitem(kerakp.export.FORMATS, "tflite", dataclasses.replace(spec, write=swallowing))
    shutil.copy(world / "tiny.keras", tmp_path / "m.keras")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.keras")])
    assert result.exit_code == 130 and result.stderr.strip().splitlines()[-1] == "interrupted", result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    from kerakp.io import write_text  # the session that ran it is not left interrupted

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert write_text(tmp_path / "after.txt", "x").read_text() == "x"


@pytest.mark.slow
def test_an_interrupted_export_writes_nothing(tmp_path):
    LandmarkModel("mobilenetv2", "ibug68", 96, head_units=16).save(tmp_path / "m.keras")
    started = time.time()
    code, err = _interrupt(["export", tmp_path / "m.keras"], lambda: time.time() > started + 8, tmp_path)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
