"""Export to TFLite / ONNX / SavedModel with parity checks, and one runtime for every format."""
import json

import numpy as np
import pytest

import kerakp.export as export
from kerakp.data.formats import load_dataset, write_dataset
from kerakp.data.images import read_image
from kerakp.errors import KerakpError
from kerakp.inference import Predictor
from kerakp.models.backbones import BACKBONES, build_backbone
from kerakp.models.landmark_model import LandmarkModel
from kerakp.runtime import LiteRTModel, OnnxModel, open_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.keras"
    LandmarkModel("simplecnn", "ibug68", 48, head_units=16, crop_scale=1.3,
                  box_calibration={"haar": {"dx": 0.0, "dy": 0.1, "scale": 0.9, "samples": 3}},
                  point_offsets=[[[0.01, -0.02]] * 68] * 2, upright=True).save(path)
    return path


@pytest.fixture(scope="module")
def exported(model_path):
    """The float TFLite and ONNX exports of the tiny model, made once."""
    return {fmt: export.export_model(model_path, fmt) for fmt in ("tflite", "onnx")}


def check_export(report, model_path, fmt):
    """The report names the placed file, its sidecar holds the report, parity holds and nothing is left staged."""
    out = model_path.with_name("tiny" + export.FORMATS[fmt].suffix)
    assert report["file"] == str(out) and out.exists()
    assert json.loads(out.with_name(out.name + ".json").read_text()) == {**report, "file": out.name}
    assert report["parity"]["max_abs_diff"] <= export.FLOAT_TOLERANCE and report["parity"]["shift_to_keras"] < 1e-5
    assert report["parity"]["source"] == "synthetic faces" and not report["parity"]["labels"]  # outputs compared only
    assert "nme_keras" not in report["parity"]
    assert report["model"]["schema"] == "ibug68" and report["model"]["crop_scale"] == 1.3
    assert not list(model_path.parent.glob(".kerakp-export-*"))
    assert np.allclose(open_model(out).predict_on_batch(np.zeros((2, 48, 48, 3), np.float32)),
                       open_model(model_path).predict_on_batch(np.zeros((2, 48, 48, 3), np.float32)), atol=1e-4)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_float_exports_match_keras(model_path, exported, fmt):
    check_export(exported[fmt], model_path, fmt)
    with pytest.raises(KerakpError, match=f"tiny{export.FORMATS[fmt].suffix}: already exists; .* pass --overwrite"):
        export.export_model(model_path, fmt)


@pytest.mark.slow
def test_overwrite_replaces_an_export(model_path, exported):
    report = export.export_model(model_path, "onnx", overwrite=True)
    check_export(report, model_path, "onnx")


@pytest.mark.slow
def test_a_savedmodel_export_matches_keras(model_path):
    check_export(export.export_model(model_path, "savedmodel"), model_path, "savedmodel")


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["float16", "dynamic", "int8"])
def test_quantized_tflite(model_path, exported, quantize, synthetic_csv):
    report = export.export_model(model_path, "tflite", quantize, calibration=synthetic_csv if quantize == "int8" else None)
    assert report["file"].endswith(f"tiny_{quantize}.tflite")
    assert report["size_bytes"] < 0.6 * exported["tflite"]["size_bytes"]
    assert report["parity"]["max_abs_diff"] < 0.05
    assert report["parity"]["labels"] == (quantize == "int8")   # NME against labels only where labels were given
    if quantize == "int8":
        assert report["parity"]["source"] == str(synthetic_csv) and abs(report["parity"]["nme_change"]) < 0.01


@pytest.mark.slow
def test_int8_without_calibration_takes_its_ranges_from_synthetic_faces(model_path, tmp_path):
    report = export.export_model(model_path, "tflite", "int8", out=tmp_path / "int8.tflite")
    parity = report["parity"]
    assert parity["source"] == "synthetic faces" and parity["crops"] == 200 and not parity["labels"]
    assert parity["shift_to_keras"] < export.QUANTIZED_SHIFT_TOLERANCE and "nme_change" not in parity


