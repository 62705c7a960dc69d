"""The `kerakp` command line. Heavy imports (Keras, TensorFlow) happen inside commands, so `--help` is quick."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import click
import numpy as np

from kerakp import __version__
from kerakp.errors import KerakpError
from kerakp.inference import DEFAULT_TURN
from kerakp.models import HEADS, LOSSES

DEFAULT_QUICKSTART = Path("runs/quickstart")
BOX_HELP = "Face box: Haar detector (end to end), oracle (from ground truth, diagnosis only) or the full image."
TURN_HELP = ("Degrees: also read the chosen face with its crop turned this far each way, and average the three "
             "readings (test-time augmentation: four more model calls per image); 0 turns it off.")
PASSES_HELP = "Crop passes; each re-crops around the last prediction (turned level for a model trained upright)."
DATA_FORMATS = ["auto", "ytf68", "pts", "csv", "asf", "kaggle"]  # kerakp.data.readers.FORMATS


def import_keras_quietly() -> None:
    """Import Keras with TensorFlow's C++ start-up lines (printed before any log level applies) kept off stderr."""
    if "keras" not in sys.modules:
        from kerakp.quiet import native_stderr_silenced

        with native_stderr_silenced():
            import keras  # noqa: F401


class KerakpCommand(click.Command):
    """A command that imports Keras quietly once its arguments have parsed (so `--help` stays instant)."""

    def invoke(self, ctx):
        import_keras_quietly()
        return super().invoke(ctx)


class TensorFlowCommand(KerakpCommand):
    """A command that converts through TensorFlow: it runs Keras on the TensorFlow backend whatever
    $KERAS_BACKEND says (a .keras file trained on any backend loads there), unless --backend asked otherwise."""

    def invoke(self, ctx):
        chosen = ctx.find_root().params.get("backend")
        if chosen not in (None, "tensorflow"):
            raise KerakpError(f"`{ctx.info_name}` converts through TensorFlow; drop --backend {chosen}")
        if importlib.util.find_spec("tensorflow") is None:
            raise KerakpError(f"`{ctx.info_name}` needs TensorFlow (pip install tensorflow)")
        select_backend("tensorflow")
        return super().invoke(ctx)


class KerakpGroup(click.Group):
    """Turns `KerakpError` (bad input) into one line on stderr and exit code 2."""

    command_class = KerakpCommand

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KerakpError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


BACKENDS = ("tensorflow", "jax", "torch")


