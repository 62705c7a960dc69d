"""Backbones build and train a step, the model saves and loads with its metadata, weights options fail clearly."""
import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS

from kerakp.data.sequence import KeypointSequence
from kerakp.errors import KerakpError
from kerakp.model_info import CropRule
from kerakp.models.backbones import BACKBONES, build_backbone
from kerakp.models.custom import CropNME, MaskedKeypointLoss, SoftArgmax
from kerakp.models.heads import HEADS
from kerakp.models.landmark_model import LandmarkModel


def _compiled(backbone: str, size: int, lr: float = 1e-3, head: str = "regression", eager: bool = False) -> LandmarkModel:
    keras.utils.set_random_seed(0)
    model = LandmarkModel(backbone, "ibug68", size, head_units=32, dropout=0.0, head=head)
    model.compile(keras.optimizers.Adam(lr), MaskedKeypointLoss("huber"), metrics=[CropNME()], run_eagerly=eager)
    return model


@pytest.mark.parametrize("backbone", [b if b == "simplecnn" else pytest.param(b, marks=pytest.mark.slow) for b in sorted(BACKBONES)])
def test_every_backbone_builds_and_takes_a_training_step(backbone, synthetic_set):
    """The step runs eagerly: tracing it into a graph, which costs far more than the step, is what every test
    that trains covers."""
    model = _compiled(backbone, 32, eager=True)
    crops, targets = KeypointSequence(synthetic_set, CropRule(32), batch_size=4)[0]
    loss = model.train_on_batch(crops, targets, return_dict=True)["loss"]
    assert np.isfinite(loss)
    assert model.predict_on_batch(crops).shape == (4, 136)


@pytest.mark.parametrize("head", [h if h == "regression" else pytest.param(h, marks=pytest.mark.slow) for h in sorted(HEADS)])
def test_training_lowers_the_loss(synthetic_set, head):
    model = _compiled("simplecnn", 48, lr=1e-2, head=head)
    crops, targets = KeypointSequence(synthetic_set, CropRule(48), batch_size=16)[0]
    first = model.evaluate(crops, targets, verbose=0, return_dict=True)["loss"]
    for _ in range(30):  # measured: 0.0018 -> 0.0005 in 30 steps
        model.train_on_batch(crops, targets)
    assert model.evaluate(crops, targets, verbose=0, return_dict=True)["loss"] < 0.5 * first


def test_saved_model_carries_its_metadata_and_predictions(tmp_path, synthetic_set):
    model = LandmarkModel("resnet18", "ibug68", 32, head_units=16, crop_scale=1.3,
                          box_calibration={"haar": {"dx": 0.01, "dy": 0.1, "scale": 0.8, "samples": 5}},
                          split={"val_fraction": 0.2, "seed": 1})
    crops, _ = KeypointSequence(synthetic_set, CropRule(32), batch_size=4)[0]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert isinstance(loaded, LandmarkModel)
    assert (loaded.backbone_name, loaded.schema_name, loaded.input_size, loaded.crop_scale) == ("resnet18", "ibug68", 32, 1.3)
    assert loaded.box_calibration["haar"]["scale"] == 0.8 and loaded.split["seed"] == 1
    assert np.abs(loaded.predict_on_batch(crops) - model.predict_on_batch(crops)).max() < 1e-5


def test_unknown_backbone_and_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(KerakpError, match="unknown backbone 'vgg7'.*known: mobilenetv2"):
        build_backbone("vgg7", 32)
    with pytest.raises(KerakpError, match="no ImageNet weights exist for 'resnet18'"):
        build_backbone("resnet18", 32, "imagenet")
    with pytest.raises(KerakpError, match="weights file not found: .*nothing.h5"):
        build_backbone("mobilenetv2", 32, str(tmp_path / "nothing.h5"))
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(KerakpError, match="junk.weights.h5: does not fit backbone 'simplecnn'"):
        build_backbone("simplecnn", 32, str(tmp_path / "junk.weights.h5"))

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(KerakpError, match="could not download ImageNet weights for 'mobilenetv2'.*--weights PATH"):
        build_backbone("mobilenetv2", 32, "imagenet")


