"""`train`: fit a landmark model on a labelled set with a person-wise validation split.

A run folder holds `model.keras` (best validation loss), `last.keras` (for `--resume`), `history.csv`,
`training_curves.png` and the `config.yaml` that was used.
"""
from __future__ import annotations

import importlib.util
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import yaml

from kerakp.config import TrainConfig
from kerakp.data.augment import Augment
from kerakp.data.dataset import LandmarkSet, can_supervise, join_sets, split_by_person, supervising
from kerakp.data.formats import load_dataset
from kerakp.data.geometry import whole_image_box
from kerakp.data.sequence import KeypointSequence
from kerakp.detect import DETECTORS, fit_box_calibration, get_detector
from kerakp.devices import PROCESSES_VARIABLE, join_processes, requested_processes, wait_for_processes
from kerakp.distill import UNLABELLED_FILE, DistillSequence, Teacher, taught_set, teacher_labels
from kerakp.errors import KerakpError
from kerakp.io import refuse_existing, remove, replacing, write_csv, write_json, write_text
from kerakp.model_info import CropRule
from kerakp.models.custom import CropNME, MaskedKeypointLoss
from kerakp.models.landmark_model import LandmarkModel
from kerakp.models.losses import contour_neighbours
from kerakp.plots import plot_history
from kerakp.runtime import save_for_inference
from kerakp.schemas import get_schema


def _sample(data: LandmarkSet, count: int, seed: int, desc: str, progress: bool):
    """Up to `count` training images (decoded as they are consumed, with a progress bar) and their keypoints;
    the same `seed` picks the same images."""
    from tqdm import tqdm

    chosen = np.random.default_rng(seed).permutation(len(data))[:count]
    return (data.image(i) for i in tqdm(chosen, desc=desc, disable=None if progress else True, unit="img")), data.keypoints[chosen]


def calibrate_detector(sets: list[LandmarkSet], count: int, seed: int, progress: bool = True, names=None) -> dict:
    """Fit each detector's box -> landmark-box mapping (`names`, default every detector this installation
    can run) on up to `count` training images of each set in the first one's markup (the main set, and turned
    copies from `kerakp profile` beside it, so that a turned face's box is fitted too; faces missing a point are
    passed over, `fit_box_calibration`)."""
    full = [s for s in sets if len(s) and s.schema.name == sets[0].schema.name]
    fitted = {}
    for name in (names or DETECTORS) if count > 0 else ():
        try:
            detector = get_detector(name)
        except KerakpError:
            if names:
                raise
            continue    # Haar on OpenCV 5: no cascades to fit
        samples = [_sample(s, count, seed, f"fitting {name} boxes ({Path(s.source).name})", progress) for s in full]
        images = (image for some, _ in samples for image in some)
        fitted[name] = fit_box_calibration(detector, images, np.concatenate([k for _, k in samples])).to_dict()
    return fitted


def training_extras(extra: list[LandmarkSet], split: dict, held_out: set, own_share: bool = True) -> list[LandmarkSet]:
    """The part of each extra set a run trains on: with `own_share` (`split_extra`) its own training share by the
    run's split, and never a face of a person the main set holds out (a profiled copy of a validation face)."""
    if own_share:   # their held-out share is where `model_subset(..., "val")` finds it again
        extra = [e.subset(split_by_person(e, split["val_fraction"], split["seed"])[0]) for e in extra]
    return [e.subset([i for i, person in enumerate(e.persons) if person not in held_out]) for e in extra]


def calibrate_points(model, data: LandmarkSet, count: int, seed: int, progress: bool = True,
                     offsets=None) -> tuple[list, list]:
    """Fit a trained model's output offsets (or keep `offsets`) and its points' spread (`fit_point_offsets`)
    on up to `count` training images."""
    from kerakp.inference import fit_point_offsets

    if count <= 0:
        return [], []
    return fit_point_offsets(model, *_sample(data, count, seed, "fitting point offsets", progress), offsets=offsets)


def prepare(data: LandmarkSet, config: TrainConfig) -> LandmarkSet:
    """The set as the recipe trains on it: converted to `config.markup`, and with whole-image face boxes
    when `config.face_box` is `image`."""
    if config.markup:
        data = data.as_markup(get_schema(config.markup))
    if config.face_box == "image":
        boxes = [whole_image_box(*data.image(i).shape[:2], config.crop_scale) for i in range(len(data))]
        data = replace(data, boxes=np.stack(boxes))
    elif data.schema.norm is None and data.boxes is None:
        raise KerakpError(f"markup '{data.schema.name}' has one point, too few to crop around; set face_box: image")
    return data