def select_backend(backend: str) -> None:
    """Set the Keras backend; it must happen before Keras is imported."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise KerakpError(f"Keras is already running on '{keras.backend.backend()}'; cannot switch to '{backend}'")
    os.environ["KERAS_BACKEND"] = backend


@click.group(cls=KerakpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kerakp")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="Keras backend for this run (default: $KERAS_BACKEND, else tensorflow). Models move between backends.")
def main(backend):
    """kerakp: train, evaluate and run facial-landmark models (Keras 3).

    Start with `kerakp quickstart`, which generates a synthetic face set, trains a small model on it and
    evaluates it end to end.
    """
    if backend:
        select_backend(backend)


@main.command()
def info():
    """Print versions, the Keras backend and the devices Keras can use."""
    import platform

    import cv2
    import keras
    import numpy

    click.echo(f"kerakp        {__version__}")
    click.echo(f"python        {platform.python_version()} ({platform.system()} {platform.machine()})")
    click.echo(f"keras         {keras.__version__} (backend: {keras.backend.backend()})")
    click.echo(f"numpy         {numpy.__version__}")
    click.echo(f"opencv        {cv2.__version__}")
    from kerakp.devices import list_devices

    for backend, devices in list_devices().items():
        click.echo(f"{backend:<14}{devices}")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", "num_images", default=600, show_default=True, help="Number of faces.")
@click.option("--per-person", default=6, show_default=True, help="Images of each synthetic person.")
@click.option("--size", default=160, show_default=True, help="Image side in pixels.")
@click.option("--roll", default=25.0, show_default=True, help="Maximum head roll in degrees.")
@click.option("--seed", default=0, show_default=True)
def synth(out_dir, num_images, per_person, size, roll, seed):
    """Generate a synthetic labelled face set (iBUG 68 + expression) in OUT_DIR."""
    from kerakp.data.synthetic import write_synthetic_set

    if num_images < 1 or per_person < 1 or size < 32:
        raise KerakpError("--images and --per-person must be at least 1, --size at least 32")
    csv = write_synthetic_set(out_dir, num_images, per_person, size, roll, seed)
    click.echo(f"wrote {num_images} faces: {csv}")


def _overrides(options: dict, sets: tuple[str, ...]) -> dict:
    from kerakp.config import parse_value

    overrides = {k: v for k, v in options.items() if v is not None}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KerakpError(f"--set expects KEY=VALUE, got '{item}'")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def _run_training(data_path, data_format, config_path, out, resume, overrides):
    from kerakp.config import load_config
    from kerakp.data.readers import load_dataset
    from kerakp.train import train

    config = load_config(config_path, overrides)
    from kerakp.models.backbones import get_backbone_spec

    get_backbone_spec(config.backbone)
    data = load_dataset(data_path, data_format)
    click.echo(f"data: {len(data)} images, markup {data.schema.name}, from {data.source}")
    return train(config, data, out, resume=resume)


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML recipe (see configs/).")
@click.option("--out", default=Path("runs/train"), show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--backbone", help="mobilenetv2, efficientnetv2b0, resnet18, resnet34, resnet50 or simplecnn.")
@click.option("--weights", help="none, imagenet, or a local weights file for the backbone.")
@click.option("--input-size", type=int, help="Model input side in pixels.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--learning-rate", "--lr", "learning_rate", type=float)
@click.option("--head", type=click.Choice(HEADS),
              help="regression (pooled features -> dense), heatmap (upsampled heatmaps, soft-argmax decoding) "
                   "or unet (heatmap with the backbone's stride-16/8/4 maps added on the way up).")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Start from a trained .keras model wherever layers match (e.g. a new head on its backbone).")
@click.option("--loss", type=click.Choice(LOSSES))
@click.option("--val-fraction", type=float, help="Share of persons held out for validation.")
@click.option("--seed", type=int, help="Seeds the person split, augmentation, initial weights and dropout.")
@click.option("--workers", type=int, help="Data-loading workers.")
@click.option("--tensorboard/--no-tensorboard", default=None, help="Also write TensorBoard logs.")
@click.option("--extra-data", multiple=True, type=click.Path(path_type=Path),
              help="Another labelled set of the same markup to train on (repeatable); never validated on.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. augment.rotation=10.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
def train(data_path, data_format, config_path, out, resume, sets, extra_data, **options):
    """Train a landmark model; writes model.keras, history and curves into --out."""
    options["extra_data"] = [str(path) for path in extra_data] or None
    model_path = _run_training(data_path, data_format, config_path, out, resume, _overrides(options, sets))
    click.echo(f"model: {model_path}\ncurves: {out / 'training_curves.png'}")


@main.command()
@click.option("--backbones", default="mobilenetv2,efficientnetv2b0,resnet18,resnet34,simplecnn", show_default=True,
              help="Comma-separated backbones to train under the same recipe.")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--budget", type=int, help="Epochs per backbone (default: the recipe's).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML recipe shared by every backbone.")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of local ImageNet weights; a backbone whose name starts a file's name starts from it, others from scratch.")
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "oracle", "full"]), help=BOX_HELP)
@click.option("--out", default=Path("runs/compare"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key for every backbone.")
def compare(backbones, data_path, data_format, budget, config_path, weights_dir, box, out, sets):
    """Train each backbone under one recipe and budget; evaluate all on the same validation split.

    Writes compare.md / compare.json (NME, PCK@0.10, AUC, failure rate, parameters, Keras ms per crop,
    model size, training time), ced.png (all backbones) and nme_vs_latency.png into --out.
    """
    from kerakp.compare import compare as run_compare
    from kerakp.compare import markdown_table
    from kerakp.config import load_config
    from kerakp.data.readers import load_dataset
    from kerakp.models.backbones import get_backbone_spec

    names = [b.strip() for b in backbones.split(",") if b.strip()]
    for name in names:
        get_backbone_spec(name)
    if len(set(names)) != len(names) or not names:
        raise KerakpError("--backbones must name each backbone once")
    config = load_config(config_path, _overrides({"epochs": budget}, sets))
    data = load_dataset(data_path, data_format)
    table = run_compare(config, names, data, out, box, weights_dir)
    click.echo(markdown_table(table))
    click.echo(f"table: {out / 'compare.md'}\nplots: {out / 'ced.png'}, {out / 'nme_vs_latency.png'}")


def _subset(data, model, subset: str):
    from kerakp.data.readers import split_by_person

    if subset == "all":
        return data
    if not model.split:
        raise KerakpError("this model records no validation split; use --subset all")
    train_idx, val_idx = split_by_person(data, model.split["val_fraction"], model.split["seed"])
    chosen = val_idx if subset == "val" else train_idx
    if not chosen:
        raise KerakpError(f"the '{subset}' subset of this data is empty")
    return data.subset(chosen)


def _evaluate(model_path, data_path, data_format, box, passes, out, subset, turn: float = DEFAULT_TURN):
    from kerakp.data.readers import load_dataset
    from kerakp.evaluate import evaluate, format_metrics
    from kerakp.inference import Predictor

    predictor = Predictor(model_path, box=box, passes=passes, fallback="full", turn=turn)
    data = load_dataset(data_path, data_format)
    if data.schema.name != predictor.schema.name:  # a model of a derived markup (nose_tip from imm58)
        try:
            data = data.as_markup(predictor.schema)
        except KerakpError as err:
            raise KerakpError(f"{data.source}: markup {data.schema.name}, but the model predicts {predictor.schema.name} ({err})") from None
    data = _subset(data, predictor.model, subset)
    metrics = evaluate(predictor, data, out, label=f"{Path(model_path).stem} on {subset}")
    click.echo(format_metrics(metrics))
    click.echo(f"report: {out / 'metrics.json'}, {out / 'per_image.csv'}\nplots:  {out / 'ced.png'}, {out / 'grid.png'}")
    return metrics


@main.command("fit-detector")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="The full-size labelled set MODEL trained on.")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--images", default=400, show_default=True, type=click.IntRange(min=1), help="Training images to fit on.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the model here instead of replacing MODEL.")
def fit_detector(model, data_path, data_format, images, out):
    """Fit MODEL's detector-box -> landmark-box calibration and its point offsets on the training part of DATA.

    `kerakp train` does this itself; a model trained on compact face crops (scripts/gpu_train.sh) needs it
    afterwards on the original images, where the detector sees whole faces. The point offsets are the median
    residuals of the model's final landmarks per point, added back at inference.
    """
    from kerakp.data.readers import load_dataset
    from kerakp.runtime import open_model
    from kerakp.train import calibrate_detector, calibrate_points, save_for_inference

    if model.suffix.lower() != ".keras":
        raise KerakpError(f"{model}: fit the calibration on the .keras model, then export it")
    landmark_model = open_model(model)
    if landmark_model.face_box == "image":
        raise KerakpError(f"{model}: trained on whole images (face_box: image), it uses no detector")
    data = load_dataset(data_path, data_format)
    data = _subset(data, landmark_model, "train") if landmark_model.split else data  # no split recorded: every image
    if data.schema.name != landmark_model.schema_name:
        raise KerakpError(f"{data.source}: markup {data.schema.name}, but the model predicts {landmark_model.schema_name}")
    seed = landmark_model.split.get("seed", 0)
    landmark_model.box_calibration = calibrate_detector(data, images, seed)
    landmark_model.point_offsets = calibrate_points(landmark_model, data, images, seed)
    target = out or model
    tmp = target.with_name(target.stem + ".tmp.keras")
    save_for_inference(landmark_model, tmp)
    tmp.replace(target)
    for name, fitted in landmark_model.box_calibration.items():
        click.echo(f"{name}: dx {fitted['dx']:.3f}, dy {fitted['dy']:.3f}, scale {fitted['scale']:.3f} "
                   f"from {fitted['samples']} faces")
    if landmark_model.point_offsets:
        shifts = np.linalg.norm(landmark_model.point_offsets, axis=-1) * landmark_model.input_size  # (2, K)
        click.echo(f"point offsets in a {landmark_model.input_size} px crop: direct reading median "
                   f"{np.median(shifts[0]):.2f} px, mirrored {np.median(shifts[1]):.2f} px, largest {shifts.max():.2f} px")
    click.echo(f"wrote {target}")


@main.command()
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "fmt", required=True, type=click.Choice(["ytf68", "csv", "pts", "asf", "kaggle"]),
              help="Output layout (csv is the image_name,point_1_x,... format).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS), help="Input layout.")
@click.option("--markup", help="Convert the points to this markup (five or kaggle15) from any markup that has their parts.")
@click.option("--crop", "crop_size", type=int, help="Write SIZE x SIZE face crops instead of the original images (a compact copy).")
@click.option("--context", default=2.0, show_default=True, help="With --crop: crop side / landmark-box side.")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="With --crop: JPEG quality of the crops.")
def convert(data_path, out, fmt, data_format, markup, crop_size, context, quality):
    """Write the labelled set DATA in another layout or markup into the new folder OUT.

    Examples: 300-W .pts to CSV: `kerakp convert ../300w_train out/300w --to ytf68`; 68 to 5 points:
    `--to csv --markup five`; a compact copy for another machine: `--crop 160`.
    """
    from kerakp.data.readers import load_dataset
    from kerakp.data.writers import write_dataset

    if crop_size is not None and crop_size < 16 or context <= 0:
        raise KerakpError("--crop must be at least 16 pixels and --context positive")
    data = load_dataset(data_path, data_format)
    written = write_dataset(data, out, fmt, markup, crop_size, context, quality=quality)
    click.echo(f"wrote {len(data)} faces ({data.schema.name} -> {markup or fmt}): {written}")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path))
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "oracle", "full"]), help=BOX_HELP)
@click.option("--passes", default=2, show_default=True, help=PASSES_HELP)
@click.option("--turn", default=DEFAULT_TURN, show_default=True, type=click.FloatRange(0, 45), help=TURN_HELP)
@click.option("--subset", default="all", show_default=True, type=click.Choice(["all", "val", "train"]),
              help="Evaluate on the model's own person-wise validation split (val), its training part, or all.")
@click.option("--out", default=Path("runs/evaluate"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
def evaluate(model, data_path, data_format, box, passes, turn, subset, out):
    """Measure MODEL end to end on labelled data: NME, PCK, AUC, failure rate; CED and grid plots."""
    _evaluate(model, data_path, data_format, box, passes, out, subset, turn)


def _image_list(paths: tuple[Path, ...]) -> list[tuple[str, Path]]:
    from kerakp.data.readers import IMAGE_SUFFIXES

    items = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            items += [(str(p.relative_to(path)), p) for p in found]
        elif path.is_file():
            items.append((str(path), path))
        else:
            raise KerakpError(f"{path}: no such image or folder")
    if not items:
        raise KerakpError("no images found in " + ", ".join(map(str, paths)))
    return items


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("predictions.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]), help=BOX_HELP)
@click.option("--passes", default=2, show_default=True, help=PASSES_HELP)
@click.option("--turn", default=DEFAULT_TURN, show_default=True, type=click.FloatRange(0, 45), help=TURN_HELP)
@click.option("--fallback/--no-fallback", default=True, show_default=True,
              help="Where the detector finds no face, or none the model reads consistently, also try the whole image: "
                   "every image gets landmarks, and the detected column says whose box won.")
def predict(model, paths, out, box, passes, turn, fallback):
    """Predict landmarks for images or folders; CSV columns image, found, detected, x0, y0, ... in image pixels."""
    import pandas as pd

    names, points, detected, _ = _predict_images(model, paths, box, passes, "full" if fallback else None, turn)
    found = ~np.isnan(points).all(axis=(1, 2))
    frame = pd.DataFrame(points.reshape(len(names), -1).round(2),
                         columns=[f"{a}{i}" for i in range(points.shape[1]) for a in "xy"])
    frame.insert(0, "detected", detected.astype(int))
    frame.insert(0, "found", found.astype(int))
    frame.insert(0, "image", names)
    _write_csv(frame, out)
    click.echo(f"landmarks for {int(found.sum())} of {len(frame)} images ({int(detected.sum())} from the detector's box); wrote {out}")


def _predict_images(model, paths, box: str, passes: int, fallback: str | None = None, turn: float = DEFAULT_TURN):
    """Image names (relative to the folder given), (N, K, 2) landmarks (NaN where no face), whether the
    detector's box gave them, and the markup."""
    from tqdm import tqdm

    from kerakp.data.readers import read_image
    from kerakp.inference import Predictor

    predictor = Predictor(model, box=box, passes=passes, fallback=fallback, turn=turn)
    items = _image_list(paths)
    points = np.full((len(items), predictor.schema.num_points, 2), np.nan)
    detected = np.zeros(len(items), dtype=bool)
    for i, (_, path) in enumerate(tqdm(items, desc="predicting", unit="img")):
        result = predictor.predict(read_image(path))
        detected[i] = result.detected
        if result.points is not None:
            points[i] = result.points
    return [name for name, _ in items], points, detected, predictor.schema


