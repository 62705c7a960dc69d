"""The public Python API: `Landmarker` and `Face` with runtime-level fakes and the packaged presets, the CSV
that `kerakp predict` and `predict_many` share, presets with their cards, a quick `import kerakp`, and the
README's Python examples."""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import kerakp
from kerakp import Face, KerakpError, Landmarker, presets
from kerakp.cli import main
from kerakp.data.synthetic import synthetic_face
from kerakp.model_info import CropRule, ModelInfo

REPO = Path(__file__).resolve().parents[1]


class FakeRuntime:
    """A model at the runtime level: its info and `predict_on_batch`, answering one fixed mirror-symmetric
    layout of the 68 points in every crop."""

    def __init__(self):
        self.info = ModelInfo("ibug68", CropRule(48), box_calibration={"blazeface": {"dx": 0, "dy": 0.06, "scale": 0.97}})
        angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
        self.layout = np.stack([0.5 + 0.3 * np.cos(angles), 0.5 + 0.3 * np.sin(angles)], -1)
        self.calls = 0

    def predict_on_batch(self, crops):
        self.calls += 1
        return np.tile(self.layout.reshape(1, -1), (len(crops), 1)).astype(np.float32)


@pytest.fixture
def fake(monkeypatch):
    runtime = FakeRuntime()
    monkeypatch.setattr("kerakp.runtime.open_model", lambda path, threads=None: runtime)
    return runtime