def extra_sets(config: TrainConfig, schema) -> list[LandmarkSet]:
    """The recipe's `extra_data` sets, prepared like the main set: in their own markup where it supervises the
    run's through a correspondence (partial labels, `supervising`), else converted to it."""
    sets = []
    for path in config.extra_data:
        extra = prepare(load_dataset(path), config)
        if can_supervise(extra.schema, schema):
            sets.append(extra)
            continue
        try:
            sets.append(extra.as_markup(schema))
        except KerakpError as err:
            raise KerakpError(f"{path}: markup {extra.schema.name}, this run trains {schema.name} ({err}; "
                              "and no correspondence in kerakp.schemas.CORRESPONDENCES)") from None
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


def extra_draws(share: float, main: int, extra: int) -> tuple[np.ndarray, int] | None:
    """The extra sets' faces (after the `main` ones in the joined set) and how many of them an epoch draws so
    that they make `share` of it; None where every face trains every epoch."""
    if not share or not extra:
        return None
    return np.arange(main, main + extra), min(extra, max(1, round(share / (1 - share) * main)))


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int, derived=()) -> None:
    """AdamW on a warm-up and cosine schedule, the recipe's masked loss (reading `derived` groups' mean points
    where a mixed set labels them) and the crop NME."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * (0.1 if warmup else 1.0), decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, clipnorm=config.clipnorm)
    relaxed = config.loss_along != 1.0   # the contour lines only matter to a relaxed loss
    loss = MaskedKeypointLoss(config.loss, delta=config.huber_delta,
                              contours=contour_neighbours(model.schema) if relaxed else None, along=config.loss_along,
                              groups=derived)
    model.compile(optimizer=optimizer, loss=loss, metrics=[CropNME(model.schema.norm)])


class RunCheckpoints(keras.callbacks.Callback):
    """After each epoch, the run folder's resumable state, each file written whole: `history.csv` with the
    epoch's row, `last.keras` (with optimizer state) and, when the monitored loss beats every earlier epoch,
    `model.keras`. A non-finite training loss stops the run at once (`diverged`), keeping the last good files.
    Only the process that `writes` (process 0 of a run across processes) keeps the files."""

    def __init__(self, out: Path, monitor: str, resume: bool, writes: bool = True):
        super().__init__()
        self.out, self.monitor, self.diverged, self.writes = out, monitor, None, writes
        self.history = pd.read_csv(out / "history.csv") if resume else pd.DataFrame()
        self.best = float(self.history[monitor].min()) if resume and len(self.history) else np.inf

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.diverged = (len(self.history) + 1, batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if self.diverged or not all(np.isfinite(list(logs.values()))):
            self.diverged = self.diverged or (epoch + 1, None, logs.get("loss", np.nan))
            self.model.stop_training = True
            return
        history = pd.concat([self.history, pd.DataFrame([{"epoch": epoch, **logs}])], ignore_index=True)
        if logs.get(self.monitor, np.inf) < self.best:
            self._save("model.keras")
            self.best = logs[self.monitor]
        self._save("last.keras")
        if self.writes:
            write_csv(history, self.out / "history.csv")
        self.history = history

    def _save(self, name: str) -> None:
        # every process saves: reading distributed variables is a step all processes of a run take together
        if self.writes:
            with replacing(self.out / name) as tmp:
                self.model.save(tmp)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                self.model.save(Path(tmp) / name)


def _callbacks(out: Path, config: TrainConfig, monitor: str, resume: bool, writes: bool) -> list:
    callbacks = [RunCheckpoints(out, monitor, resume, writes),
                 keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, restore_best_weights=True)]
    if config.tensorboard and writes:
        if importlib.util.find_spec("tensorflow") is None:
            raise KerakpError("--tensorboard writes TensorFlow event files and needs TensorFlow installed")
        callbacks.append(keras.callbacks.TensorBoard(out / "tensorboard"))
    return callbacks


RUN_FILES = ("model.keras", "last.keras", "history.csv", "config.yaml", "split.json", "training_curves.png", UNLABELLED_FILE)


def _resume_from(out: Path, config: TrainConfig):
    """The interrupted run's model (with its optimizer state) and the number of epochs it finished."""
    if not (out / "last.keras").is_file() or not (out / "history.csv").is_file():
        raise KerakpError(f"{out}: nothing to resume (no last.keras and history.csv)")
    try:
        model = keras.models.load_model(out / "last.keras")
    except Exception as err:
        raise KerakpError(f"{out / 'last.keras'}: not a loadable Keras model, cannot resume "
                          f"({str(err).splitlines()[0][:120]})") from None
    done = len(pd.read_csv(out / "history.csv"))
    if done >= config.epochs:
        raise KerakpError(f"{out}: already trained {done} of {config.epochs} epochs; raise --epochs to continue")
    return model, done


