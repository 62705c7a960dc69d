"""What a user sees: no invented faces, results that print themselves, and the evaluation page, checked in a
real headless browser (Debian's Chromium driven by Playwright) where one is installed."""
import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.api import Landmarker
from kerakp.cli import main

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "runs" / "test_artifacts"   # screenshots kept for a person to look at
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def evaluated(synthetic_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluated") / "eval"
    result = run("evaluate", "300w", "--data", synthetic_csv, "--out", out, "--report")
    assert result.exit_code == 0, result.output
    assert f"{out / 'report.html'}" in result.output
    return out


def test_an_image_without_a_face_gets_no_face(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert Landmarker().predict(noise) == []
    assert len(Landmarker(fallback=True).predict(noise)) == 1   # asked for: the whole image read as a face
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    result = run("predict", "300w", tmp_path / "noise.png", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0 and "0 faces in 0 of 1 images" in result.output
    row = pd.read_csv(tmp_path / "p.csv").iloc[0]
    assert row["found"] == 0 and row["detected"] == 0 and np.isnan(row["x0"])


def test_a_face_prints_one_line_and_predictions_show_as_a_table(synthetic_csv):
    image = synthetic_csv.parent / "images" / "Synth_Person_0000_00.jpg"
    face = Landmarker().predict(image)[0]
    text = repr(face)
    assert "\n" not in text and text.startswith("Face(box=(") and "68 points (ibug68)" in text and "yaw/pitch/roll=" in text
    results = Landmarker().predict_many([image])
    assert repr(results).startswith("Predictions(1 images, 1 faces, 0 skipped")
    assert "<table" in results._repr_html_() and "x67" in results._repr_html_()


def test_the_ced_reaches_the_errors_and_the_plots_name_truth_and_prediction():
    from kerakp.plots import ced_limit

    assert ced_limit([np.full(10, 0.03)]) == 0.1                       # never less than 0.1
    assert ced_limit([np.linspace(0.05, 0.3, 100)]) == pytest.approx(0.3)   # the 95th percentile, up to 0.05


def test_predict_draws_every_image_with_its_faces(synthetic_csv, tmp_path):
    images = synthetic_csv.parent / "images"
    result = run("predict", "300w", images, "--out", tmp_path / "p.csv", "--draw", tmp_path / "drawn", "--pose")
    assert result.exit_code == 0, result.output
    drawn = sorted(p.name for p in (tmp_path / "drawn").iterdir())
    assert drawn == sorted(p.name for p in images.iterdir())
    original, marked = cv2.imread(str(images / drawn[0])), cv2.imread(str(tmp_path / "drawn" / drawn[0]))
    assert original.shape == marked.shape and np.abs(original.astype(int) - marked).max() > 100


def test_the_report_holds_the_metrics_and_every_face(evaluated, synthetic_csv, tmp_path):
    page = (evaluated / "report.html").read_text()
    for heading in ("Metrics", "Cumulative error distribution", "Error per point", "Error by head pose",
                    "Error by face size", "Every face, worst first"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("data:image/jpeg;base64,") == len(pd.read_csv(synthetic_csv))   # every face, embedded
    assert "http://" not in page and "https://" not in page                          # nothing fetched
    metrics = Landmarker().evaluate(synthetic_csv, out=tmp_path / "again", report=True, progress=False)
    assert (tmp_path / "again" / "report.html").is_file() and metrics["images"] == len(pd.read_csv(synthetic_csv))


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="Playwright is not installed (pip install -e '.[test]')")
def test_the_report_opens_in_a_browser_without_errors(evaluated):
    from playwright.sync_api import sync_playwright

    errors = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    per_image = pd.read_csv(evaluated / "per_image.csv").sort_values("nme", ascending=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((evaluated / "report.html").as_uri())
        assert "nme" in page.locator("table").first.inner_text()
        captions = page.locator("#gallery figcaption")
        assert captions.count() == 24 and captions.first.inner_text().startswith(per_image["image"].iloc[0])
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        page.click("#next")
        assert page.locator("#where").inner_text().startswith("page 2 of 2")
        assert page.locator("#gallery figcaption").count() == len(per_image) - 24
        browser.close()
    assert errors == [] and (ARTIFACTS / "report.png").stat().st_size > 10_000
