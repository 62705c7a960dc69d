"""Face detectors side by side (BlazeFace, Haar): recall by skin tone, turn and face size, cost per frame, and
the shipped models' end-to-end NME with each, on the validation splits and on hard scenes made from them.

    python scripts/bench_detect.py [--per-tone 100] [--frames 40]
    python scripts/bench_detect.py --yaw-only        # only the "Faces found by head yaw" part

Faces found by head yaw (`yaw_recall`): the default BlazeFace (what `Landmarker().predict` runs) on AFLW 21's
held-out share (`model_subset(..., Landmarker("300w").info.split, "val")`, as scripts/bench_pose.py) with each
120 px crop padded with black to 240 px (`bench_pose.padded`), by AFLW's |yaw|; a face counts as found when a
detection's box overlaps its crop box (the fitted mean face's) by IoU 0.3 or more, or its centre lies inside.
Beside it, without the turned looks and without the second look, and the detections on face-free images (noise,
smooth backgrounds, the corners of 300-W training crops). Recall only: valid on a loaded machine. Writes benchmarks/detect_yaw.json and
the "Faces found by head yaw" section of BENCHMARKS.md.

Recall: a face counts as found when a detection's centre lies in its landmark box and the detection's width is
0.5 to 2.5 times the box's longer side. Scenes from validation photos (the persons the shipped models never
trained on): turned (the photo rotated about the face), small (the photo scaled so the landmark box is N px
and pasted into a 640x480 frame of smooth noise), low light (a quarter of the brightness plus sensor noise).
Cost: median milliseconds of `faces()` per 640x480 frame on one thread, with a face present and with none.
NME: `Predictor.predict_batch` (the path `kerakp evaluate` runs: fallback to the whole image, default turn), with
paired 95 % intervals by person / source photo. Writes benchmarks/detect.json and the "Face detectors" section of
BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
from report import replace_section

from kerakp.api import Landmarker
from kerakp.data.dataset import model_subset
from kerakp.data.formats import load_dataset
from kerakp.data.geometry import box_iou, points_box, transform_points
from kerakp.data.synthetic import SKIN_TONES, random_person, synthetic_face
from kerakp.detect import DETECTORS, get_detector
from kerakp.inference import Predictor
from kerakp.metrics import paired_interval, per_image_nme
from kerakp.runtime import open_model
from kerakp.timing import machine

MODELS = {"ytf68": ("kerakp/presets/ytf68_mobilenetv2_heatmap.tflite", "../shared/data/ytf68"),
          "300w": ("kerakp/presets/300w_mobilenetv2_heatmap.tflite", "../shared/data/300w_train")}


def found(detector, image, truth) -> bool:
    box = points_box(truth)
    side = max(box[2] - box[0], box[3] - box[1])
    for face in detector.faces(image):
        centre, width = (face.box[:2] + face.box[2:]) / 2, face.box[2] - face.box[0]
        if np.all((centre >= box[:2]) & (centre <= box[2:])) and 0.5 <= width / side <= 2.5:
            return True
    return False


def recall(detector, scenes) -> float:
    return float(np.mean([found(detector, image, truth) for image, truth in scenes]))


def turned(image, truth, degrees):
    """The image rotated by `degrees` about the face's landmark-box centre (black corners)."""
    box = points_box(truth)
    matrix = np.vstack([cv2.getRotationMatrix2D(tuple((box[:2] + box[2:]) / 2), degrees, 1.0), [0, 0, 1]])
    return cv2.warpAffine(image, matrix[:2], image.shape[1::-1]), transform_points(matrix, truth)


