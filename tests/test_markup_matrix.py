"""Every markup through every verb (issue 46): for each row of `SCHEMAS`, a tiny model trained one epoch on a
tiny set of that markup, then evaluate, predict (with pose and confidence), export to each format, live on a
short clip, annotate, align and emotion, all through the CLI. Each cell works, or refuses with exit 2 and one
line naming the markup and why (`REFUSALS`). The quick run takes `QUICK` through every verb (but the slower
converters) and every markup through training and TFLite export; the rest is slow."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA

from kerakp.cli import main
from kerakp.data.dataset import LandmarkSet
from kerakp.data.formats import load_dataset, write_dataset
from kerakp.errors import KerakpError
from kerakp.export import FORMATS
from kerakp.schemas import SCHEMAS, convert_points, derive_points

QUICK = "kaggle15"   # a markup other than iBUG 68 that has every part a verb uses (pose, alignment, expressions)
CLIP_FRAMES = 8
TINY = ["--backbone", "simplecnn", "--input-size", "32", "--batch-size", "16", "--set", "head_units=8",
        "--set", "calibration_images=8", "--epochs", "1", "--val-fraction", "0.3"]
VERBS = ["train", "evaluate", "predict", "pose", "live", "annotate", "align", "emotion",
         *(f"export-{fmt}" for fmt in FORMATS)]
EVERY_MARKUP = ("train", "export-tflite")   # the cells the quick run takes every markup through
SLOW_FOR_ALL = ("export-savedmodel", "export-web")   # the slower converters: in the slow run only, for every markup
REFUSALS = {   # (markup, verb): what its one line says after "markup '<markup>' "; every other cell works
    ("five", "align"): "has no left_eye, right_eye points to align by",   # its eye points are outer corners
    ("five", "emotion"): "cannot be tagged: it has no upper_lip_top, lower_lip_bottom points",
    ("nose_tip", "pose"): "has 1 of the named points head pose needs",
    ("nose_tip", "align"): "has no left_eye, right_eye, mouth_left, mouth_right points to align by",
    ("nose_tip", "emotion"): "cannot be tagged: it has no left_eye_outer, right_eye_outer, mouth_left, mouth_right, "
                             "upper_lip_top, lower_lip_bottom points",
    ("aflw21", "emotion"): "cannot be tagged: it has no upper_lip_top, lower_lip_bottom points",
}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def carried(points: np.ndarray, markup: str) -> np.ndarray | None:
    """Synthetic iBUG-68 points as `markup`'s points (through its named parts, or the correspondence of a
    partially labelled markup), or None where no mapping exists."""
    ibug, target = SCHEMAS["ibug68"], SCHEMAS[markup]
    for carry in (convert_points, derive_points):
        try:
            return carry(points, ibug, target)
        except KerakpError:
            pass
    return None


@pytest.fixture(scope="module")
def world(synthetic_set, tmp_path_factory):
    """Inputs every verb reads: a few face images and a short clip."""
    from kerakp.data.synthetic import write_synthetic_video

    folder = tmp_path_factory.mktemp("matrix")
    return {"folder": folder, "images": synthetic_set.paths[:3],
            "clip": write_synthetic_video(folder / "clip.avi", frames=CLIP_FRAMES, width=320, height=240, seed=2)}


@pytest.fixture(scope="module")
def tiny_set(synthetic_set, world):
    """A tiny labelled set of a markup (cached): 24 synthetic faces where their points can be carried to it,
    else 24 of its real faces in ../shared/data (cropped), else a skip saying why."""
    made, synthetic = {}, synthetic_set.subset(range(24))

    def make(markup: str) -> Path:
        if markup not in made:
            points = carried(synthetic.keypoints, markup)
            if points is not None:
                faces = LandmarkSet(SCHEMAS[markup], synthetic.paths, points, synthetic.persons)
                made[markup] = write_dataset(faces, world["folder"] / f"set_{markup}", "csv", progress=False)
            elif (SHARED_DATA / markup).is_dir():
                real = load_dataset(SHARED_DATA / markup)
                made[markup] = write_dataset(real.subset(range(0, len(real), max(1, len(real) // 24))[:24]),
                                             world["folder"] / f"set_{markup}", "csv", crop_size=96, progress=False)
            else:
                made[markup] = None
        if made[markup] is None:
            pytest.skip(f"markup {markup}: synthetic faces cannot be carried to it and {SHARED_DATA / markup} is absent")
        return made[markup]

    return make


@pytest.fixture(scope="module")
def model_of(tiny_set, world):
    """The one tiny model of a markup (cached), trained one epoch by `kerakp train` on its tiny set (a markup
    without a normalising pair trains on whole images, as its recipes do). Its steps run eagerly: tracing them
    into graphs costs three times this whole run (as in tests/test_models.py)."""
    import tensorflow as tf

    trained = {}

    def make(markup: str) -> Path:
        if markup not in trained:
            run = world["folder"] / f"run_{markup}"
            whole = ["--set", "face_box=image"] if SCHEMAS[markup].norm is None else []
            tf.config.run_functions_eagerly(True)
            try:
                result = cli("train", "--data", tiny_set(markup), "--out", run, *TINY, *whole)
            finally:
                tf.config.run_functions_eagerly(False)
            assert result.exit_code == 0, (markup, result.output)
            trained[markup] = run / "model.keras"
        return trained[markup]

    return make


def verb_args(verb: str, model: Path, data: Path, world: dict, out: Path) -> list:
    """The command line of one cell."""
    images = world["images"]
    if verb.startswith("export-"):
        return ["export", model, "--format", verb.split("-", 1)[1], "--out", out]
    return {
        "evaluate": ["evaluate", model, "--data", data, "--subset", "val", "--box", "oracle", "--out", out],
        "predict": ["predict", model, *images, "--out", out, "--fallback", "--confidence", "--workers", 1],
        "pose": ["predict", model, *images, "--out", out, "--fallback", "--pose", "--workers", 1],
        "live": ["live", "--model", model, "--source", world["clip"], "--headless", "--landmarks", out],
        "annotate": ["annotate", model, *images, "--out", out, "--format", "csv", "--box", "full", "--workers", 1],
        "align": ["align", model, *images, "--out", out],
        "emotion": ["emotion", "tag", model, *images, "--out", out, "--box", "full"],
    }[verb]


def check_works(verb: str, markup: str, out: Path, result) -> None:
    """What a working cell wrote, read back."""
    count = SCHEMAS[markup].num_points
    if verb == "evaluate":
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["markup"] == markup and np.isfinite(metrics["nme"])
    elif verb in ("predict", "pose"):
        table = pd.read_csv(out)
        assert len(table) >= 3 and (table["found"] == 1).all() and {f"x{count - 1}", f"y{count - 1}"} <= set(table.columns)
        extra = ["yaw", "pitch", "roll"] if verb == "pose" else [f"c{i}" for i in range(count)]
        assert set(extra) <= set(table.columns)
    elif verb == "export-web":   # a page folder; its settings name the markup
        assert json.loads((out / "kerakp.json").read_text())["model"]["markup"] == markup
    elif verb.startswith("export-"):   # the file and its sidecar: synthetic faces checked it, with no labels
        report = json.loads(Path(f"{out}.json").read_text())
        assert out.exists() and report["model"]["schema"] == markup and not report["parity"]["labels"]
        assert "no labels: outputs compared" in result.output
    elif verb == "live":
        table = pd.read_csv(out)
        assert sorted(table["frame"].unique()) == list(range(CLIP_FRAMES)) and table.shape[1] == 2 + 2 * count
    elif verb == "annotate":
        labelled = load_dataset(out)
        assert labelled.schema.name == markup and len(labelled) == 3
    elif verb == "align":
        assert len(list(out.glob("*.png"))) == 3
    elif verb == "emotion":
        assert set(pd.read_csv(out)["tag"]) <= {"positive", "neutral", "negative"} and len(pd.read_csv(out)) == 3


def cells():
    for markup in SCHEMAS:
        for verb in VERBS:
            quick = verb in EVERY_MARKUP or (markup == QUICK and verb not in SLOW_FOR_ALL)
            yield pytest.param(markup, verb, marks=() if quick else pytest.mark.slow, id=f"{markup}-{verb}")


@pytest.mark.parametrize("markup, verb", cells())
def test_every_markup_through_every_verb(markup, verb, model_of, tiny_set, world, tmp_path):
    model = model_of(markup)
    if verb == "train":
        history = pd.read_csv(model.with_name("history.csv"))
        assert len(history) == 1 and np.isfinite(history["loss"]).all()
        return
    out = tmp_path / ("out" if verb in ("evaluate", "annotate", "align") else "out.csv")
    if verb.startswith("export-"):
        out = tmp_path / ("model" + FORMATS[verb.split("-", 1)[1]].suffix)
    result = cli(*verb_args(verb, model, tiny_set(markup), world, out))
    refusal = REFUSALS.get((markup, verb))
    if refusal is None:
        assert result.exit_code == 0, (markup, verb, result.output)
        check_works(verb, markup, out, result)
    else:
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: markup '{markup}' {refusal}"), \
            (markup, verb, result.output)
        assert not out.exists()


def test_every_refusal_names_a_markup_and_a_verb_of_the_matrix():
    assert {m for m, _ in REFUSALS} <= set(SCHEMAS) and {v for _, v in REFUSALS} <= set(VERBS)