def test_local_imagenet_weights_load():
    path = SHARED_WEIGHTS / "mobilenetv2_1.0_imagenet_notop.weights.h5"
    if not path.is_file():
        pytest.skip(f"offline MobileNetV2 weights not available: {path} is absent")
    model = build_backbone("mobilenetv2", 64, str(path))
    reference = keras.applications.MobileNetV2(input_shape=(64, 64, 3), include_top=False, weights=None)
    reference.load_weights(str(path))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert bn.momentum == 0.9 and bn.trainable
    frozen = build_backbone("mobilenetv2", 64, str(path), freeze_bn=True)
    assert not any(layer.trainable for layer in frozen.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_masked_losses_by_hand():
    y_true = np.array([[0.5, 0.5, np.nan, np.nan]], dtype="float32")
    y_pred = np.array([[0.52, 0.5, 9.0, -9.0]], dtype="float32")
    assert float(MaskedKeypointLoss("mse")(y_true, y_pred)) == pytest.approx(0.02 ** 2 / 2, rel=1e-4)
    # Huber, delta 0.01: the 0.02 error is in the linear part: 0.01 * (0.02 - 0.005)
    assert float(MaskedKeypointLoss("huber", delta=0.01)(y_true, y_pred)) == pytest.approx(0.01 * 0.015 / 2, rel=1e-4)
    wing = MaskedKeypointLoss("wing", wing_w=0.05, wing_epsilon=0.01)
    assert float(wing(y_true, y_pred)) == pytest.approx(0.05 * np.log(1 + 0.02 / 0.01) / 2, rel=1e-4)
    with pytest.raises(KerakpError, match="unknown loss 'l3'"):
        MaskedKeypointLoss("l3")


def test_crop_nme_by_hand():
    truth = np.zeros((1, 68, 2), "float32")
    truth[0, 45] = [0.4, 0.0]  # normaliser: outer eye corners 0.4 apart
    pred = truth.copy()
    pred[0, 0] = [0.0, 0.04]   # one point off by 0.04: NME = 0.04 / 68 / 0.4
    metric = CropNME()
    metric.update_state(truth.reshape(1, -1), pred.reshape(1, -1))
    assert float(metric.result()) == pytest.approx(0.04 / 68 / 0.4, rel=1e-4)


def test_soft_argmax_decodes_a_peak_to_its_sub_pixel_position():
    height = width = 8
    logits = np.full((1, height, width, 2), -50.0, np.float32)
    logits[0, 2, 5, 0] = 10.0                        # one peaked cell: its centre
    logits[0, 6, 1, 1] = logits[0, 6, 2, 1] = 10.0   # two equal cells: halfway between their centres
    out = np.asarray(SoftArgmax()(logits))[0]
    assert np.allclose(out, [5.5 / 8, 2.5 / 8, 2.0 / 8, 6.5 / 8], atol=1e-5)
    flat = np.asarray(SoftArgmax()(np.zeros((1, height, width, 1), np.float32)))[0]
    assert np.allclose(flat, [0.5, 0.5])             # untrained: the crop centre, like the regression bias


def test_local_decoding_ignores_a_far_second_peak_and_the_shape_term_scores_a_gaussian_map_zero():
    height = width = 8
    logits = np.full((1, height, width, 1), -50.0, np.float32)
    logits[0, 2, 5, 0], logits[0, 6, 1, 0] = 10.0, 9.0          # the peak and a weaker one far from it
    whole = np.asarray(SoftArgmax()(logits))[0]
    local = np.asarray(SoftArgmax(window=1)(logits))[0]
    assert np.allclose(local, [5.5 / 8, 2.5 / 8], atol=1e-5) and whole[1] > 0.4   # the whole map is pulled down
    rows, cols = np.mgrid[0:height, 0:width]
    gaussian = (-((cols - 3.5) ** 2 + (rows - 3.5) ** 2) / (2 * 1.5 ** 2))[None, :, :, None].astype("float32")
    losses = []
    for maps in (gaussian, np.zeros_like(gaussian)):
        layer = SoftArgmax(spread=1.5, weight=2.0)
        layer(maps, training=True)
        losses += [float(v) for v in layer.losses]
    assert losses[0] == pytest.approx(0.0, abs=1e-5) and losses[1] > 0.5   # the Gaussian itself; a flat map
    layer = SoftArgmax(spread=1.5, weight=2.0)
    layer(gaussian, training=False)
    assert not layer.losses                                       # inference adds no loss


def test_the_contour_loss_counts_sliding_along_a_line_less_than_leaving_it():
    from kerakp.models.losses import contour_neighbours
    from kerakp.schemas import get_schema

    neighbours = contour_neighbours(get_schema("ibug68"))
    assert neighbours[0] == [0, 1] and neighbours[8] == [7, 9] and neighbours[36] == []   # jaw ends, middle; an eye
    truth = np.random.default_rng(0).random((1, 68, 2)).astype("float32")
    truth[0, 7:10] = [[0.3, 0.5], [0.4, 0.5], [0.5, 0.5]]           # the chin on a level line
    loss = MaskedKeypointLoss("mse", contours=neighbours, along=0.5)
    slide, leave = truth.copy(), truth.copy()
    slide[0, 8, 0] += 0.02
    leave[0, 8, 1] += 0.02
    full = 0.02 ** 2 / 136
    assert float(loss(truth.reshape(1, -1), slide.reshape(1, -1))) == pytest.approx(full / 4, rel=1e-3)
    assert float(loss(truth.reshape(1, -1), leave.reshape(1, -1))) == pytest.approx(full, rel=1e-3)
    assert float(MaskedKeypointLoss("mse")(truth.reshape(1, -1), slide.reshape(1, -1))) == pytest.approx(full, rel=1e-3)


def test_heatmap_head_saves_loads_and_reaches_a_quarter_of_the_input(tmp_path):
    model = LandmarkModel("mobilenetv2", "ibug68", 64, head="heatmap")
    assert model.get_layer("heatmaps").output.shape[1:] == (16, 16, 68)
    model.save(tmp_path / "heat.keras")
    loaded = keras.models.load_model(tmp_path / "heat.keras")
    crops = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assert loaded.head == "heatmap" and np.allclose(loaded.predict_on_batch(crops), model.predict_on_batch(crops), atol=1e-6)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_unet_head_adds_a_skip_at_every_upsampling_step_of_every_backbone(backbone):
    model = LandmarkModel(backbone, "ibug68", 64, head="unet")
    names = [layer.name for layer in model.layers]
    steps = [name for name in names if name.startswith("heat_up")]
    assert steps and len([name for name in names if name.startswith("heat_skip")]) == len(steps)
    assert model.get_layer("heatmaps").output.shape[1:] == (16, 16, 68)


@pytest.mark.slow
def test_unet_head_started_from_a_heatmap_model_predicts_what_it_did(tmp_path):
    from kerakp.train import start_from

    keras.utils.set_random_seed(1)
    heatmap = LandmarkModel("mobilenetv2", "ibug68", 64, head="heatmap")
    heatmap.save(tmp_path / "heat.keras")
    unet = LandmarkModel("mobilenetv2", "ibug68", 64, head="unet")
    copied = start_from(unet, tmp_path / "heat.keras")
    assert copied == len(heatmap.weights) < len(unet.weights)   # all of it; the skips' projections are new
    crops = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assert np.allclose(unet.predict_on_batch(crops), heatmap.predict_on_batch(crops), atol=1e-6)  # skips start silent
    unet.save(tmp_path / "unet.keras")
    loaded = keras.models.load_model(tmp_path / "unet.keras")
    assert loaded.head == "unet" and np.allclose(loaded.predict_on_batch(crops), unet.predict_on_batch(crops), atol=1e-6)
    with pytest.raises(KerakpError, match="has backbone 'mobilenetv2', this run trains 'simplecnn'"):
        start_from(LandmarkModel("simplecnn", "five", 64), tmp_path / "heat.keras")


def test_a_compact_student_cuts_the_backbone_and_inherits_its_layers_from_a_full_model(tmp_path):
    from kerakp.train import start_from

    full = LandmarkModel("mobilenetv2", "ibug68", 64, head_units=32, head="unet")
    student = LandmarkModel("mobilenetv2", "ibug68", 48, head_units=64, head="light", backbone_stride=16, heatmap_stride=8)
    backbone = student.layers[2]
    assert backbone.output.shape[1:] == (3, 3, 576) and backbone.layers[-1].name == "block_13_expand_relu"
    assert student.get_layer("heatmaps").output.shape[1:3] == (6, 6)   # 1/8 of the input
    full.save(tmp_path / "full.keras")
    copied = start_from(student, tmp_path / "full.keras")
    assert copied == len(backbone.weights) + 1   # every backbone tensor, of the head only the maps' bias (one per point)
    assert np.array_equal(student.get_layer(backbone.name).get_layer("block_13_expand").kernel.numpy(),
                          full.layers[2].get_layer("block_13_expand").kernel.numpy())
    narrow = LandmarkModel("mobilenetv2", "ibug68", 48, head_units=16, head="light", backbone_stride=16, width=0.5)
    assert narrow.layers[2].output.shape[-1] == 288 and narrow.count_params() < student.count_params() / 2
    with pytest.raises(KerakpError, match="is built at width 1.0, not 0.5"):
        LandmarkModel("resnet18", "ibug68", 48, width=0.5)
