"""Distillation: the teacher reads every crop the student sees, at its own size, and labels unlabelled images."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerakp.cli import main
from kerakp.data.augment import Augment
from kerakp.data.dataset import person_of, split_by_person
from kerakp.data.formats import load_dataset
from kerakp.data.geometry import about_centre, box_crop_matrix, points_box, rotation, transform_points
from kerakp.distill import DistillSequence, Teacher
from kerakp.model_info import CropRule

STUDENT = ["--set", "backbone=simplecnn", "--set", "input_size=48", "--set", "batch_size=16", "--set", "head_units=32",
           "--set", "calibration_images=10", "--set", "init=", "--set", "head=light", "--set", "heatmap_stride=4"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def teacher():
    return Teacher("300w", 0.7)


def test_the_teacher_reads_the_same_region_whatever_the_students_size(teacher, synthetic_set):
    data = synthetic_set.subset(range(8))
    targets = []
    for size in (48, 96):
        sequence = DistillSequence(data, CropRule(size, 1.25, True), teacher, np.zeros(len(data), bool), batch_size=8,
                                   augment=Augment(rotation=10, flip=0.5), shuffle=True, seed=3)
        crops, fractions = sequence[0]
        assert crops.shape == (8, size, size, 3) and np.isfinite(fractions).all()
        targets.append(fractions)
    assert np.abs(targets[0] - targets[1]).max() < 1e-6   # crop fractions of one reading of one region


def test_targets_blend_label_and_reading_by_the_teachers_weight(teacher, synthetic_set):
    data = synthetic_set.subset(range(8))
    crop = CropRule(64, 1.25, True)
    labelled = np.array([True] * 4 + [False] * 4)
    sequence = DistillSequence(data, crop, teacher, labelled, batch_size=8, augment=Augment(), shuffle=False)
    _, targets = sequence[0]
    _, points, matrices = zip(*(sequence.sample(i) for i in range(8)))
    labels = (np.stack(points) + 0.5) / 64
    read = (teacher.read([data.image(i) for i in range(8)], matrices, 64, 1.25) + 0.5) / 64
    expected = np.where(labelled[:, None, None], 0.3 * labels + 0.7 * read, read).reshape(8, -1)
    assert np.allclose(targets, expected, atol=1e-6)
    nme = np.linalg.norm(read - labels, axis=-1).mean(axis=1) / np.linalg.norm(labels[:, 36] - labels[:, 45], axis=-1)
    assert np.median(nme) < 0.15   # the 300-W model reads drawn faces roughly where they are labelled


def test_a_turning_teacher_averages_its_reads_of_the_crop_turned_each_way(teacher, synthetic_set):
    data = synthetic_set.subset(range(4))
    images = [data.image(i) for i in range(4)]
    matrices = [box_crop_matrix(points_box(data.keypoints[i]), 1.25, 64) for i in range(4)]
    turned = Teacher("300w", 0.7, turn=12.0).read(images, matrices, 64, 1.25)
    each = [transform_points(np.linalg.inv(about_centre(rotation(a), 64)),
                             teacher.read(images, [about_centre(rotation(a), 64) @ m for m in matrices], 64, 1.25))
            for a in (0.0, 12.0, -12.0)]
    assert np.abs(turned - np.mean(each, axis=0)).max() < 1e-3
    assert np.abs(turned - each[0]).max() > 0.05   # the turned reads move it


@pytest.mark.slow
def test_distill_trains_a_student_on_labelled_and_unlabelled_faces_and_resumes(synthetic_csv, tmp_path):
    images = tmp_path / "unlabelled"
    images.mkdir()
    for path in sorted(synthetic_csv.parent.glob("images/*.jpg"))[::4]:   # 12 images of the 8 persons
        shutil.copy(path, images / path.name)
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "student"
    result = run("distill", "300w", "--data", synthetic_csv, "--images", images, "--config", "300w_fast", "--out", out,
                 "--epochs", 1, *STUDENT)
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out / "unlabelled.csv")
    assert 8 <= len(labels) <= 12 and "broken.png" not in set(labels["image"])
    split = json.loads((out / "split.json").read_text())
    assert (split["val_fraction"], split["seed"]) == (0.15, 0)   # the teacher's: persons it never trained on
    data = load_dataset(synthetic_csv)
    held_out = {data.persons[i] for i in split_by_person(data, 0.15, 0)[1]}
    assert split["unlabelled_images"] == sum(person_of(name) not in held_out for name in labels["image"]) < len(labels)
    config = json.loads(__import__("zipfile").ZipFile(out / "model.keras").read("config.json"))["config"]
    assert (config["head"], config["heatmap_stride"]) == ("light", 4)
    resumed = run("distill", "300w", "--data", synthetic_csv, "--images", images, "--config", "300w_fast", "--out", out,
                  "--epochs", 2, "--resume", *STUDENT)
    assert resumed.exit_code == 0, resumed.output
    assert len(pd.read_csv(out / "history.csv")) == 2


def test_distill_refuses_a_teacher_of_another_markup(tmp_path):
    from kerakp.data.formats import write_dataset
    from kerakp.data.synthetic import write_synthetic_set

    five = write_dataset(load_dataset(write_synthetic_set(tmp_path / "s", 12, 4, 96, progress=False)), tmp_path / "five",
                         "csv", "five", progress=False)
    result = run("distill", "300w", "--data", five, "--config", "300w_fast", "--out", tmp_path / "run", *STUDENT)
    assert result.exit_code == 2 and "but the teacher reads ibug68" in result.output
    assert not (tmp_path / "run").exists()
