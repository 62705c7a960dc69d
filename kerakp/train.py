"""`train`: fit a landmark model on a labelled set with a person-wise validation split.

A run folder holds `model.keras` (best validation loss), `last.keras` (for `--resume`), `history.csv`,
`training_curves.png` and the `config.yaml` that was used.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import yaml

from kerakp.config import TrainConfig
from kerakp.data.augment import Augment
from kerakp.data.geometry import whole_image_box
from kerakp.data.readers import LandmarkSet, join_sets, load_dataset, split_by_person
from kerakp.data.sequence import KeypointSequence
from kerakp.detect import HaarDetector, fit_box_calibration
from kerakp.errors import KerakpError
from kerakp.models.landmark_model import LandmarkModel
from kerakp.models.losses import CropNME, MaskedKeypointLoss
from kerakp.plots import plot_history
from kerakp.schemas import get_schema


def _sample(data: LandmarkSet, count: int, seed: int, desc: str, progress: bool):
    """Up to `count` training images (decoded as they are consumed, with a progress bar) and their keypoints;
    the same `seed` picks the same images."""
    from tqdm import tqdm

    chosen = np.random.default_rng(seed).permutation(len(data))[:count]
    return (data.image(i) for i in tqdm(chosen, desc=desc, disable=not progress, unit="img")), data.keypoints[chosen]


def calibrate_detector(data: LandmarkSet, count: int, seed: int, progress: bool = True) -> dict:
    """Fit the Haar-box -> landmark-box mapping on up to `count` training images."""
    if count <= 0:
        return {}
    detector = HaarDetector()
    calibration = fit_box_calibration(detector, *_sample(data, count, seed, "fitting detector boxes", progress))
    return {detector.name: calibration.to_dict()}


def calibrate_points(model, data: LandmarkSet, count: int, seed: int, progress: bool = True) -> list:
    """Fit a trained model's output offsets (`fit_point_offsets`) on up to `count` training images."""
    from kerakp.inference import fit_point_offsets

    if count <= 0:
        return []
    return fit_point_offsets(model, *_sample(data, count, seed, "fitting point offsets", progress))


def prepare(data: LandmarkSet, config: TrainConfig) -> LandmarkSet:
    """The set as the recipe trains on it: converted to `config.markup`, and with whole-image face boxes
    when `config.face_box` is `image`."""
    if config.markup:
        data = data.as_markup(get_schema(config.markup))
    if config.face_box == "image":
        boxes = [whole_image_box(*data.image(i).shape[:2], config.crop_scale) for i in range(len(data))]
        data = replace(data, boxes=np.stack(boxes))
    elif data.schema.norm is None:
        raise KerakpError(f"markup '{data.schema.name}' has one point, too few to crop around; set face_box: image")
    return data


def extra_sets(config: TrainConfig, schema) -> list[LandmarkSet]:
    """The recipe's `extra_data` sets, prepared like the main set and in its markup."""
    sets = []
    for path in config.extra_data:
        extra = prepare(load_dataset(path), config)
        try:
            sets.append(extra.as_markup(schema))
        except KerakpError as err:
            raise KerakpError(f"{path}: markup {extra.schema.name}, this run trains {schema.name} ({err})") from None
    return sets


def start_from(model: keras.Model, path) -> int:
    """Copy a trained model's weights into `model` wherever a variable's path (layer/name) and shape match:
    a new head on a trained backbone, or the same model at another input size. Returns the count copied."""
    from kerakp.runtime import open_model

    source = open_model(path)
    if not isinstance(source, keras.Model):
        raise KerakpError(f"{path}: --init needs a .keras model (exported files hold no trainable weights)")
    if source.backbone_name != model.backbone_name:
        raise KerakpError(f"{path}: has backbone '{source.backbone_name}', this run trains '{model.backbone_name}'")
    trained = {v.path: v for v in source.weights}
    copied = 0
    for variable in model.weights:
        match = trained.get(variable.path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(match.value)
            copied += 1
    return copied


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * (0.1 if warmup else 1.0), decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, clipnorm=config.clipnorm)
    loss = MaskedKeypointLoss(config.loss, delta=config.huber_delta)
    model.compile(optimizer=optimizer, loss=loss, metrics=[CropNME(model.schema.norm)])


