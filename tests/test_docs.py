"""The docs stay true: every path of the repository that README, BENCHMARKS, docs/ and the model cards name
exists, and the API reference builds from the docstrings without a warning."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").glob("*.md"), *(REPO / "kerakp" / "presets").glob("*.md"),
        *(REPO / "saved_models").glob("*.md")]
NAMED = re.compile(r"(?<![\w./-])((?:kerakp|scripts|tests|saved_models|training_history|benchmarks|docs|\.ci)/[\w./-]*\w)([*{]?)")
GENERATED = "docs/api"  # written by scripts/api_docs.py, not kept in git


def _exists(path, pattern):
    """A name followed by * or {...} stands for the files that start with it."""
    return path.startswith(GENERATED) or (REPO / path).exists() or bool(pattern and list(REPO.glob(f"{path}*")))


def test_every_path_the_docs_name_exists():
    missing = sorted({f"{doc.relative_to(REPO)}: {path}" for doc in DOCS for path, pattern in NAMED.findall(doc.read_text())
                      if not _exists(path, pattern)})
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pdoc") is None, reason="pdoc is not installed (pip install -e '.[test]')")
def test_the_api_reference_builds_without_warnings(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "api_docs.py"), str(tmp_path / "api")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "api" / "kerakp" / "api.html").is_file()
    page = (tmp_path / "api" / "kerakp" / "api.html").read_text()
    assert "Landmarker" in page and "predict_many" in page