def background(rng, height=480, width=640):
    """Smooth coloured noise: no face, some texture."""
    small = rng.uniform(40, 220, (6, 8, 3)).astype(np.float32)
    frame = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 6, (height, width, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def pasted(image, truth, side, rng):
    """The photo scaled so its landmark box's longer side is `side` px, pasted at a random place of a 640x480 frame."""
    box = points_box(truth)
    scale = side / max(box[2] - box[0], box[3] - box[1])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = background(rng)
    h, w = min(small.shape[0], 480), min(small.shape[1], 640)
    y, x = rng.integers(0, 480 - h + 1), rng.integers(0, 640 - w + 1)
    frame[y:y + h, x:x + w] = small[:h, :w]
    return frame, (truth + 0.5) * scale - 0.5 + [x, y]


def low_light(image, truth, rng):
    dark = image.astype(np.float32) * 0.25 + rng.normal(0, 3, image.shape)
    return np.clip(dark, 0, 255).astype(np.uint8), truth


def synthetic_by_tone(per_tone, rng, size=160, roll=25.0):
    scenes = {}
    for tone, colour in enumerate(SKIN_TONES):
        faces = []
        for _ in range(per_tone):
            person = random_person(rng)
            person.skin = np.clip(colour + rng.normal(0, 8, 3), 0, 255)
            face = synthetic_face(rng, person, size=size, roll_range=roll)
            faces.append((face["image"], face["points"]))
        scenes[tone] = faces
    return scenes


def frame_cost(detector, frames) -> float:
    detector.faces(frames[0])
    times = []
    for frame in frames:
        start = time.perf_counter()
        detector.faces(frame)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def nme_of(predictor, scenes, chunk=32) -> np.ndarray:
    """Per-image end-to-end NME (NaN where no landmarks came back)."""
    out = []
    for start in range(0, len(scenes), chunk):
        part = scenes[start:start + chunk]
        results = predictor.predict_batch([image for image, _ in part])
        for (_, truth), result in zip(part, results):
            out.append(np.nan if result.points is None else
                       per_image_nme(result.points[None], truth[None], predictor.schema)[0])
    return np.array(out)


def overlaps(box, truth) -> bool:
    """A detection on the face: IoU 0.3 or more with its box, or its centre inside it."""
    centre = (box[:2] + box[2:]) / 2
    return box_iou(box, truth) >= 0.3 or bool(np.all((centre >= truth[:2]) & (centre <= truth[2:])))


def face_free(count: int, rng) -> dict:
    """Images without a whole face: uniform noise and smooth backgrounds (240 px and 640x480), and the four
    corners of 300-W training crops put together (hair, clothes, backgrounds; some show part of a face)."""
    import glob

    corners = []
    for path in sorted(glob.glob("../shared/data/300w_train/*.jpg"))[:count]:
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        q = image.shape[0] // 4
        top, bottom = np.concatenate([image[:q, :q], image[:q, -q:]], 1), np.concatenate([image[-q:, :q], image[-q:, -q:]], 1)
        corners.append(cv2.resize(np.concatenate([top, bottom]), (240, 240)))
    return {"noise 240 px": [rng.integers(0, 256, (240, 240, 3), dtype=np.uint8) for _ in range(count)],
            "noise 640x480": [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)],
            "smooth background 240 px": [cv2.resize(background(rng), (240, 240)) for _ in range(count)],
            "smooth background 640x480": [background(rng) for _ in range(count)],
            "corners of 300-W crops": corners}