def _callbacks(out: Path, config: TrainConfig, monitor: str, resume: bool) -> list:
    # a resumed run only replaces model.keras when it beats every earlier epoch
    best = float(pd.read_csv(out / "history.csv")[monitor].min()) if resume else None
    callbacks = [
        keras.callbacks.ModelCheckpoint(out / "model.keras", monitor=monitor, save_best_only=True, initial_value_threshold=best),
        keras.callbacks.ModelCheckpoint(out / "last.keras"),
        keras.callbacks.CSVLogger(out / "history.csv", append=resume),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, restore_best_weights=True),
    ]
    if config.tensorboard:
        if importlib.util.find_spec("tensorflow") is None:
            raise KerakpError("--tensorboard writes TensorFlow event files and needs TensorFlow installed")
        callbacks.append(keras.callbacks.TensorBoard(out / "tensorboard"))
    return callbacks


def save_for_inference(model: LandmarkModel, path) -> None:
    """Save weights and metadata without the optimizer state (which would triple the file)."""
    clean = LandmarkModel.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    clean.save(path)


def train(config: TrainConfig, data: LandmarkSet, out_dir, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) a run in `out_dir`; returns the path of the best model."""
    out = Path(out_dir)
    data = prepare(data, config)
    train_idx, val_idx = split_by_person(data, config.val_fraction, config.seed)
    train_set, val_set = data.subset(train_idx), data.subset(val_idx)
    extra = extra_sets(config, data.schema)
    aug = Augment.from_dict(config.augment)
    loader = dict(workers=config.workers, use_multiprocessing=config.use_multiprocessing)
    train_seq = KeypointSequence(join_sets([train_set, *extra]), config.input_size, config.batch_size, aug,
                                 config.crop_scale, shuffle=True, seed=config.seed, upright=config.upright, **loader)
    val_seq = (KeypointSequence(val_set, config.input_size, config.batch_size, None, config.crop_scale,
                                upright=config.upright, **loader) if val_idx else None)
    initial_epoch = 0
    if resume:
        if not (out / "last.keras").is_file() or not (out / "history.csv").is_file():
            raise KerakpError(f"{out}: nothing to resume (no last.keras and history.csv)")
        model = keras.models.load_model(out / "last.keras")
        initial_epoch = len(pd.read_csv(out / "history.csv"))
        if initial_epoch >= config.epochs:
            raise KerakpError(f"{out}: already trained {initial_epoch} of {config.epochs} epochs; raise --epochs to continue")
    else:
        keras.utils.set_random_seed(config.seed)   # initial weights and dropout, as the split and augmentation
        split = {"val_fraction": config.val_fraction, "seed": config.seed, "train_images": len(train_idx),
                 "val_images": len(val_idx), "val_persons": len(set(val_set.persons)),
                 "extra_images": sum(len(e) for e in extra)}
        model = LandmarkModel(config.backbone, data.schema.name, config.input_size, config.head_units, config.dropout,
                              config.weights, config.crop_scale,
                              calibrate_detector(train_set, config.calibration_images if config.face_box == "landmarks" else 0,
                                                 config.seed, progress), split,
                              config.freeze_bn, config.face_box, config.head, upright=config.upright)
        if config.init:
            copied = start_from(model, config.init)
            if progress:
                print(f"init: {copied} of {len(model.weights)} weight tensors from {config.init}")
        compile_model(model, config, len(train_seq))
        out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump({**config.to_dict(), "data": data.source}, sort_keys=False))
    monitor = "val_loss" if val_seq is not None else "loss"
    model.fit(train_seq, validation_data=val_seq, epochs=config.epochs, initial_epoch=initial_epoch,
              callbacks=_callbacks(out, config, monitor, resume), verbose=1 if progress else 2)
    best = keras.models.load_model(out / "model.keras")
    best.point_offsets = calibrate_points(best, train_set, config.calibration_images, config.seed, progress)
    save_for_inference(best, out / "model.keras")  # the best epoch, without optimizer state
    plot_history(out / "history.csv", out / "training_curves.png")
    (out / "split.json").write_text(json.dumps(model.split, indent=2))
    return out / "model.keras"