@pytest.fixture(scope="module")
def face_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    image = synthetic_face(np.random.default_rng(4), size=200, roll_range=5)["image"]
    cv2.imwrite(str(folder / "face.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    return folder / "face.png", image


def test_predict_takes_a_path_or_an_array_and_returns_faces(fake, face_image):
    path, image = face_image
    lm = Landmarker("any.tflite", turn=0)
    faces = lm.predict(path)
    assert len(faces) == 1 and isinstance(faces[0], Face) and faces[0].points.shape == (68, 2)
    assert faces[0].detected and 0.65 <= faces[0].score <= 1 and faces[0].flip_nme >= 0
    assert np.allclose(lm.predict(image)[0].points, faces[0].points)
    box = faces[0].box
    assert np.allclose(box, [*faces[0].points.min(0), *faces[0].points.max(0)])
    for bad in (image[..., 0], image.astype(np.float32)):
        with pytest.raises(KerakpError, match="expected an RGB image as a \\(height, width, 3\\) uint8 array"):
            lm.predict(bad)


def test_a_face_draws_itself_and_becomes_a_row(fake, face_image):
    face = Landmarker("any.tflite", turn=0).predict(face_image[1])[0]
    canvas = np.zeros_like(face_image[1])
    assert face.draw(canvas) is canvas and canvas[..., 1].sum() > 0
    row = face.to_dict()
    assert list(row)[:7] == ["x_min", "y_min", "x_max", "y_max", "score", "detected", "flip_nme"]
    assert row["x0"] == face.points[0, 0] and len(row) == 7 + 136


def test_no_face_is_found_where_none_is_detected_unless_the_whole_image_is_asked_for(fake):
    grey = np.full((90, 120, 3), 128, np.uint8)
    assert Landmarker("any.tflite", turn=0).predict(grey) == []
    (face,) = Landmarker("any.tflite", turn=0, fallback=True).predict(grey)
    assert not face.detected and face.score == 0.0


def test_predict_many_batches_skips_unreadable_files_and_writes_the_predict_csv(fake, face_image, tmp_path):
    folder = face_image[0].parent
    (tmp_path / "zero.jpg").write_bytes(b"")
    results = Landmarker("any.tflite", turn=0).predict_many([folder, tmp_path / "zero.jpg"], batch=2)
    assert [image.name for image in results.images] == ["face.png", str(tmp_path / "zero.jpg")]
    assert [image.name for image in results.skipped] == [str(tmp_path / "zero.jpg")] and "not a readable image" in results.skipped[0].error
    table = results.table()
    assert list(table.columns[:4]) == ["image", "face", "found", "detected"] and len(table) == 1
    out = results.to_csv(tmp_path / "a.csv")
    with pytest.raises(KerakpError, match="a.csv: already exists"):
        results.to_csv(out)


def test_the_api_and_the_command_write_the_same_csv(face_image, tmp_path):
    """The real path (the packaged preset, BlazeFace): `kerakp predict` and `predict_many` agree exactly."""
    folder = face_image[0].parent
    for max_faces in (None, 1):
        extra = [] if max_faces is None else ["--max-faces", str(max_faces)]
        out = tmp_path / f"cli_{max_faces}.csv"
        assert CliRunner().invoke(main, ["predict", "ytf68", str(folder), "--out", str(out), *extra]).exit_code == 0
        Landmarker("ytf68").predict_many([folder], max_faces=max_faces).to_csv(tmp_path / f"api_{max_faces}.csv")
        assert (tmp_path / f"api_{max_faces}.csv").read_text() == out.read_text()
    assert list(pd.read_csv(tmp_path / "cli_1.csv").columns[:3]) == ["image", "found", "detected"]


def test_presets_install_with_their_cards_and_the_default_reads_a_face(face_image):
    found = presets()
    assert set(found) >= {"300w", "ytf68"}
    for preset in found.values():
        assert preset.path.is_file() and Path(f"{preset.path}.json").is_file() and "research use" in preset.card.read_text()
        assert preset.summary and preset.path.is_relative_to(Path(kerakp.__file__).parent)
    lm = Landmarker()                          # the fastest within 0.0005 NME of the most accurate (README)
    assert lm.path == found["300w-fast"].path and found["300w-fast"].teacher == "300w" and lm.info.markup == "ibug68"
    (face,) = lm.predict(face_image[0], max_faces=1)
    assert face.detected and np.isfinite(face.points).all()
    with pytest.raises(KerakpError, match="nosuch.tflite: model file not found"):
        Landmarker("nosuch.tflite")


def test_the_default_preset_is_the_fastest_within_0_0005_nme_of_the_most_accurate():
    """The README's rule, on the figures BENCHMARKS.md quotes (300-W validation, ms per crop)."""
    import json

    from kerakp.zoo import DEFAULT_PRESET

    report = json.loads((REPO / "benchmarks" / "students.json").read_text())
    nme = {name: row["nme"] for name, row in report["accuracy"]["300w"]["scenes"]["plain"].items() if name in presets()}
    close = [name for name in nme if nme[name] <= min(nme.values()) + 0.0005]
    assert len(nme) >= 2 and DEFAULT_PRESET == min(close, key=report["crop_ms"].get)


def test_import_kerakp_is_quick_and_loads_no_keras():
    code = "import sys, kerakp; print('keras' in sys.modules, 'tensorflow' in sys.modules, kerakp.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[:2] == ["False", "False"]


def test_nothing_outside_the_cli_imports_from_it():
    for path in [*(REPO / "kerakp").rglob("*.py"), *(REPO / "scripts").glob("*.py")]:
        if "cli" not in path.relative_to(REPO).parts and path.name != "__main__.py":
            assert "kerakp.cli" not in path.read_text(), path


def python_blocks(markdown: str, section: str) -> list[str]:
    part = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", part, re.S)


@pytest.mark.slow
def test_the_readmes_python_examples_run(face_image, tmp_path, monkeypatch):
    blocks = python_blocks((REPO / "README.md").read_text(), "Python")
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("photo.jpg", cv2.cvtColor(face_image[1], cv2.COLOR_RGB2BGR))
    (tmp_path / "photos").mkdir()
    cv2.imwrite("photos/again.jpg", cv2.cvtColor(face_image[1], cv2.COLOR_RGB2BGR))
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_every_data_file_of_the_package_is_package_data():
    """A wheel holds what setup.cfg's package_data names: every file kerakp reads at run time must match it."""
    import configparser
    from fnmatch import fnmatch

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["kerakp"].split(",")]
    package = REPO / "kerakp"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data and all(any(fnmatch(name, pattern) for pattern in patterns) for name in data), data
