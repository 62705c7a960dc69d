"""The packaged presets side by side, each accurate model beside its fast student: cost per face crop with
MediaPipe's face_landmark.tflite timed in the same run, end-to-end accuracy with paired intervals, the default
path's time per image, the live loop, and the hard scenes of bench_detect (low light, small faces).

    python scripts/bench_students.py [--runs 300] [--frames 600] [--candidate 300w:runs/x/x.tflite ...]

Accuracy: `Landmarker.evaluate`'s path (BlazeFace, two passes, the flip test, turned reads; no whole-image
fallback) on each preset's own validation split (persons / source photos its teacher never trained on), the
fast preset minus its teacher per image with a 95 % interval resampling persons. Cost: median of `runs` LiteRT
calls on one thread per face crop. Per image: `Landmarker.predict` on validation photos, one thread, median.
Live: `kerakp live --headless` on a 640x480 video of a moving face that a second face joins from the edge half
way, one thread; the still-face jitter on a still synthetic video (the mean frame-to-frame movement of the smoothed
points over the eye distance) and the NME of the smoothed points on a real validation face moving in a 640x480 video
(its truth known in every frame). Writes benchmarks/students.json, benchmarks/students.png (accuracy against
cost) and the "Fast presets" section of BENCHMARKS.md. Nothing else may run meanwhile. Every ratio is to MediaPipe's
time in the same run and the live FPS is also given scaled to MediaPipe's 1.8 ms (FPS x its ms / 1.8), so a figure
means the same on any machine; `--candidate TEACHER:FILE` adds a model not yet packaged (a .tflite with its
sidecar) beside the presets, read on its teacher's validation split.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from bench_detect import low_light, pasted
from bench_live import jitter, mediapipe_ms, nme
from report import replace_section

from kerakp.api import Landmarker
from kerakp.data.dataset import model_subset
from kerakp.data.formats import load_dataset
from kerakp.data.synthetic import photo_video_frames, synthetic_video_frames, write_video
from kerakp.live import run_live
from kerakp.metrics import paired_interval, per_image_nme
from kerakp.plots import plot_tradeoff
from kerakp.runtime import litert_interpreter
from kerakp.timing import machine, time_calls
from kerakp.zoo import presets

PAIRS = {"300w": ("300w-fast", "../shared/data/300w_train"), "ytf68": ("ytf68-fast", "../shared/data/ytf68")}


def crop_ms(path: Path, runs: int) -> float:
    interpreter = litert_interpreter(path, 1)
    detail = interpreter.get_input_details()[0]
    crop = np.random.default_rng(0).uniform(0, 255, detail["shape"]).astype(np.float32)

    def call():
        interpreter.set_tensor(detail["index"], crop)
        interpreter.invoke()

    return time_calls(call, runs, warmup=30)["median_ms"]


def nme_per_image(lm: Landmarker, scenes) -> np.ndarray:
    """End-to-end NME per scene (the `evaluate` path; NaN where no face came back)."""
    out = []
    for start in range(0, len(scenes), 32):
        part = scenes[start:start + 32]
        for (_, truth), result in zip(part, lm.predictor.predict_batch([image for image, _ in part])):
            out.append(np.nan if result.points is None else per_image_nme(result.points[None], truth[None], lm.predictor.schema)[0])
    return np.array(out)


def summary(values: np.ndarray) -> dict:
    return {"nme": float(np.nanmean(values)), "failure@0.08": float(np.mean(~(values <= 0.08))), "no_face": int(np.isnan(values).sum())}


def two_face_video(folder: Path, photos, frames: int) -> Path:
    """A moving face; from half way a second face slides in from the right edge and stays."""
    first = list(photo_video_frames(*photos[0], frames, motion="move", seed=0))
    second = list(photo_video_frames(*photos[1], frames, motion="still", seed=1))
    out = []
    for k, (frame, points) in enumerate(first):
        frame = frame.copy()
        if k >= frames // 2:
            shown = min(1.0, (k - frames // 2) / 30) * 0.4   # slides in over a second, to 40 % of the width
            width = int(640 * shown)
            if width > 8:
                part = cv2.resize(second[k][0], (320, 240))[:, :width]
                frame[120:360, 640 - width:] = part
        out.append((frame, points))
    return write_video(folder / "two_faces.avi", out)


def tracked(lm: Landmarker, video: Path, truth: np.ndarray) -> np.ndarray:
    """The smoothed points `Landmarker.track` yields for the video's face, a frame each (NaN where none)."""
    return np.stack([faces[0].points if faces else np.full(truth.shape[1:], np.nan) for _, faces in lm.track(str(video))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--images", type=int, default=100, help="validation photos timed per image")
    parser.add_argument("--candidate", action="append", default=[], metavar="TEACHER:FILE",
                        help="a model to set beside the presets (TEACHER: 300w or ytf68, whose split it is read on)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    found = {name: preset.path for name, preset in presets().items()}
    candidates = {Path(path).stem: key for key, _, path in (c.partition(":") for c in args.candidate)}
    found.update({Path(path).stem: Path(path) for _, _, path in (c.partition(":") for c in args.candidate)})
    report = {"machine": machine(), "threads": 1, "date": time.strftime("%Y-%m-%d")}
    report["mediapipe_ms"] = mediapipe_ms(args.runs)
    report["crop_ms"] = {name: crop_ms(path, args.runs) for name, path in found.items()}
    report["mediapipe_ms_after"] = mediapipe_ms(args.runs)   # the machine did not change speed in between
    print("crop ms", report["crop_ms"], "mediapipe", report["mediapipe_ms"], report["mediapipe_ms_after"])

    report["accuracy"], report["per_image_ms"], rng = {}, {}, np.random.default_rng(7)
    for accurate, (fast, data_path) in PAIRS.items():
        teacher = Landmarker(accurate, threads=1)
        data = model_subset(load_dataset(data_path), teacher.info.split, "val")
        plain = [(data.image(i), data.keypoints[i]) for i in range(len(data))]
        scenes = {"plain": plain, "low light": [low_light(image, truth, rng) for image, truth in plain],
                  "small 64 px": [pasted(image, truth, 64, rng) for image, truth in plain]}
        rows, mine = {}, [name for name, key in candidates.items() if key == accurate]
        for scene, items in scenes.items():
            per = {name: nme_per_image(Landmarker(str(found[name]), threads=1), items) for name in (accurate, fast, *mine)}
            rows[scene] = {name: summary(v) for name, v in per.items()}
            for name in (fast, *mine):
                both = np.isfinite(per[accurate]) & np.isfinite(per[name])   # faces both found
                rows[scene][f"{name} - accurate"] = {**paired_interval(per[accurate][both], per[name][both],
                                                                       np.asarray(data.persons)[both]), "images": int(both.sum())}
            print(accurate, scene, rows[scene])
        report["accuracy"][accurate] = {"images": len(data), "scenes": rows}
        for name in (accurate, fast, *mine):
            lm, times = Landmarker(str(found[name]), threads=1), []
            for image, _ in plain[:args.images]:
                start = time.perf_counter()
                lm.predict(image)
                times.append(1000 * (time.perf_counter() - start))
            report["per_image_ms"][name] = float(np.median(times[1:]))
    print("per image", report["per_image_ms"])

    val = model_subset(load_dataset(PAIRS["300w"][1]), Landmarker("300w").info.split, "val")
    photos = [(val.image(i), val.keypoints[i]) for i in (0, 40)]
    report["live"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = two_face_video(Path(tmp), photos, args.frames)
        still_frames = list(synthetic_video_frames(150, seed=3, motion="still"))
        still = write_video(Path(tmp) / "still.avi", still_frames)
        truth = np.stack([points for _, points in still_frames])
        moving_frames = list(photo_video_frames(*photos[1], 150, motion="move", seed=2))   # a real face, known truth
        moving = write_video(Path(tmp) / "moving.avi", moving_frames)
        moving_truth = np.stack([points for _, points in moving_frames])
        for name in found:
            stats = run_live(Landmarker(str(found[name]), threads=1), str(video), headless=True, threads=1)
            stats["ms_per_frame"] = 1000 * stats["wall_s"] / stats["frames"]
            stats["ratio_to_mediapipe"] = stats["ms_per_frame"] / report["mediapipe_ms"]
            stats["fps_scaled"] = stats["fps"] * report["mediapipe_ms"] / 1.8   # as if MediaPipe took its 1.8 ms here
            stats["still_jitter"] = jitter(tracked(Landmarker(str(found[name]), threads=1), still, truth), truth)
            stats["moving_nme"] = nme(tracked(Landmarker(str(found[name]), threads=1), moving, moving_truth), moving_truth)
            report["live"][name] = stats
            print("live", name, round(stats["fps"], 1), "FPS", round(stats["ratio_to_mediapipe"], 2), "x MediaPipe",
                  "jitter", round(stats["still_jitter"], 4), "moving NME", round(stats["moving_nme"], 4))
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/students.json").write_text(json.dumps(report, indent=2))
    points = {name: (report["crop_ms"][name], report["accuracy"][key]["scenes"]["plain"][name]["nme"])
              for key, entry in report["accuracy"].items() for name in entry["scenes"]["plain"] if " - " not in name}
    plot_tradeoff(points, "benchmarks/students.png", xlabel="ms per face crop (LiteRT, one thread)")
    write_section(report, args)


def write_section(report: dict, args) -> None:
    mp = report["mediapipe_ms"]
    lines = [f"Command: `python scripts/bench_students.py --runs {args.runs} --frames {args.frames}` on {report['machine']}, "
             f"one thread, {report['date']}. MediaPipe's face_landmark.tflite in the same run: **{mp:.2f} ms** a crop "
             f"({report['mediapipe_ms_after']:.2f} ms timed again at the end).", "",
             "| model | ms per crop | x MediaPipe | default path, ms per image | live FPS (2 faces) | live FPS scaled to "
             "MediaPipe's 1.8 ms | x MediaPipe per frame | still jitter | moving face NME |", "|---|---|---|---|---|---|---|---|---|"]
    for name, ms in report["crop_ms"].items():
        live = report["live"][name]
        lines.append(f"| `{name}` | {ms:.2f} | {ms / mp:.2f} | {report['per_image_ms'][name]:.1f} | {live['fps']:.0f} | "
                     f"{live['fps_scaled']:.0f} | {live['ratio_to_mediapipe']:.2f} | {live['still_jitter']:.4f} | "
                     f"{live['moving_nme']:.4f} |")
    lines += ["", "End to end on the validation splits (NME; each student minus its teacher with a 95 % interval over "
              "persons / source photos):", "", "| teacher | scene | images | teacher NME | student | student NME | "
              "student - teacher |", "|---|---|---|---|---|---|---|"]
    for key, entry in report["accuracy"].items():
        for scene, row in entry["scenes"].items():
            for name in [n[:-len(" - accurate")] for n in row if n.endswith(" - accurate")]:
                d = row[f"{name} - accurate"]
                lines.append(f"| `{key}` | {scene} | {entry['images']} | {row[key]['nme']:.4f} | `{name}` | "
                             f"{row[name]['nme']:.4f} | {d['mean']:+.4f} ({d['low']:+.4f}..{d['high']:+.4f}) |")
    lines += ["", "![accuracy against cost](benchmarks/students.png)"]
    replace_section(Path("BENCHMARKS.md"), "Fast presets", "\n".join(lines))
    for key, (fast, _) in PAIRS.items():
        write_card(report, key, fast)


def write_card(report: dict, key: str, fast: str) -> None:
    """The fast preset's card's "Validation" section, from the same run as BENCHMARKS.md's."""
    card = presets()[fast].card
    entry, mp = report["accuracy"][key], report["mediapipe_ms"]
    lines = [f"`python scripts/bench_students.py` ({report['date']}, {report['machine']}, one thread; BENCHMARKS.md, "
             f"\"Fast presets\"): end to end from the raw image (BlazeFace, the default path) on the {entry['images']} "
             f"validation faces, against its teacher `{key}` (a 95 % interval over persons / source photos):", "",
             f"| scene | `{key}` NME | `{fast}` NME | difference | `{fast}` failure@0.08 |", "|---|---|---|---|---|"]
    for scene, row in entry["scenes"].items():
        d = row[f"{fast} - accurate"]
        lines.append(f"| {scene} | {row[key]['nme']:.4f} | {row[fast]['nme']:.4f} | {d['mean']:+.4f} ({d['low']:+.4f}.."
                     f"{d['high']:+.4f}) | {row[fast]['failure@0.08']:.3f} |")
    live = report["live"][fast]
    lines += ["", f"Cost: {report['crop_ms'][fast]:.2f} ms a face crop ({report['crop_ms'][fast] / mp:.2f} x MediaPipe's "
              f"face_landmark in the same run, {report['crop_ms'][key] / report['crop_ms'][fast]:.1f} x faster than `{key}`); "
              f"{report['per_image_ms'][fast]:.1f} ms an image on the default path; `kerakp live` {live['fps']:.0f} FPS ({live['fps_scaled']:.0f} scaled to MediaPipe's 1.8 ms) on a "
              f"640x480 video with {live['faces_per_frame']:.2f} faces a frame, still-face jitter {live['still_jitter']:.4f}, "
              f"moving-face NME {live['moving_nme']:.4f}."]
    text = card.read_text()
    card.write_text(text[:text.index("## Validation")] + "## Validation\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