def yaw_recall(data_path: str, count: int) -> dict:
    """Faces found by |yaw| band on AFLW 21's held-out crops padded to 240 px, with the default BlazeFace, without
    its turned looks and without its second look, and the images of each face-free set where each finds a face
    (module docstring)."""
    import warnings

    import pandas as pd
    from bench_pose import BANDS, CROP, padded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the reader's count of dropped points
        data = load_dataset(data_path)
    held_out = model_subset(data, Landmarker("300w").info.split, "val")
    faces = padded(held_out, 2 * CROP)
    shift = np.nanmean(faces.keypoints - held_out.keypoints, axis=1)          # where each crop was pasted
    boxes = held_out.boxes + np.tile(shift, 2)
    yaw = np.abs(pd.read_csv(Path(data_path) / "labels.csv", usecols=["file", "yaw"]).set_index("file")["yaw"]
                 .loc[held_out.names].to_numpy(np.float64))
    free = face_free(count, np.random.default_rng(0))
    report = {"data": f"{data_path}: {len(held_out)} held-out faces", "bands": {}, "face_free": {}, "second_look_share": {}}
    for name, detector in (("default", get_detector("blazeface")), ("no turned looks", get_detector("blazeface", turned_looks=())),
                           ("no second look", get_detector("blazeface", second_look=False, turned_looks=()))):
        detections = [detector.faces(faces.image(i)) for i in range(len(faces))]
        found = np.array([any(overlaps(face.box, box) for face in some) for some, box in zip(detections, boxes)])
        report["bands"][name] = {band: {"faces": int(((yaw >= lo) & (yaw < hi)).sum()),
                                        "found": float(found[(yaw >= lo) & (yaw < hi)].mean())} for band, (lo, hi) in BANDS.items()}
        report["face_free"][name] = {key: int(sum(bool(detector.faces(image)) for image in images)) for key, images in free.items()}
        print(name, report["bands"][name], report["face_free"][name], flush=True)
        if name == "no second look":   # where it finds nothing, the default takes its second look
            report["second_look_share"] = float(np.mean([not some for some in detections]))
    reader = Landmarker("300w-fast")   # what predict keeps of the default's: a face only a turned look found must read consistently
    report["face_free"]["default, as `300w-fast` reads"] = {key: int(sum(bool(reader.predict(image)) for image in images))
                                                           for key, images in free.items()}
    report["face_free_images"] = {key: len(images) for key, images in free.items()}
    return report


