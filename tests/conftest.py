"""Shared fixtures: a small synthetic face set (always available) and the real data in ../shared (optional)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (the ../shared folder beside the checkout)")
    return path


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    """48 synthetic faces of 8 persons in the YTF-68 layout."""
    from kerakp.data.synthetic import write_synthetic_set

    return write_synthetic_set(tmp_path_factory.mktemp("synthetic"), num_images=48, images_per_person=6,
                               size=128, seed=1, progress=False)


@pytest.fixture(scope="session")
def synthetic_set(synthetic_csv):
    from kerakp.data.formats import load_dataset

    return load_dataset(synthetic_csv)


@pytest.fixture(scope="session")
def ytf68_subset(tmp_path_factory) -> Path:
    """A 60-frame, 10-person subset of ../shared/data/ytf68 written as its own CSV (images are linked, not copied)."""
    source = shared_path("ytf68")
    frame = pd.read_csv(source / "training_frames_keypoints.csv")
    persons = frame.iloc[:, 0].str.replace(r"_\d+\.jpg$", "", regex=True)
    chosen = sorted(persons.unique())[:40:4]
    subset = frame[persons.isin(chosen)].groupby(persons).head(6)
    out = tmp_path_factory.mktemp("ytf68_subset")
    (out / "training").mkdir()
    for name in subset.iloc[:, 0]:
        (out / "training" / name).symlink_to(source / "training" / name)
    subset.rename(columns={subset.columns[0]: ""}).to_csv(out / "training_frames_keypoints.csv", index=False)
    return out / "training_frames_keypoints.csv"


@pytest.fixture
def rng():
    return np.random.default_rng(0)
