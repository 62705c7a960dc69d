"""Measure the emotion rule: confusion matrices on synthetic faces (ground-truth expressions) at several head
rolls, published vs calibrated thresholds, with and without undoing the roll; and, on ytf68, the tags of
ground-truth landmarks against those of a model's end-to-end predictions.

    python scripts/bench_emotion.py [--model runs/ytf68_mnv2/model.keras --data ../shared/data/ytf68]

Writes benchmarks/emotion.json and the "Emotion" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from report import replace_section  # noqa: E402 - scripts/ helper

from kerakp.data.synthetic import EXPRESSIONS, random_person, synthetic_face
from kerakp.emotion import TAGS, EmotionRule, accuracy, confusion, features, fit_rule, normalise_labels
from kerakp.schemas import get_schema

IBUG = get_schema("ibug68")
ROLLS = (0, 15, 30, 45)


def synthetic_landmarks(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frontal synthetic faces (points and expression labels), balanced over the three expressions."""
    rng = np.random.default_rng(seed)
    faces = [synthetic_face(rng, random_person(rng), EXPRESSIONS[i % 3], roll_range=0.0) for i in range(count)]
    return np.stack([f["points"] for f in faces]), normalise_labels([f["expression"] for f in faces])


def roll(points: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate each face by +-degrees (random sign) about its centre: a head roll in the image plane."""
    angles = np.deg2rad(degrees) * rng.choice([-1, 1], len(points))
    cos, sin = np.cos(angles), np.sin(angles)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    centre = points.mean(axis=1, keepdims=True)
    return np.einsum("nij,nkj->nki", rotation, points - centre) + centre


def synthetic_report(count: int) -> dict:
    fit_points, fit_labels = synthetic_landmarks(count, seed=100)
    calibrated = fit_rule(features(fit_points, IBUG), fit_labels)
    test_points, test_labels = synthetic_landmarks(count, seed=200)
    rows = {}
    for degrees in ROLLS:
        rolled = roll(test_points, degrees, np.random.default_rng(degrees))
        for rule_name, rule in (("published", EmotionRule()), ("calibrated", calibrated)):
            for frame, aligned in (("aligned", True), ("image frame", False)):
                tags = rule.tag(features(rolled, IBUG, aligned=aligned))
                rows[f"{rule_name}, {frame}, roll {degrees}"] = {
                    "rule": rule_name, "frame": frame, "roll": degrees,
                    "accuracy": accuracy(test_labels, tags), "confusion": confusion(test_labels, tags)}
    return {"faces": count, "calibrated_rule": calibrated.to_dict(), "results": rows}


def ytf68_report(model: Path, data: Path) -> dict:
    """Tags of ground truth vs end-to-end predictions on the model's own held-out persons."""
    from kerakp.data.dataset import model_subset
    from kerakp.data.formats import load_dataset
    from kerakp.evaluate import predict_set
    from kerakp.inference import Predictor

    predictor = Predictor(model, box="detector", passes=2, fallback="full")
    held_out = model_subset(load_dataset(data), predictor.model.info.split, "val")
    predicted, _, _ = predict_set(predictor, held_out)
    truth_tags = EmotionRule().tag(features(held_out.keypoints, IBUG))
    pred_tags = EmotionRule().tag(features(predicted, IBUG))
    counts = lambda tags: {t: int((tags == t).sum()) for t in TAGS}  # noqa: E731
    all_truth = EmotionRule().tag(features(load_dataset(data).keypoints, IBUG))
    return {"model": str(model), "images": len(held_out), "ground_truth_all_images": counts(all_truth),
            "ground_truth": counts(truth_tags), "predicted": counts(pred_tags),
            "agreement": accuracy(truth_tags, pred_tags), "confusion_truth_vs_predicted": confusion(truth_tags, pred_tags)}


def markdown(report: dict) -> str:
    syn = report["synthetic"]
    lines = [f"Command: `python scripts/bench_emotion.py{report['args']}` (2 CPU cores).", "",
             f"Synthetic faces (labels are the generator's expressions; {syn['faces']} test faces, thresholds "
             f"calibrated on {syn['faces']} other faces): accuracy by head roll.", "",
             "| rule | features | " + " | ".join(f"roll ±{r}°" for r in ROLLS) + " |",
             "|---|---|" + "---|" * len(ROLLS)]
    for rule in ("published", "calibrated"):
        for frame in ("aligned", "image frame"):
            accs = [syn["results"][f"{rule}, {frame}, roll {r}"]["accuracy"] for r in ROLLS]
            lines.append(f"| {rule} | {frame} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    for rule in ("published", "calibrated"):
        matrix = syn["results"][f"{rule}, aligned, roll 30"]["confusion"]
        lines += ["", f"Confusion, {rule} rule, aligned, roll ±30° (rows: truth, columns: tag):", "",
                  "| | " + " | ".join(TAGS) + " |", "|---|" + "---|" * 3]
        lines += [f"| {t} | " + " | ".join(str(matrix[t][p]) for p in TAGS) + " |" for t in TAGS]
    lines += ["", "Calibrated thresholds: " + ", ".join(f"{k} {v:.4f}" for k, v in syn["calibrated_rule"].items())]
    if "ytf68" in report:
        y = report["ytf68"]
        lines += ["", f"ytf68, published rule. All {sum(y['ground_truth_all_images'].values())} ground-truth "
                  "landmark sets: " + ", ".join(f"{t} {n}" for t, n in y["ground_truth_all_images"].items()) + ".",
                  f"On the model's {y['images']} held-out frames: ground truth "
                  + ", ".join(f"{t} {n}" for t, n in y["ground_truth"].items()) + "; end-to-end predictions ("
                  f"`{y['model']}`) " + ", ".join(f"{t} {n}" for t, n in y["predicted"].items())
                  + f"; the two tags agree on {y['agreement']:.1%} of frames."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=900, help="synthetic faces per set")
    parser.add_argument("--model", type=Path, help="a trained ibug68 model for the ytf68 comparison")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ytf68"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/emotion.json"))
    args = parser.parse_args()
    report = {"args": f" --model {args.model} --data {args.data}" if args.model else "",
              "synthetic": synthetic_report(args.faces)}
    if args.model:
        report["ytf68"] = ytf68_report(args.model, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    text = markdown(report)
    replace_section(Path("BENCHMARKS.md"), "Emotion tags", text)
    print(text)


if __name__ == "__main__":
    main()
