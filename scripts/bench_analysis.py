"""Face analysis against known truth: head pose, per-point confidence, blinks, and their cost per face.

    python scripts/bench_analysis.py [--faces 150] [--photos 100]

Pose: synthetic faces, the whole head drawn turned by a known (yaw, pitch, roll) (`posed_face`: |yaw| <= 45,
|pitch| <= 20, |roll| <= 25), the error from their true landmarks and end to end (the packaged 300-W model, BlazeFace); on
real validation photos (300-W, persons the model never trained on), the pose of the mirrored photo against the
negated yaw and roll, and the roll of the photo turned 20 degrees in the image. Confidence: on the same
photos clean and with a grey block over the mouth (or the eyes), how often the covered points' mean
confidence is below the others', and the AUROC of low confidence for "this point is off by more than 0.1 of
the eye distance". Blinks: synthetic videos with closures at known frames, through the live loop. Writes
benchmarks/analysis.json and the "Face analysis" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from report import replace_section

from kerakp import Landmarker
from kerakp.analysis import head_pose
from kerakp.data.dataset import model_subset
from kerakp.data.formats import load_dataset
from kerakp.data.synthetic import posed_face, synthetic_video_frames, write_video
from kerakp.live import run_live
from kerakp.schemas import get_schema
from kerakp.timing import machine

SCHEMA = get_schema("ibug68")
MOUTH, EYES = list(range(48, 68)), list(range(36, 48))
ANGLES = ("yaw", "pitch", "roll")


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)) if n_pos and n_neg else float("nan")


def agreement(estimate: np.ndarray, truth: np.ndarray) -> dict:
    """Per angle: the mean absolute error of (N, 3) (yaw, pitch, roll) estimates, and the slope of the
    estimate against the truth (under 1: the estimate damps the turn)."""
    ok = ~np.isnan(estimate).any(axis=1)
    error = np.abs(estimate[ok] - truth[ok]).mean(axis=0)
    slope, intercept = np.array([np.polyfit(truth[ok, j], estimate[ok, j], 1) for j in range(3)]).T
    return {**dict(zip(ANGLES, error.round(3).tolist())), "slope": dict(zip(ANGLES, slope.round(3).tolist())),
            "intercept": dict(zip(ANGLES, intercept.round(3).tolist()))}


def pose_errors(lm: Landmarker, count: int) -> dict:
    rng = np.random.default_rng(0)
    truth, from_labels, end_to_end = [], [], []
    for _ in range(count):
        pose = (rng.uniform(-45, 45), rng.uniform(-20, 20), rng.uniform(-25, 25))
        face = posed_face(rng, *pose, size=240)
        truth.append(pose)
        from_labels.append(head_pose(face["points"], face["image"].shape, SCHEMA))
        found = lm.predict(face["image"], max_faces=1)
        end_to_end.append(found[0].pose if found else (np.nan,) * 3)
    truth, from_labels, end_to_end = map(np.array, (truth, from_labels, end_to_end))
    wide = np.abs(truth[:, 0]) > 30
    by_yaw = {f"{lo}-{lo + 15}": (np.abs(truth[:, 0]) >= lo) & (np.abs(truth[:, 0]) < lo + 15) for lo in (0, 15, 30)}
    return {"faces": count, "from_labels": agreement(from_labels, truth), "end_to_end": agreement(end_to_end, truth),
            "end_to_end_yaw_over_30": float(np.nanmean(np.abs(end_to_end[wide, 0] - truth[wide, 0]))),
            "pitch_by_abs_yaw": {band: {"faces": int(rows.sum()), "from_labels": agreement(from_labels[rows], truth[rows]),
                                        "end_to_end": agreement(end_to_end[rows], truth[rows])} for band, rows in by_yaw.items()},
            "found": float(np.mean(~np.isnan(end_to_end[:, 0])))}


def turned(image, degrees, centre):
    matrix = cv2.getRotationMatrix2D(tuple(centre), degrees, 1.0)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def real_checks(lm: Landmarker, photos) -> dict:
    mirror, turn, occlusion = [], [], {"mouth": [], "eyes": []}
    errors, confidences, poses, labelled_poses = [], [], [], []
    for image, truth in photos:
        found = lm.predict(image, max_faces=1)
        if not found:
            continue
        face = found[0]
        poses.append(face.pose)
        labelled_poses.append(head_pose(truth, image.shape, SCHEMA))
        flipped = lm.predict(np.ascontiguousarray(image[:, ::-1]), max_faces=1)
        if flipped:
            (y, p, r), (ym, pm, rm) = face.pose, flipped[0].pose
            mirror.append((abs(y + ym), abs(p - pm), abs(r + rm)))
        centre = truth[30]
        rotated = lm.predict(turned(image, -20, centre), max_faces=1)   # OpenCV's positive angle is anticlockwise
        if rotated:
            turn.append(rotated[0].pose[2] - face.pose[2])
        eye = np.linalg.norm(truth[36] - truth[45])
        errors.append(np.linalg.norm(face.points - truth, axis=1) / eye)
        confidences.append(face.confidence)
        for part, index in (("mouth", MOUTH), ("eyes", EYES)):
            x0, y0 = truth[index].min(axis=0) - 0.1 * eye
            x1, y1 = truth[index].max(axis=0) + 0.1 * eye
            covered = image.copy()
            covered[int(max(y0, 0)):int(y1), int(max(x0, 0)):int(x1)] = 128
            hidden = lm.predict(covered, max_faces=1)
            if hidden:
                c = hidden[0].confidence
                rest = np.setdiff1d(np.arange(68), index)
                err = np.linalg.norm(hidden[0].points - truth, axis=1) / eye
                occlusion[part].append((c[index].mean() < c[rest].mean(), c, err))
    errors, confidences = np.concatenate(errors), np.concatenate(confidences)
    out = {"photos": len(photos), "mirror_abs": dict(zip(("yaw_plus_mirrored_yaw", "pitch_minus_mirrored", "roll_plus_mirrored_roll"),
                                                          np.mean(mirror, axis=0).round(3).tolist())),
           "pose_against_labelled_pose": agreement(np.array(poses), np.array(labelled_poses)),
           "roll_after_20_degree_turn": {"mean": float(np.mean(turn)), "mean_abs_error": float(np.mean(np.abs(np.array(turn) - 20)))},
           "clean_auroc_error_over_0.1": auroc(-confidences, errors > 0.1), "clean_points_over_0.1": float(np.mean(errors > 0.1))}
    for part, rows in occlusion.items():
        c = np.concatenate([r[1] for r in rows])
        e = np.concatenate([r[2] for r in rows])
        out[f"{part}_covered"] = {"covered_below_rest": float(np.mean([r[0] for r in rows])), "photos": len(rows),
                                  "auroc_error_over_0.1": auroc(-c, e > 0.1)}
    return out


def blinks(model: str, videos: int, folder: Path) -> dict:
    rng = np.random.default_rng(3)
    truth = found = hits = 0
    for seed in range(videos):
        starts = sorted(rng.choice(np.arange(10, 140, 20), size=4, replace=False))
        closed = frozenset(f for s in starts for f in range(s, s + int(rng.integers(3, 8))))
        video = write_video(folder / f"blink_{model}_{seed}.avi", synthetic_video_frames(160, 320, 240, seed=seed + 1, motion="still",
                                                                                           closed=closed))
        summary = run_live(Landmarker(model), str(video), headless=True)
        truth += len(starts)
        found += summary["blinks"]
        hits += min(summary["blinks"], len(starts))
    return {"closures": truth, "detected": found, "recall": hits / truth, "precision": hits / found if found else float("nan")}


def cost(lm: Landmarker, image) -> dict:
    face = lm.predict(image, max_faces=1)[0]
    timed = {}
    for name, call in (("pose", lambda: face.pose), ("openness", lambda: face.openness), ("aligned", lambda: face.aligned(image))):
        call()
        started = time.perf_counter()
        for _ in range(200):
            call()
        timed[name] = 1000 * (time.perf_counter() - started) / 200
    return timed


def pose_row(label: str, row: dict) -> str:
    return (f"| {label} | {row['yaw']:.2f} | {row['pitch']:.2f} | {row['roll']:.2f} | "
            + " / ".join(f"{row['slope'][a]:.2f}" for a in ANGLES) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--videos", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    lm = Landmarker("300w", threads=1)
    val = model_subset(load_dataset("../shared/data/300w_train"), lm.info.split, "val")
    photos = [(val.image(i), val.keypoints[i]) for i in range(min(args.photos, len(val)))]
    report = {"machine": machine(), "pose": pose_errors(lm, args.faces)}
    print(report["pose"])
    report["real"] = real_checks(lm, photos)
    print(report["real"])
    with tempfile.TemporaryDirectory() as tmp:
        report["blinks"] = {name: blinks(name, args.videos, Path(tmp)) for name in ("300w", "ytf68")}
    print(report["blinks"])
    report["ms_per_face"] = cost(lm, photos[0][0])
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/analysis.json").write_text(json.dumps(report, indent=2))
    pose, real = report["pose"], report["real"]
    lines = [f"Command: `python scripts/bench_analysis.py --faces {args.faces} --photos {args.photos} --videos {args.videos}` on "
             f"{report['machine']}, the packaged 300-W model, BlazeFace, one thread.", "",
             f"Head pose, {pose['faces']} synthetic faces, the whole head drawn turned by known angles (|yaw| <= 45, |pitch| <= 20, |roll| <= 25), "
             "mean absolute error in degrees:", "",
             "| from | yaw | pitch | roll | slope against the truth: yaw / pitch / roll |", "|---|---|---|---|---|",
             *[pose_row(label, pose[key]) for key, label in (("from_labels", "the true landmarks"),
                                                              ("end_to_end", "end to end (predicted landmarks)"))],
             "", f"End to end, faces turned more than 30 degrees: yaw error {pose['end_to_end_yaw_over_30']:.2f}. Pitch by how far "
             "the face is turned (error; slope; the intercept shows a bias):", "",
             "| abs(yaw) | faces | pitch from the true landmarks | end to end |", "|---|---|---|---|",
             *[f"| {band} | {row['faces']} | {row['from_labels']['pitch']:.2f}; {row['from_labels']['slope']['pitch']:.2f}; "
               f"{row['from_labels']['intercept']['pitch']:+.1f} | {row['end_to_end']['pitch']:.2f}; "
               f"{row['end_to_end']['slope']['pitch']:.2f}; {row['end_to_end']['intercept']['pitch']:+.1f} |"
               for band, row in pose["pitch_by_abs_yaw"].items()], "",
             f"Real validation photos ({real['photos']}): the pose end to end against the pose of the labelled landmarks "
             "(no true pose is known for real photos; this measures what the predicted landmarks add to the pose fit):", "",
             "| from | yaw | pitch | roll | slope against the labelled pose: yaw / pitch / roll |", "|---|---|---|---|---|",
             pose_row("end to end (predicted landmarks)", real["pose_against_labelled_pose"]), "",
             f"Real validation photos ({real['photos']}): mirrored photo against the original, mean |yaw + mirrored yaw| "
             f"{real['mirror_abs']['yaw_plus_mirrored_yaw']:.2f}, |pitch - mirrored pitch| {real['mirror_abs']['pitch_minus_mirrored']:.2f}, "
             f"|roll + mirrored roll| {real['mirror_abs']['roll_plus_mirrored_roll']:.2f} degrees; the photo turned 20 degrees "
             f"clockwise: roll changes by {real['roll_after_20_degree_turn']['mean']:.2f} (mean absolute error "
             f"{real['roll_after_20_degree_turn']['mean_abs_error']:.2f}).", "",
             "Per-point confidence (2^(-the reads' disagreement / the point's median flip disagreement on training images); the default path's three flip tests, so the disagreement of the turned reads counts too:", "",
             "| photos | covered points' mean confidence below the rest's | AUROC, low confidence for error > 0.1 eye distance |",
             "|---|---|---|",
             f"| clean | - | {real['clean_auroc_error_over_0.1']:.3f} ({real['clean_points_over_0.1']:.3f} of points over 0.1) |",
             *[f"| {part} covered by a grey block | {real[f'{part}_covered']['covered_below_rest']:.2f} | "
               f"{real[f'{part}_covered']['auroc_error_over_0.1']:.3f} |" for part in ("mouth", "eyes")],
             "", "Blinks (synthetic videos, eyes closed 3-7 frames four times each, the live loop):", "",
             "| model | closures | detected | recall | precision |", "|---|---|---|---|---|",
             *[f"| {name} | {b['closures']} | {b['detected']} | {b['recall']:.2f} | {b['precision']:.2f} |" for name, b in report["blinks"].items()],
             "", "Extra cost per face (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in report["ms_per_face"].items()) + "."]
    replace_section(Path("BENCHMARKS.md"), "Face analysis", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