@pytest.mark.slow
def test_calibration_of_a_convertible_markup_is_carried_to_the_models(synthetic_csv, tmp_path):
    """A five-point model checked on iBUG-68 labels: they are converted to its markup and scored; labels that
    cannot be carried to it are refused in one line naming the user's file."""
    five, ibug = tmp_path / "five.keras", tmp_path / "ibug.keras"
    LandmarkModel("simplecnn", "five", 32, head_units=4).save(five)
    LandmarkModel("simplecnn", "ibug68", 32, head_units=4).save(ibug)
    parity = export.export_model(five, "onnx", calibration=synthetic_csv)["parity"]
    assert parity["labels"] and parity["source"] == str(synthetic_csv) and np.isfinite(parity["nme_keras"])
    five_csv = write_dataset(load_dataset(synthetic_csv), tmp_path / "five_set", "csv", markup="five", progress=False)
    with pytest.raises(KerakpError, match=f"^{five_csv}: markup five, but the model predicts ibug68"):
        export.export_model(ibug, "onnx", calibration=five_csv)
    assert not list(tmp_path.glob("ibug.onnx*"))


@pytest.mark.slow
def test_a_quantization_that_costs_accuracy_fails_and_writes_nothing(model_path, monkeypatch, tmp_path, synthetic_csv):
    monkeypatch.setattr(export, "QUANTIZED_SHIFT_TOLERANCE", -1.0)  # any change counts as ruin, without labels
    with pytest.raises(KerakpError, match=r"float16 quantization ruins this model \(its points lie .* crop sides from "
                                          r"the Keras model's on synthetic faces\); try --quantize dynamic or float16; "
                                          r"nothing written"):
        export.export_model(model_path, "tflite", "float16", out=tmp_path / "ruined.tflite")
    monkeypatch.setattr(export, "QUANTIZED_NME_TOLERANCE", -1.0)  # and with them
    with pytest.raises(KerakpError, match=rf"float16 quantization ruins this model \(crop NME .* on {synthetic_csv}\)"):
        export.export_model(model_path, "tflite", "float16", out=tmp_path / "ruined.tflite", calibration=synthetic_csv)
    assert list(tmp_path.iterdir()) == []


def test_every_format_runs_the_same_predictor(model_path, exported, synthetic_set):
    images = [read_image(p) for p in synthetic_set.paths[:4]]
    truths = list(synthetic_set.keypoints[:4])
    results = {}
    for name in ("tiny.keras", "tiny.tflite", "tiny.onnx"):
        predictor = Predictor(model_path.with_name(name), box="oracle", passes=2)
        assert predictor.crop_scale == 1.3 and predictor.info.box_calibration["haar"]["dy"] == 0.1
        assert np.allclose(predictor.offsets, [0.01, -0.02])   # the sidecar carries the fitted offsets
        assert predictor.upright   # and the crop rule
        results[name] = np.stack([r.points for r in predictor.predict_batch(images, truths)])
    assert np.abs(results["tiny.tflite"] - results["tiny.keras"]).max() < 1e-2
    assert np.abs(results["tiny.onnx"] - results["tiny.keras"]).max() < 1e-2
    assert isinstance(open_model(model_path.with_name("tiny.tflite")), LiteRTModel)
    assert isinstance(open_model(model_path.with_name("tiny.onnx")), OnnxModel)


@pytest.mark.slow
def test_a_failed_parity_check_writes_nothing(model_path, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "FLOAT_TOLERANCE", -1.0)
    out = tmp_path / "never.tflite"
    with pytest.raises(KerakpError, match="never.tflite: parity check failed"):
        export.export_model(model_path, "tflite", out=out)
    assert list(tmp_path.iterdir()) == []


def test_export_errors(model_path, exported, tmp_path):
    with pytest.raises(KerakpError, match="--quantize float16 is not for onnx"):
        export.export_model(model_path, "onnx", "float16")
    with pytest.raises(KerakpError, match="absent.keras: model file not found"):
        export.export_model(tmp_path / "absent.keras")
    lonely = tmp_path / "lonely.tflite"
    lonely.write_bytes(model_path.with_name("tiny.tflite").read_bytes())
    with pytest.raises(KerakpError, match="no lonely.tflite.json beside it"):
        open_model(lonely)
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(KerakpError, match="unknown model format"):
        open_model(tmp_path / "m.pt")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(f for f, spec in export.FORMATS.items() if spec.export is None))   # the web