@contextmanager
def training_context(config: TrainConfig, progress: bool = True):
    """The dtype policy (`precision`) and the device distribution (`distribute`) a run builds and trains its
    model under, left as they were afterwards; yields the number of devices. Data-parallel uses
    keras.distribution.DataParallel over every device of every process on JAX (processes and hosts joined by
    `join_processes`, each reading its own part of every batch: `KeypointSequence`'s `shard`) and
    tf.distribute.MirroredStrategy on TensorFlow; the recipe's batch is the global batch."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(config.precision)
    try:
        if not config.distribute:
            if requested_processes() > 1:
                raise KerakpError(f"{PROCESSES_VARIABLE} asks for a run across processes; add --distribute data-parallel")
            yield 1
            return
        join_processes()
        backend = keras.backend.backend()
        if backend == "jax":
            devices = keras.distribution.list_devices()
            _check_batch(config, len(devices), progress)
            # each process feeds its own part of the global batch: Keras is not to split it again
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
            try:
                yield len(devices)
            finally:
                keras.distribution.set_distribution(None)
        elif backend == "tensorflow":
            import tensorflow as tf

            kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
            names = [device.name for device in tf.config.list_logical_devices(kind)]
            _check_batch(config, len(names), progress)
            with tf.distribute.MirroredStrategy(devices=names).scope():
                yield len(names)
        else:
            raise KerakpError(f"--distribute data-parallel runs on the jax or tensorflow backend, not {backend}")
    finally:
        keras.config.set_dtype_policy(previous)


def _check_batch(config: TrainConfig, devices: int, progress: bool) -> None:
    if config.batch_size % devices:
        raise KerakpError(f"--batch-size {config.batch_size} does not divide over {devices} devices; "
                          f"use a multiple of {devices}")
    if progress:
        print(f"data-parallel over {devices} devices ({config.batch_size // devices} images each per step)", flush=True)


def train(config: TrainConfig, data: LandmarkSet, out_dir, resume: bool = False, progress: bool = True,
          overwrite: bool = False) -> Path:
    """Train (or resume) a run in `out_dir`; returns the path of the best model. A fresh run refuses a folder
    holding another run unless `overwrite`; a fresh run that stops before its first epoch ends leaves nothing."""
    out = Path(out_dir)
    if not resume and any((out / name).exists() for name in RUN_FILES):
        refuse_existing(out, overwrite, "--overwrite to replace it, or --resume to continue it")
    # a run across processes joins before any JAX computation (a teacher's); only its process 0 writes files
    process, processes = join_processes() if config.distribute else (0, 1)
    writes = process == 0
    data = prepare(data, config)
    teacher = Teacher(config.teacher, config.teacher_weight, config.teacher_turn) if config.teacher else None
    split = {"val_fraction": config.val_fraction, "seed": config.seed}
    if teacher is not None:
        teacher.check(data)
        split = {key: teacher.info.split.get(key, value) for key, value in split.items()}   # persons it never saw
    train_idx, val_idx = split_by_person(data, split["val_fraction"], split["seed"])
    train_set, val_set = data.subset(train_idx), data.subset(val_idx)
    extra = extra_sets(config, data.schema)
    extra = training_extras(extra, split, set(val_set.persons), config.split_extra)
    labels = None   # the teacher's labels of the unlabelled images, made once per run
    if teacher is not None and config.unlabelled:
        cached = out / UNLABELLED_FILE
        labels = pd.read_csv(cached) if resume and cached.is_file() else teacher_labels(teacher, config.unlabelled, progress)
    unlabelled = [s for s in [taught_set(labels, data.schema, val_set) if labels is not None else None] if s is not None]
    crop = CropRule(config.input_size, config.crop_scale, config.upright, config.face_box == "image")
    loader = dict(workers=config.workers, use_multiprocessing=config.use_multiprocessing, cache_mb=config.cache_mb)
    calibration = ({} if resume else
                   calibrate_detector([train_set, *extra], config.calibration_images if config.face_box == "landmarks" else 0,
                                      config.seed, progress, [config.detector] if config.detector else None))
    with training_context(config, progress) as devices:
        if resume:
            model, initial_epoch = _resume_from(out, config)
        else:
            initial_epoch = 0
            keras.utils.set_random_seed(config.seed)   # initial weights and dropout, as the split and augmentation
            split = {**split, "train_images": len(train_idx), "val_images": len(val_idx),
                     "val_persons": len(set(val_set.persons)), "extra_images": sum(len(e) for e in extra),
                     **({"unlabelled_images": len(unlabelled[0])} if unlabelled else {})}
            model = LandmarkModel(config.backbone, data.schema.name, config.input_size, config.head_units, config.dropout,
                                  config.weights, config.crop_scale, calibration, split,
                                  config.freeze_bn, config.face_box, config.head, upright=config.upright,
                                  decode_window=config.decode_window, heatmap_spread=config.heatmap_spread,
                                  heatmap_weight=config.heatmap_weight, backbone_stride=config.backbone_stride,
                                  width=config.width, heatmap_stride=config.heatmap_stride)
            if config.init:
                copied = start_from(model, config.init)
                if progress:
                    print(f"init: {copied} of {len(model.weights)} weight tensors from {config.init}", flush=True)
        trained = join_sets(supervising([train_set, *extra, *unlabelled], data.schema))
        seen = dict(batch_size=config.batch_size, augment=Augment.from_dict(config.augment), shuffle=True, seed=config.seed,
                    epoch=initial_epoch, devices=devices, shard=(process, processes),
                    subsample=extra_draws(config.extra_share, len(train_set), sum(len(e) for e in extra)), **loader)
        if teacher is None:
            train_seq = KeypointSequence(trained, crop, **seen)
        else:   # the labelled sets first, then the images only the teacher labels
            labelled = np.arange(len(trained)) < len(trained) - sum(len(s) for s in unlabelled)
            train_seq = DistillSequence(trained, crop, teacher, labelled, **seen)
        val_seq = (KeypointSequence(val_set, crop, config.batch_size, devices=devices, shard=(process, processes), **loader)
                   if val_idx else None)
        if not resume:
            compile_model(model, config, len(train_seq), trained.schema.derived)
            created = not out.exists()
        if writes and not resume:
            for name in RUN_FILES:   # --overwrite: the earlier run's files go only now, when this one starts
                remove(out / name)
            out.mkdir(parents=True, exist_ok=True)
            if labels is not None:
                write_csv(labels, out / UNLABELLED_FILE)
        if writes:
            write_text(out / "config.yaml", yaml.safe_dump({**config.to_dict(), "data": data.source}, sort_keys=False))
        monitor = "val_loss" if val_seq is not None else "loss"
        callbacks = _callbacks(out, config, monitor, resume, writes)
        try:
            # shuffle=False: the sequence shuffles its images by (seed, epoch); Keras's batch shuffle would add an
            # order that differs between one device and several
            model.fit(train_seq, validation_data=val_seq, epochs=config.epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=1 if progress else 2, shuffle=False)
            if callbacks[0].diverged:
                epoch, batch, loss = callbacks[0].diverged
                kept = f"{out / 'model.keras'} keeps the best epoch before it" if (out / "model.keras").exists() else "no epoch finished"
                raise KerakpError(f"training diverged: the loss became {loss} in epoch {epoch}"
                                  + (f", batch {batch}" if batch else "") + f"; {kept} (try a lower --lr)")
        except BaseException:
            if writes and not resume and not (out / "history.csv").exists():   # not one epoch finished: nothing to keep
                remove(out / "config.yaml")
                remove(out / UNLABELLED_FILE)
                if created and not any(out.iterdir()):
                    out.rmdir()
            raise
    if writes:
        best = keras.models.load_model(out / "model.keras")     # rebuilt in float32 on one device, whatever trained it
        offsets, spread = calibrate_points(best, train_set, config.calibration_images, config.seed, progress)
        info = best.info.replace(point_offsets=offsets, point_spread=spread)
        with replacing(out / "model.keras") as tmp:  # the best epoch with its offsets, without optimizer state
            save_for_inference(best, tmp, info)
        plot_history(out / "history.csv", out / "training_curves.png")
        write_json(out / "split.json", info.split)
    wait_for_processes("kerakp: the run's files are written")   # the others return once process 0's model is whole
    return out / "model.keras"