def yaw_section(report: dict, args) -> str:
    names = list(report["bands"])
    lines = [f"Command ({date.today()}): `python scripts/bench_detect.py --yaw-only --free {args.free}` ({report['data']}, each 120 px crop "
             "padded with black to 240 px, the face at half the frame; bands by AFLW's |yaw|). A face is found when a "
             "detection overlaps its crop box by IoU 0.3 or more, or its centre lies inside it. `default`: BlazeFace as "
             "`Landmarker().predict` runs it (the whole image, the tiles where no face is sure, and the second look where "
             "nothing was found: its weak faces kept where their mean score with the mirror image's and the full-range "
             "model's reaches `agree`, 0.5; where that finds nothing either, the turned looks: the image turned by -15, 15, "
             "-30 and 30 degrees in turn, each read whole with the second look); `no turned looks`: the default before them; "
             "`no second look`: without either. Recall figures only: measured beside other work on the same machine (recall "
             "is valid under load, timings are not).", "",
             "| faces found | " + " | ".join(f"{band} degrees ({row['faces']} faces)" for band, row in report["bands"][names[0]].items()) + " |",
             "|---|" + "---|" * len(report["bands"][names[0]])]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{row['found']:.1%}" for row in report["bands"][name].values()) + " |")
    free = report["face_free_images"]
    readers = list(report["face_free"])   # the detectors, then what the reader keeps of the default's
    lines += ["", f"Share of these faces that took the second look (nothing found first): {report['second_look_share']:.1%}.", "",
              "| images with a face found, of face-free images | " + " | ".join(readers) + " |", "|---|" + "---|" * len(readers)]
    for key, count in free.items():
        lines.append(f"| {key} ({count}) | " + " | ".join(str(report["face_free"][name][key]) for name in readers) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-tone", type=int, default=100)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--hard-turn", type=float, default=35.0)
    parser.add_argument("--hard-side", type=int, default=64, help="landmark box side of the small-face scene")
    parser.add_argument("--aflw", default="../shared/data/aflw21")
    parser.add_argument("--free", type=int, default=200, help="images of each face-free kind")
    parser.add_argument("--yaw-only", action="store_true", help="only the faces found by head yaw")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.yaw_only and not Path(args.aflw).is_dir():
        raise SystemExit(f"{args.aflw}: no such folder (the AFLW 21 set, --aflw)")
    if Path(args.aflw).is_dir():
        yaws = yaw_recall(args.aflw, args.free)
        Path("benchmarks").mkdir(exist_ok=True)
        Path("benchmarks/detect_yaw.json").write_text(json.dumps(yaws, indent=2))
        replace_section(Path("BENCHMARKS.md"), "Faces found by head yaw", yaw_section(yaws, args))
    if args.yaw_only:
        return
    rng = np.random.default_rng(0)
    detectors = {name: get_detector(name) for name in DETECTORS}
    report = {"machine": machine(), "threads": 1, "detectors": list(DETECTORS)}

    tones = synthetic_by_tone(args.per_tone, rng)
    report["recall_by_tone"] = {name: [recall(d, tones[t]) for t in range(len(SKIN_TONES))] for name, d in detectors.items()}
    print("tones", report["recall_by_tone"])

    val = {}
    for key, (model_path, data_path) in MODELS.items():
        data = model_subset(load_dataset(data_path), open_model(model_path).info.split, "val")
        val[key] = (data, [(data.image(i), data.keypoints[i]) for i in range(len(data))])
    report["recall_val"] = {name: {key: recall(d, scenes) for key, (_, scenes) in val.items()} for name, d in detectors.items()}
    print("val", report["recall_val"])

    synth_plain = [face for faces in tones.values() for face in faces[:20]]
    report["recall_turned"] = {}
    for name, d in detectors.items():
        report["recall_turned"][name] = {
            f"{source} {angle}": recall(d, [turned(image, truth, angle) for image, truth in scenes])
            for source, scenes in (("synthetic", synth_plain), ("300w", val["300w"][1]))
            for angle in (0, 20, 40)}
    print("turned", report["recall_turned"])

    small = {side: [pasted(image, truth, side, np.random.default_rng(i)) for i, (image, truth) in enumerate(val["300w"][1])]
             for side in (32, 48, 72)}
    report["recall_small"] = {name: {str(side): recall(d, scenes) for side, scenes in small.items()}
                              for name, d in detectors.items()}
    report["recall_small"]["blazeface (no tiles)"] = {
        str(side): recall(get_detector("blazeface", tiles=False), scenes) for side, scenes in small.items()}
    print("small", report["recall_small"])

    with_face = [pasted(image, truth, 120, np.random.default_rng(i))[0] for i, (image, truth) in enumerate(val["300w"][1][:args.frames])]
    without = [background(np.random.default_rng(1000 + i)) for i in range(args.frames)]
    report["ms_per_frame"] = {name: {"face": frame_cost(d, with_face), "no face": frame_cost(d, without)}
                              for name, d in detectors.items()}
    report["ms_per_frame"]["blazeface, one tile a call (live)"] = {
        "face": frame_cost(get_detector("blazeface", tiles_per_call=1), with_face),
        "no face": frame_cost(get_detector("blazeface", tiles_per_call=1), without)}
    print("cost", report["ms_per_frame"])

    hard_rng = np.random.default_rng(7)
    report["nme"] = {}
    for key, (model_path, _) in MODELS.items():
        data, scenes = val[key]
        groups = data.persons
        sets = {"plain": scenes,
                f"turned {args.hard_turn:g}": [turned(image, truth, args.hard_turn * (1 if i % 2 else -1))
                                               for i, (image, truth) in enumerate(scenes)],
                f"small {args.hard_side} px": [pasted(image, truth, args.hard_side, hard_rng) for image, truth in scenes],
                "low light": [low_light(image, truth, hard_rng) for image, truth in scenes]}
        model = open_model(model_path, threads=1)
        rows = {}
        for scene, items in sets.items():
            per = {name: nme_of(Predictor(model, fallback="full", detector=d), items) for name, d in detectors.items()}
            row = {name: {"nme": float(np.nanmean(v)), "failure@0.08": float(np.mean(~(v <= 0.08))),
                          "unpredicted": int(np.isnan(v).sum())} for name, v in per.items()}
            row["blazeface - haar"] = paired_interval(per["haar"], per["blazeface"], groups)
            rows[scene] = row
            print(key, scene, row)
        report["nme"][key] = {"model": model_path, "images": len(scenes), "scenes": rows}

    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/detect.json").write_text(json.dumps(report, indent=2))
    write_section(report, args)