@pytest.mark.parametrize("backbone", sorted(BACKBONES))      # page runs the TFLite file this checks (tests/test_web.py)
def test_every_backbone_exports_to_every_format_with_parity(tmp_path, backbone, fmt):
    """The export table covers every backbone: EfficientNetV2B0's preprocessing is kerakp's own layer, whose
    constants ONNX keeps as constants (its built-in layers became extra graph inputs). Each backbone is cut at
    stride 16, which keeps every kind of layer it has (the next test) at a third of the weights or less, and the
    converters' time goes with the weights."""
    path = tmp_path / f"{backbone}.keras"
    LandmarkModel(backbone, "ibug68", 32, head_units=4, backbone_stride=16).save(path)
    report = export.export_model(path, fmt)
    assert report["parity"]["max_abs_diff"] <= export.FLOAT_TOLERANCE
    assert open_model(report["file"]).predict_on_batch(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 136)


@pytest.mark.slow
def test_a_backbone_cut_at_stride_16_keeps_every_kind_of_layer():
    def kinds(model):
        return {type(layer).__name__ for layer in model.layers}

    for name in BACKBONES:
        assert kinds(build_backbone(name, 32, stride=16)) == kinds(build_backbone(name, 32)), name


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_heatmap_head_exports_with_parity(tmp_path, fmt):
    path = tmp_path / "heat.keras"
    LandmarkModel("simplecnn", "ibug68", 64, head="heatmap").save(path)
    report = export.export_model(path, fmt)
    assert report["parity"]["max_abs_diff"] <= export.FLOAT_TOLERANCE and report["model"]["head"] == "heatmap"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_a_compact_student_exports_with_parity(tmp_path, fmt):
    path = tmp_path / "student.keras"
    LandmarkModel("mobilenetv2", "ibug68", 64, head_units=32, head="light", backbone_stride=16, heatmap_stride=8,
                  upright=True).save(path)
    report = export.export_model(path, fmt)
    assert report["parity"]["max_abs_diff"] <= export.FLOAT_TOLERANCE and report["model"]["head"] == "light"


def head_and_backbone_types(path, head_layers) -> tuple[set, set]:
    """The dtypes of a TFLite file's tensors made by the head's layers and by the rest (the backbone)."""
    from ai_edge_litert.interpreter import Interpreter

    head, rest = set(), set()
    for tensor in Interpreter(model_path=str(path)).get_tensor_details():
        (head if any(f"/{name}_" in tensor["name"] for name in head_layers) else rest).add(tensor["dtype"].__name__)
    return head, rest


def test_int8_float_head_quantizes_the_backbone_and_keeps_the_head_float(tmp_path, synthetic_set):
    from kerakp.api import Landmarker

    path = tmp_path / "heat.keras"
    model = LandmarkModel("simplecnn", "ibug68", 48, head="heatmap", head_units=64)
    model.save(path)
    report = export.export_model(path, "tflite", "int8-float-head")
    out = tmp_path / "heat_int8-float-head.tflite"
    assert report["file"] == str(out) and json.loads(out.with_name(out.name + ".json").read_text())["quantize"] == "int8-float-head"
    assert report["parity"]["crops"] == 200 and report["parity"]["shift_to_keras"] < export.QUANTIZED_SHIFT_TOLERANCE
    head, backbone = head_and_backbone_types(out, export.head_layers(model))
    assert "int8" in backbone and "float32" in head and "int8" not in head
    faces = Landmarker(out, box="full").predict(read_image(synthetic_set.paths[0]))
    assert len(faces) == 1 and faces[0].points.shape == (68, 2) and np.isfinite(faces[0].points).all()


@pytest.mark.slow
def test_int8_float_head_keeps_a_regression_head_float_too(model_path, tmp_path):
    report = export.export_model(model_path, "tflite", "int8-float-head", out=tmp_path / "reg.tflite")
    assert report["parity"]["shift_to_keras"] < export.QUANTIZED_SHIFT_TOLERANCE
    head, backbone = head_and_backbone_types(tmp_path / "reg.tflite", ["pool", "head_dense", "keypoints"])
    assert "int8" in backbone and "int8" not in head


def test_a_head_that_cannot_be_told_apart_is_refused_in_one_line():
    import keras

    flat = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()])
    with pytest.raises(KerakpError, match=r"^its head cannot be told apart from its backbone .*; try --quantize int8$"):
        export.head_layers(flat)
    with pytest.raises(KerakpError, match=r"--quantize int8-float-head is not for onnx"):
        export.export_model("tiny.keras", "onnx", "int8-float-head")