def _write_csv(frame, out: Path) -> None:
    """Write a table atomically: a temporary file renamed into place, so a failure leaves no half-file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(out)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("labels"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="New folder: the labelled set (readable by `kerakp train --data`) and annotations.csv.")
@click.option("--format", "fmt", default="ytf68", show_default=True, type=click.Choice(["ytf68", "pts", "csv5"]),
              help="csv5 writes the 5-point CSV (converted through the markup's named points).")
@click.option("--max-disagreement", type=float,
              help="Leave out faces whose flip disagreement (NME between the image's and its mirror's prediction) exceeds this.")
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]), help=BOX_HELP)
def annotate(model, paths, out, fmt, max_disagreement, box):
    """Label unlabelled face images with MODEL (the teacher), with a confidence proxy per image."""
    from kerakp.annotate import annotate as label_images
    from kerakp.data.writers import write_dataset
    from kerakp.inference import Predictor

    if out.exists():
        raise KerakpError(f"{out}: already exists; choose a new folder")
    data, table = label_images(Predictor(model, box=box, passes=2), _image_list(paths))
    keep = table.loc[table["found"] == 1, "flip_nme"].to_numpy()
    keep = keep <= max_disagreement if max_disagreement is not None else np.ones(len(data), bool)
    if not keep.any():
        raise KerakpError("no face left to label (none found, or all above --max-disagreement)")
    written = write_dataset(data.subset(np.flatnonzero(keep)), out, "csv" if fmt == "csv5" else fmt,
                            "five" if fmt == "csv5" else None, progress=False)
    table.to_csv(out / "annotations.csv", index=False)
    click.echo(f"labelled {int(keep.sum())} of {len(table)} images (no face: {int((table['found'] == 0).sum())}, "
               f"above --max-disagreement: {int((~keep).sum())}); median flip NME {np.nanmedian(table['flip_nme']):.4f}")
    click.echo(f"labels: {written}\nper image: {out / 'annotations.csv'}")


@main.command("kaggle-submit")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--test", "test_csv", required=True, type=click.Path(path_type=Path), help="The competition's test.csv (ImageId, Image).")
@click.option("--lookup", "lookup_csv", required=True, type=click.Path(path_type=Path), help="IdLookupTable.csv (RowId, ImageId, FeatureName).")
@click.option("--out", default=Path("submission.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
def kaggle_submit(model, test_csv, lookup_csv, out):
    """Write a Kaggle Facial Keypoints submission (RowId, Location) with a kaggle15 MODEL (whole-image crops)."""
    from kerakp.inference import Predictor
    from kerakp.kaggle import submission

    table = submission(Predictor(model), test_csv, lookup_csv)
    _write_csv(table, out)
    click.echo(f"wrote {len(table)} locations: {out}")


@main.command(cls=TensorFlowCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="tflite", show_default=True, type=click.Choice(["tflite", "onnx", "savedmodel"]))
@click.option("--quantize", default="none", show_default=True, type=click.Choice(["none", "float16", "dynamic", "int8"]),
              help="TFLite only; int8 needs --calibration.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Labelled faces (training data) for int8 ranges and the parity check (default: synthetic faces).")
@click.option("--out", type=click.Path(path_type=Path), help="Output file (default: beside MODEL).")
def export(model, fmt, quantize, calibration, out):
    """Export MODEL (.keras, trained on any backend) to TFLite, ONNX or a SavedModel, with a parity check
    stored in <file>.json. Runs on the TensorFlow backend."""
    from kerakp.export import export_model

    report = export_model(model, fmt, quantize, out, calibration)
    parity = report["parity"]
    click.echo(f"wrote {report['file']} ({report['size_bytes'] / 1e6:.2f} MB)")
    click.echo(f"parity on {parity['crops']} crops ({parity['source']}): max |export - keras| {parity['max_abs_diff']:.2e}, "
               f"NME {parity['nme_keras']:.4f} -> {parity['nme_export']:.4f} ({parity['nme_change']:+.4f})")


@main.command()
@click.option("--tflite", "--model", "model", required=True, type=click.Path(path_type=Path),
              help="Landmark model: .tflite (fastest on a CPU), .onnx or .keras.")
@click.option("--source", default="0", show_default=True, help="Camera index or video file.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Write the annotated video here (r toggles).")
@click.option("--headless", is_flag=True, help="No window: for servers and tests (still records and writes stats).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path), help="Write run statistics (JSON) here.")
@click.option("--threads", default=1, show_default=True, help="Inference threads (TFLite and ONNX).")
@click.option("--redetect-every", default=30, show_default=True, help="Run the face detector at least every N frames.")
@click.option("--momentum", default=0.5, show_default=True, help="Landmark smoothing: 0 = none, towards 1 = smoother.")
@click.option("--emotion-config", type=click.Path(path_type=Path), help="Expression thresholds YAML (default: published rule).")
@click.option("--max-frames", type=int, help="Stop after this many frames.")
def live(model, source, record, headless, stats_path, threads, redetect_every, momentum, emotion_config, max_frames):
    """Track landmarks live on a camera or video: q quits, r toggles recording, s saves a snapshot."""
    from kerakp.emotion import load_rule
    from kerakp.inference import Predictor
    from kerakp.live import run_live
    from kerakp.runtime import open_model

    if not 0 <= momentum < 1:
        raise KerakpError("--momentum must be in [0, 1)")
    import cv2

    cv2.setNumThreads(threads)
    predictor = Predictor(open_model(model, threads), box="detector", passes=2)
    summary = run_live(predictor, source, record, headless, stats_path, redetect_every, momentum,
                       load_rule(emotion_config), max_frames=max_frames)
    infer = summary["latency_ms"].get("infer", {})
    click.echo(f"{summary['frames']} frames in {summary['wall_s']:.2f} s: {summary['fps']:.1f} FPS; "
               f"model {infer.get('p50', float('nan')):.2f} ms (p50); detector calls {summary['detector_calls']}, "
               f"track losses {summary['track_losses']}; tags {summary['emotion_counts']}")
    if stats_path:
        click.echo(f"stats: {stats_path}")


@main.command("synth-video")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", default=120, show_default=True)
@click.option("--width", default=640, show_default=True)
@click.option("--height", default=480, show_default=True)
@click.option("--seed", default=1, show_default=True,
              help="Which synthetic person. The Haar detector misses the darker-skinned ones (see BENCHMARKS.md).")
def synth_video(out, frames, width, height, seed):
    """Write a video of a moving, smiling synthetic face (.mp4 or .avi) and its landmarks (OUT.csv)."""
    from kerakp.data.synthetic import write_synthetic_video

    if frames < 1 or min(width, height) < 64:
        raise KerakpError("--frames must be at least 1 and the frame at least 64 px a side")
    path = write_synthetic_video(out, frames, width, height, seed=seed)
    click.echo(f"wrote {frames} frames: {path} (landmarks: {path}.csv)")


class DefaultCommandGroup(KerakpGroup):
    """A group that runs `default_command` when the arguments name none (`kerakp emotion MODEL IMAGES`)."""

    def __init__(self, *args, default_command: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@main.group(cls=DefaultCommandGroup, default_command="tag")
def emotion():
    """Expression tags (positive / neutral / negative) from landmark geometry.

    `kerakp emotion MODEL IMAGES...` tags faces (the `tag` command); `kerakp emotion --landmarks CSV` tags
    existing landmarks; `kerakp emotion calibrate` fits the thresholds on labelled faces.
    """


def _landmark_features(landmarks: Path):
    from kerakp.data.readers import read_landmark_table
    from kerakp.emotion import features

    names, points, schema = read_landmark_table(landmarks)
    return names, features(points, schema)


@emotion.command("tag")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path), metavar="[MODEL IMAGES_OR_FOLDERS...]")
@click.option("--landmarks", type=click.Path(path_type=Path), help="Tag a landmark CSV (kerakp predict output or ground truth) instead.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Thresholds YAML (default: the published rule, configs/emotion.yaml).")
@click.option("--out", default=Path("emotions.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]), help=BOX_HELP)
def emotion_tag(inputs, landmarks, config_path, out, box):
    """Tag each face; writes image, tag, w, h, c and prints the tag counts."""
    import pandas as pd

    from kerakp.emotion import TAGS, features, load_rule

    rule = load_rule(config_path)
    if landmarks is not None:
        if inputs:
            raise KerakpError("give either --landmarks CSV or MODEL IMAGES..., not both")
        names, feats = _landmark_features(landmarks)
    else:
        if len(inputs) < 2:
            raise KerakpError("give MODEL and at least one image or folder (or --landmarks CSV)")
        names, points, _, schema = _predict_images(inputs[0], inputs[1:], box, passes=2)
        feats = features(points, schema)
    tags = rule.tag(feats)
    frame = pd.DataFrame({"image": names, "tag": tags, "w": feats[:, 0], "h": feats[:, 1], "c": feats[:, 2]}).round(4)
    _write_csv(frame, out)
    counts = {tag: int((tags == tag).sum()) for tag in TAGS}
    untagged = int((tags == "").sum())
    click.echo(", ".join(f"{tag} {n}" for tag, n in counts.items()) + (f", no face {untagged}" if untagged else ""))
    click.echo(f"wrote {out}")


@emotion.command("calibrate")
@click.option("--landmarks", required=True, type=click.Path(path_type=Path), help="Landmark CSV of the labelled faces.")
@click.option("--labels", "labels_path", required=True, type=click.Path(path_type=Path),
              help="CSV with an image column and a label/expression column (positive|neutral|negative, smile|frown).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Starting thresholds (default: the published rule).")
@click.option("--out", default=Path("emotion_calibrated.yaml"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
def emotion_calibrate(landmarks, labels_path, config_path, out):
    """Fit the rule's thresholds on labelled faces; reports accuracy (on these faces) before and after."""
    import pandas as pd
    import yaml

    from kerakp.data.readers import _read_csv
    from kerakp.emotion import accuracy, confusion, fit_rule, load_rule, normalise_labels

    names, feats = _landmark_features(landmarks)
    table = _read_csv(labels_path)
    column = next((c for c in ("label", "expression", "tag") if c in table.columns), None)
    image_column = next((c for c in ("image", "image_name") if c in table.columns), table.columns[0])
    if column is None:
        raise KerakpError(f"{labels_path}: needs a 'label' or 'expression' column")
    labels = dict(zip(table[image_column], table[column]))
    known = [i for i, name in enumerate(names) if name in labels and not np.isnan(feats[i]).any()]
    if len(known) < 10:
        raise KerakpError(f"{labels_path}: only {len(known)} labelled faces match {landmarks}; need at least 10")
    truth = normalise_labels([labels[names[i]] for i in known])
    before, feats = load_rule(config_path), feats[known]
    after = fit_rule(feats, truth)
    for title, rule in (("before", before), ("after", after)):
        predicted = rule.tag(feats)
        click.echo(f"{title}: accuracy {accuracy(truth, predicted):.3f} on {len(known)} faces (rows: truth, columns: tag)")
        click.echo(pd.DataFrame(confusion(truth, predicted)).T.to_string())
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(f"# fitted by kerakp emotion calibrate on {landmarks} with {labels_path}\n"
                   + yaml.safe_dump({k: round(v, 4) for k, v in after.to_dict().items()}, sort_keys=False))
    tmp.replace(out)
    click.echo(f"wrote {out}")


@main.command()
@click.option("--out", default=DEFAULT_QUICKSTART, show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", "num_images", default=600, show_default=True, help="Synthetic faces to generate.")
@click.option("--epochs", default=None, type=int, help="Override the recipe's epochs.")
def quickstart(out, num_images, epochs):
    """Generate synthetic faces, train a small model, evaluate it end to end and print the results."""
    from kerakp.data.synthetic import write_synthetic_set

    data_csv = out / "data" / "landmarks.csv"
    if not data_csv.is_file():
        write_synthetic_set(out / "data", num_images)
    recipe = Path(__file__).parent / "recipes" / "quickstart.yaml"
    model_path = _run_training(data_csv, "ytf68", recipe, out / "run", False, {"epochs": epochs})
    click.echo("\nend-to-end evaluation on the held-out synthetic persons (Haar detector boxes):")
    _evaluate(model_path, data_csv, "ytf68", "detector", 2, out / "evaluate", "val")
    click.echo(f"training curves: {out / 'run' / 'training_curves.png'}")


if __name__ == "__main__":
    main()
