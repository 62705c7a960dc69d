"""`kerakp export MODEL --format web`: a static page that runs a model live in the browser, offline, and
`serve`, which serves such a folder on 127.0.0.1.

The page (kerakp/assets/web/: index.html and one ES module per stage in app/) runs LiteRT.js (vendored in
kerakp/assets/web/vendor/ by scripts/vendor_web.py) on the model's `.tflite` file as it is, and on BlazeFace. It
follows kerakp's own path (detector -> calibrated box -> crop -> model -> decode -> offsets -> image pixels, the
tracker and its One Euro filters), and every number it needs comes from `kerakp.json`, which `page_settings`
writes from the Python it mirrors: Python stays the one source of truth.
"""
from __future__ import annotations

import inspect
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np

from kerakp.errors import KerakpError

PAGE = "assets/web"                 # the page's files inside the package
LANDMARKS, DETECTOR, FULL_RANGE = "models/landmarks.tflite", "models/blazeface.tflite", "models/blazeface_full.tflite"
VIDEO_FPS = 30.0                    # the frame rate a dropped video is stepped at, frame by frame
CUSTOM_OP = 32                      # BuiltinOperator.CUSTOM: an op LiteRT.js does not have (Flex, custom kernels)


def _defaults(function) -> dict:
    """A function's (or class's) keyword defaults: the page takes Python's settings, not copies of them."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def page_settings(info, name: str) -> dict:
    """Every number the page needs, from the model's info and the defaults of the Python path it mirrors
    (`Predictor`, whose passes and turn `Landmarker` keeps, `BlazeFaceDetector` and its second look,
    `FaceTracker`, `OneEuroFilter`, `Face.visible`)."""
    from kerakp.analysis import pose_points, visibility_table
    from kerakp.detect import BLAZEFACE_FULL, BLAZEFACE_SHORT, BlazeFaceDetector, ssd_anchors
    from kerakp.inference import REJECT, Predictor
    from kerakp.results import SEEN, Columns, table_columns
    from kerakp.data.geometry import FRONTAL_NORM
    from kerakp.tracking import (HELD_SIDE, MIN_SIDE, MIN_WINDOW, NEAR_AGREE, NEAR_WINDOW, NEW_FACE_PASSES,
                                 SAME_PLACE_IOU, SIZE_JUMP, FaceTracker, OneEuroFilter)

    schema, predictor = info.schema, _defaults(Predictor)
    blazeface, tracker = _defaults(BlazeFaceDetector), _defaults(FaceTracker)
    offsets = np.asarray(info.point_offsets, np.float64) if info.point_offsets else np.zeros((2, schema.num_points, 2))
    try:
        index, model = pose_points(schema)
        pose = {"index": list(index), "model": np.asarray(model).tolist(),
                "nose": schema.parts["nose_tip"][0] if "nose_tip" in schema.parts else None}
    except KerakpError:   # a markup without the points a pose needs: no axes drawn
        pose = None
    calibration = info.box_calibration.get(BlazeFaceDetector.name) or BlazeFaceDetector.default_calibration.to_dict()
    full = ({"file": FULL_RANGE, "size": BLAZEFACE_FULL.size, "anchors": ssd_anchors(BLAZEFACE_FULL.size, BLAZEFACE_FULL.layers).tolist()}
            if needs_full_range(info) else None)
    seen = schema.name == "ibug68" and pose is not None   # `Face.visible`'s model is iBUG 68's, from the head pose
    return {
        "model": {"name": name, "file": LANDMARKS, "markup": schema.name, "num_points": schema.num_points,
                  "input_size": info.crop.size, "crop_scale": info.crop.scale, "upright": info.crop.upright,
                  "whole_image": info.crop.whole_image, "flip": list(schema.flip),
                  "norm": list(schema.norm) if schema.norm else None, "offsets": offsets.tolist(),
                  "point_spread": list(info.point_spread)},
        "predict": {"passes": predictor["passes"], "turn": predictor["turn"], "overlap": predictor["overlap"],
                    "max_roll": predictor["max_roll"], "dark": predictor["dark"], "frontal_norm": FRONTAL_NORM,
                    "reject": REJECT},
        "detector": {"file": DETECTOR, "size": BLAZEFACE_SHORT.size,
                     "anchors": ssd_anchors(BLAZEFACE_SHORT.size, BLAZEFACE_SHORT.layers).tolist(),
                     "min_score": blazeface["min_score"], "iou": blazeface["iou"], "tiles": blazeface["tiles"],
                     "sure": blazeface["sure"], "calibration": calibration, "second_look": blazeface["second_look"],
                     "agree": blazeface["agree"], "floor": blazeface["floor"],
                     "turned_looks": list(blazeface["turned_looks"]), "full": full},
        "track": {"redetect_every": tracker["redetect_every"], "max_faces": tracker["max_faces"],
                  "reject": tracker["reject"], "mirror": tracker["mirror"], "min_cutoff": tracker["min_cutoff"],
                  "beta": tracker["beta"], "d_cutoff": _defaults(OneEuroFilter)["d_cutoff"],
                  "tiles_per_call": 1,     # FaceTracker's detector reads one tile per empty frame
                  "new_face_passes": NEW_FACE_PASSES, "near_window": NEAR_WINDOW, "near_agree": NEAR_AGREE,
                  "same_place_iou": SAME_PLACE_IOU, "min_side": MIN_SIDE,
                  "size_jump": list(SIZE_JUMP), "min_window": MIN_WINDOW, "held_side": list(HELD_SIDE)},
        "pose": pose,
        "visibility": {"table": visibility_table().tolist(), "seen": SEEN} if seen else None,
        "columns": table_columns(schema.name, Columns(visibility=seen)),
        "video_fps": VIDEO_FPS,
    }


def needs_full_range(info) -> bool:
    """Whether the page runs the full-range BlazeFace: in the detector's second look, for a model that reads
    detected faces (so only then is the file shipped)."""
    from kerakp.detect import BlazeFaceDetector

    return not info.crop.whole_image and _defaults(BlazeFaceDetector)["second_look"]


def check_runnable(path: Path, info) -> None:
    """One line for a `.tflite` file the page could not run: an op LiteRT.js lacks (Flex or custom), or an
    input or output other than float32 (N, S, S, 3) crops and (N, 2K) points."""
    from ai_edge_litert import schema_py_generated as tflite

    from kerakp.runtime import litert_interpreter

    graph = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    for k in range(graph.OperatorCodesLength()):
        code = graph.OperatorCodes(k)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == CUSTOM_OP:
            raise KerakpError(f"{path}: uses the op '{(code.CustomCode() or b'?').decode()}', which LiteRT.js (the page's "
                              "runtime) does not have; export the .keras model to TFLite without select TF ops")
    interpreter = litert_interpreter(path)
    (given,), outputs = interpreter.get_input_details(), interpreter.get_output_details()
    size, points = info.crop.size, info.schema.num_points
    if (given["dtype"] != np.float32 or list(given["shape"][1:]) != [size, size, 3] or len(outputs) != 1
            or outputs[0]["dtype"] != np.float32 or list(outputs[0]["shape"][1:]) != [2 * points]):
        raise KerakpError(f"{path}: takes {given['dtype'].__name__} {list(given['shape'])} and gives "
                          f"{[list(o['shape']) for o in outputs]}; the page runs float32 [1, {size}, {size}, 3] crops "
                          f"to [1, {2 * points}] points (export without int8 input/output)")


def fixed_batch(data: bytes) -> bytes:
    """A `.tflite` file's bytes with its free batch size (-1 in the tensors' shape signatures) set to 1, where
    its shapes already hold it: LiteRT.js runs fixed shapes only, and the page reads one crop at a time."""
    from ai_edge_litert import schema_py_generated as tflite

    patched = bytearray(data)
    graph = tflite.Model.GetRootAsModel(patched, 0)
    for s in range(graph.SubgraphsLength()):
        subgraph = graph.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            for j in range(tensor.ShapeSignatureLength()):
                if tensor.ShapeSignature(j) == -1:
                    where = tensor._tab.Vector(tensor._tab.Offset(18)) + 4 * j   # Tensor.shape_signature's entry j
                    patched[where:where + 4] = np.int32(1).tobytes()
    return bytes(patched)


def write_page(model, out=None, overwrite: bool = False, name: str | None = None) -> dict:
    """Write the page of `model` (a preset name or a `.tflite` export with its sidecar) into the folder `out`
    (default: `<name>_web` beside the model, or here for a preset), whole or not at all; returns the report:
    the landmark file's own parity check (from its sidecar) and the folder's size."""
    from kerakp.detect import BLAZEFACE_FULL, BLAZEFACE_SHORT, blazeface_file
    from kerakp.io import refuse_existing, replacing
    from kerakp.runtime import ExportedModel, sidecar_of
    from kerakp.zoo import model_path, presets

    source = model_path(model)
    packaged = {p.path.resolve(): p.name for p in presets().values()}
    preset = packaged.get(source.resolve())   # by its name or its file (`Landmarker("300w-fast").export("web")`)
    name = name or preset or source.stem
    if not source.exists():
        raise KerakpError(f"{source}: model file not found")
    if source.is_dir() or source.suffix.lower() != ".tflite":
        raise KerakpError(f"{source}: the web page runs .tflite files (LiteRT.js); give the .keras model or its "
                          ".tflite export")
    out = Path(out) if out else (Path(f"{name}_web") if preset else source.with_name(f"{name}_web"))
    refuse_existing(out, overwrite)
    info = ExportedModel(source).info
    check_runnable(source, info)
    report = json.loads(sidecar_of(source).read_text())
    with replacing(out.absolute(), folder=True) as staging:
        staging = Path(staging)
        shutil.copytree(Path(str(resources.files("kerakp") / PAGE)), staging, dirs_exist_ok=True)
        (staging / LANDMARKS).parent.mkdir()
        (staging / LANDMARKS).write_bytes(fixed_batch(source.read_bytes()))
        with resources.as_file(blazeface_file(BLAZEFACE_SHORT.file)) as detector:
            shutil.copyfile(detector, staging / DETECTOR)
        if needs_full_range(info):
            with resources.as_file(blazeface_file(BLAZEFACE_FULL.file)) as detector:
                shutil.copyfile(detector, staging / FULL_RANGE)
        (staging / "kerakp.json").write_text(json.dumps(page_settings(info, name)))
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
    return {"format": "web", "quantize": report.get("quantize", "none"), "file": str(out.absolute()),
            "size_bytes": size, "parity": report["parity"], "model": report["model"]}


def serve(folder, port: int = 8000, host: str = "127.0.0.1"):
    """An HTTP server (not yet serving: call `serve_forever`) of `folder` on `host`:`port`, with the headers that
    let the page use WebAssembly threads (cross-origin isolation) and no caching of its JSON."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = Path(folder)
    if not (folder / "index.html").is_file() or not (folder / "kerakp.json").is_file():
        raise KerakpError(f"{folder}: not a page written by `kerakp export --format web` (no index.html and kerakp.json)")

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".wasm": "application/wasm"}

        def end_headers(self):
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cache-Control", "no-cache")
            super().end_headers()

        def log_message(self, *args):   # quiet: the command prints the address once
            pass

    try:
        return ThreadingHTTPServer((host, port), partial(Handler, directory=str(folder)))
    except OSError as err:
        raise KerakpError(f"cannot serve on {host}:{port} ({err.strerror}); choose another --port") from None