def write_section(report, args):
    names = report["detectors"]
    lines = [f"Command: `python scripts/bench_detect.py --per-tone {args.per_tone} --frames {args.frames}` on "
             f"{report['machine']}, one thread. Recall counts a detection whose centre lies in the face's landmark "
             "box and whose width is 0.5-2.5 times its side. Scenes come from the validation photos (persons the "
             "shipped models never trained on).", "",
             "| recall | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for tone in range(len(SKIN_TONES)):
        lines.append(f"| synthetic, skin tone {tone + 1} of 6 (lightest first), {args.per_tone} faces | "
                     + " | ".join(f"{report['recall_by_tone'][n][tone]:.2f}" for n in names) + " |")
    for key in MODELS:
        lines.append(f"| every {key} validation image | " + " | ".join(f"{report['recall_val'][n][key]:.3f}" for n in names) + " |")
    for scene in report["recall_turned"][names[0]]:
        lines.append(f"| {scene.replace('300w', 'real (300-W val)')} degrees turned | "
                     + " | ".join(f"{report['recall_turned'][n][scene]:.2f}" for n in names) + " |")
    for side in report["recall_small"][names[0]]:
        lines.append(f"| real face pasted into 640x480, landmark box {side} px | "
                     + " | ".join(f"{report['recall_small'][n][side]:.2f}" for n in names) + " |")
    lines.append("| the same without tiles (BlazeFace) | "
                 + ", ".join(f"{s} px {v:.2f}" for s, v in report["recall_small"]["blazeface (no tiles)"].items()) + " | |")
    cost = report["ms_per_frame"]
    lines += ["", "| ms per 640x480 frame (median, 1 thread) | " + " | ".join(names) + " | ratio |", "|---|" + "---|" * (len(names) + 1)]
    for case in ("face", "no face"):
        lines.append(f"| {case} | " + " | ".join(f"{cost[n][case]:.2f}" for n in names)
                     + f" | {cost['blazeface'][case] / cost['haar'][case]:.3f}x |")
    live = cost["blazeface, one tile a call (live)"]
    lines.append(f"| no face, BlazeFace reading one of the nine tiles per call (`tiles_per_call=1`, the live loop) | "
                 f"{live['no face']:.2f} | {cost['haar']['no face']:.2f} | {live['no face'] / cost['haar']['no face']:.3f}x |")
    lines += ["", "End-to-end NME of the shipped models (`.tflite`) with each detector (the path `kerakp evaluate` "
              "runs), and BlazeFace's change against Haar with its paired 95 % interval:", "",
              "| model | scene | " + " | ".join(f"{n} NME / FR@0.08" for n in names) + " | blazeface - haar |",
              "|---|---|" + "---|" * (len(names) + 1)]
    for key, entry in report["nme"].items():
        for scene, row in entry["scenes"].items():
            change = row["blazeface - haar"]
            lines.append(f"| {key} ({entry['images']} val) | {scene} | "
                         + " | ".join(f"{row[n]['nme']:.4f} / {row[n]['failure@0.08']:.3f}" for n in names)
                         + f" | {change['mean']:+.4f} ({change['low']:+.4f} to {change['high']:+.4f}) |")
    replace_section(Path("BENCHMARKS.md"), "Face detectors", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
