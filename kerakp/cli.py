"""The `kerakp` command line: each command parses its options, makes one call into the library (mostly
`kerakp.api.Landmarker`) and echoes the result. Heavy imports happen inside commands, so `--help` is quick."""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import click

from kerakp import __version__
from kerakp.zoo import PRESETS
from kerakp.config import DISTRIBUTIONS, PRECISIONS
from kerakp.data.readers import FORMATS as DATA_FORMATS
from kerakp.detect import DEFAULT_DETECTOR
from kerakp.errors import KerakpError, KerakpWarning
from kerakp.export import FORMATS as EXPORT_FORMATS
from kerakp.export import QUANTIZATIONS
from kerakp.inference import DEFAULT_TURN
from kerakp.io import catching_interrupts, interrupted
from kerakp.live import DEFAULT_BETA, DEFAULT_MIN_CUTOFF
from kerakp.models import HEADS, LOSSES

BOX_HELP = "Face box: the face detector (end to end), oracle (from ground truth, diagnosis only) or the full image."
DETECTOR_HELP = "Face detector: blazeface (MediaPipe's BlazeFace) or haar (OpenCV's cascade)."
MODEL_HELP = "MODEL: a .keras, .tflite or .onnx file, a SavedModel folder, or a packaged preset (300w, ytf68)."
TURN_HELP = ("Degrees: also read each face with its crop turned this far each way, and average the three "
             "readings (test-time augmentation: four more model calls per face); 0 turns it off.")
PASSES_HELP = ("Crop passes; each re-crops around the last prediction (turned level for a model trained upright). "
               "0 (fast): read the detector's box directly, turned by the eyes it saw.")
OVERWRITE_HELP = "Replace the output if it exists (otherwise an existing output is refused)."


def full(path) -> str:
    return str(Path(path).absolute())


def import_keras_quietly() -> None:
    """Import Keras with TensorFlow's C++ start-up lines (printed before any log level applies) kept off stderr."""
    if "keras" not in sys.modules:
        from kerakp.quiet import native_stderr_silenced

        require_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))
        with native_stderr_silenced():
            import keras  # noqa: F401


def runs_without_keras(model) -> bool:
    """A packaged preset or a .tflite / .onnx export runs without Keras (and so without the TensorFlow import)."""
    return model is not None and (str(model) in PRESETS or Path(str(model)).suffix in (".tflite", ".onnx"))


class KerakpCommand(click.Command):
    """A command that imports Keras quietly once its arguments have parsed (so `--help` stays instant), unless
    its MODEL runs without it."""

    def invoke(self, ctx):
        if not runs_without_keras(ctx.params.get("model")):
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


def show_warning(message, category, filename, lineno, file=None, line=None):
    """kerakp's own warnings as one line on stderr; others as Python prints them."""
    if issubclass(category, KerakpWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def exit_interrupted():
    """A Ctrl-C, however it arrived: one line and exit code 130."""
    click.echo("interrupted", err=True)
    sys.exit(130)


class KerakpGroup(click.Group):
    """The error boundary: bad input (`KerakpError`) and file-system errors become one line on stderr and exit
    code 2, an interrupt exit code 130, anything else one line and exit code 1 (the traceback with --debug
    or KERAKP_DEBUG=1)."""

    command_class = KerakpCommand

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Click's own usage errors (a missing argument, an option out of range) as one line too."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as err:
            where = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
            click.echo(f"error: {err.format_message()}{where}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            exit_interrupted()
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        warnings.showwarning = show_warning
        with catching_interrupts():
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.ClickException, click.Abort):
                raise
            except KerakpError as err:
                click.echo(f"error: {err}", err=True)
                sys.exit(2)
            except OSError as err:
                where = f"{err.filename}: " if err.filename else ""
                click.echo(f"error: {where}{err.strerror or err}", err=True)
                sys.exit(2)
            except KeyboardInterrupt:
                exit_interrupted()
            except Exception as err:
                if interrupted():  # a library turned the Ctrl-C into its own error
                    exit_interrupted()
                if ctx.find_root().params.get("debug") or os.environ.get("KERAKP_DEBUG"):
                    raise
                first = (str(err).strip().splitlines() or [""])[0][:200]
                click.echo(f"error: internal error in `kerakp {ctx.invoked_subcommand or ctx.info_name}`: {type(err).__name__}: "
                           f"{first} (run with --debug or KERAKP_DEBUG=1 for the traceback)", err=True)
                sys.exit(1)


BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}   # backend -> the package it needs


def require_backend(backend: str) -> None:
    """One line naming the package to install when a Keras backend's package is missing."""
    package = BACKENDS.get(backend)
    if package and importlib.util.find_spec(package) is None:
        raise KerakpError(f"the {backend} backend needs {package}, which is not installed: pip install {package}")


def select_backend(backend: str) -> None:
    """Set the Keras backend; it must happen before Keras is imported."""
    require_backend(backend)
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise KerakpError(f"Keras is already running on '{keras.backend.backend()}'; cannot switch to '{backend}'")
    os.environ["KERAS_BACKEND"] = backend


@click.group(name="kerakp", cls=KerakpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kerakp")
@click.option("--backend", type=click.Choice(list(BACKENDS)),
              help="Keras backend for this run (default: $KERAS_BACKEND, else tensorflow). Models move between backends.")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an internal error (also: KERAKP_DEBUG=1).")
def main(backend, debug):
    """kerakp: train, evaluate and run facial-landmark models (Keras 3).

    Start with `kerakp quickstart`, which generates a synthetic face set, trains a small model on it and
    evaluates it end to end. MODEL arguments take a file or a packaged preset (300w, ytf68).

    Exit codes: 0 done; 2 bad input (a missing or unreadable file, a wrong option, an existing output without
    --overwrite), with one line on stderr naming the culprit; 1 an internal error, one line (the traceback
    with --debug); 130 interrupted. No command leaves a half-written output behind.
    """
    if backend:
        select_backend(backend)


@main.command()
def info():
    """Print versions, the Keras backend, the devices Keras can use and the packaged models."""
    import platform

    import cv2
    import keras
    import numpy

    from kerakp.api import presets
    from kerakp.devices import list_devices

    click.echo(f"kerakp        {__version__}")
    click.echo(f"python        {platform.python_version()} ({platform.system()} {platform.machine()})")
    click.echo(f"keras         {keras.__version__} (backend: {keras.backend.backend()})")
    click.echo(f"numpy         {numpy.__version__}")
    click.echo(f"opencv        {cv2.__version__}")
    for backend, devices in list_devices().items():
        click.echo(f"{backend:<14}{devices}")
    for name, preset in presets().items():
        click.echo(f"preset {name:<7}{preset.path} ({preset.summary})")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", "num_images", default=600, show_default=True, type=click.IntRange(min=1), help="Number of faces.")
@click.option("--per-person", default=6, show_default=True, type=click.IntRange(min=1), help="Images of each synthetic person.")
@click.option("--size", default=160, show_default=True, type=click.IntRange(min=32), help="Image side in pixels.")
@click.option("--roll", default=25.0, show_default=True, type=click.FloatRange(0, 90), help="Maximum head roll in degrees.")
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def synth(out_dir, num_images, per_person, size, roll, seed, overwrite):
    """Generate a synthetic labelled face set (iBUG 68 + expression) in OUT_DIR."""
    from kerakp.data.synthetic import write_synthetic_set

    csv = write_synthetic_set(out_dir, num_images, per_person, size, roll, seed, overwrite=overwrite)
    click.echo(f"wrote {num_images} faces: {full(csv)}")


def _overrides(options: dict, sets: tuple[str, ...]) -> dict:
    from kerakp.config import parse_value

    overrides = {k: v for k, v in options.items() if v is not None}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KerakpError(f"--set expects KEY=VALUE, got '{item}'")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--config", "config_path", help="YAML recipe: a file, or a packaged recipe's name (kerakp/recipes/).")
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
@click.option("--workers", type=int, help="Data-loading threads beside the model (default 1; processes with --set use_multiprocessing=true).")
@click.option("--cache-mb", type=int, help="Decoded images kept in memory, in MB, per process (default 2048; 0: none).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Keras dtype policy for training (the heads stay float32; the saved model is float32).")
@click.option("--distribute", type=click.Choice([d for d in DISTRIBUTIONS if d]),
              help="Data-parallel training over every local device (JAX: keras.distribution; TensorFlow: MirroredStrategy).")
@click.option("--tensorboard/--no-tensorboard", default=None, help="Also write TensorBoard logs.")
@click.option("--extra-data", multiple=True, type=click.Path(path_type=Path),
              help="Another labelled set of the same markup to train on (repeatable); never validated on.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. augment.rotation=10.")
@click.option("--detector", help="Fit only this face detector's box calibration (default: every detector).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (same split and schedule).")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out (otherwise a folder holding a run is refused).")
def train(data_path, data_format, config_path, out, resume, overwrite, sets, extra_data, **options):
    """Train a landmark model; writes model.keras, history and curves into --out."""
    from kerakp.api import Landmarker

    options["extra_data"] = [str(path) for path in extra_data] or None
    model = Landmarker.train(data_path, config_path, out, format=data_format, resume=resume, overwrite=overwrite,
                             **_overrides(options, sets))
    click.echo(f"model: {full(model.path)}\ncurves: {full(out / 'training_curves.png')}")


@main.command()
@click.argument("teacher", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@click.option("--images", multiple=True, type=click.Path(path_type=Path),
              help="Unlabelled images or folders the teacher labels for the student (repeatable; default: the recipe's).")
@click.option("--config", "config_path", required=True, help="The student's recipe: a file, or a packaged recipe's name.")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--out", default=Path("runs/distill"), show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--epochs", type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. teacher_weight=0.5.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (same split and schedule).")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out (otherwise a folder holding a run is refused).")
def distill(teacher, data_path, images, config_path, data_format, out, epochs, sets, resume, overwrite):
    """Train a compact student on what TEACHER (a model or preset) reads in every crop the student sees.

    The student trains on the teacher's flip-averaged reading of each augmented crop (beside the label where
    one exists), and the teacher also labels --images for it; the validation persons are the teacher's.
    Example: `kerakp distill 300w --data ../shared/data/300w_train --config 300w_fast --out runs/300w_fast`.
    """
    from kerakp.api import Landmarker

    student = Landmarker(teacher, box="full").distill(data_path, config_path, out, images=images, format=data_format,
                                                       resume=resume, overwrite=overwrite, **_overrides({"epochs": epochs}, sets))
    click.echo(f"model: {full(student.path)}\ncurves: {full(out / 'training_curves.png')}")


@main.command()
@click.option("--backbones", default="mobilenetv2,efficientnetv2b0,resnet18,resnet34,simplecnn", show_default=True,
              help="Comma-separated backbones to train under the same recipe.")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--budget", type=int, help="Epochs per backbone (default: the recipe's).")
@click.option("--config", "config_path", help="YAML recipe shared by every backbone (a file or a packaged recipe's name).")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of local ImageNet weights; a backbone whose name starts a file's name starts from it, others from scratch.")
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "oracle", "full"]), help=BOX_HELP)
@click.option("--out", default=Path("runs/compare"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key for every backbone.")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def compare(backbones, data_path, data_format, budget, config_path, weights_dir, box, out, sets, overwrite):
    """Train each backbone under one recipe and budget; evaluate all on the same validation split.

    Writes compare.md / compare.json (NME, PCK@0.10, AUC, failure rate, parameters, Keras ms per crop,
    model size, training time), ced.png (all backbones) and nme_vs_latency.png into --out.
    """
    from kerakp.compare import compare_backbones, markdown_table

    table = compare_backbones(backbones, data_path, config_path, _overrides({"epochs": budget}, sets), out, box,
                              weights_dir, data_format, overwrite)
    click.echo(markdown_table(table))
    click.echo(f"table: {full(out / 'compare.md')}\nplots: {full(out / 'ced.png')}, {full(out / 'nme_vs_latency.png')}")


@main.command("fit-detector")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="The full-size labelled set MODEL trained on.")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--images", default=400, show_default=True, type=click.IntRange(min=1), help="Training images to fit on.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the model here instead of replacing MODEL.")
@click.option("--detector", help="Fit only this face detector's box calibration, keeping the others (default: every detector).")
@click.option("--offsets/--no-offsets", default=True, show_default=True, help="Also refit the point offsets.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def fit_detector(model, data_path, data_format, images, out, detector, offsets, overwrite):
    """Fit MODEL's detector-box -> landmark-box calibrations and its point offsets on the training part of DATA.

    `kerakp train` does this itself; a model trained on compact face crops (scripts/gpu_train.sh) needs it
    afterwards on the original images, where the detector sees whole faces. The point offsets are the median
    residuals of the model's final landmarks per point, added back at inference. An exported model (.tflite,
    .onnx) gets them in its <file>.json. Without --out, MODEL is replaced.
    """
    import numpy as np

    from kerakp.api import Landmarker
    from kerakp.io import refuse_existing

    if out is not None:
        refuse_existing(out, overwrite)
    fitted = Landmarker(model, box="full").fit_detector(data_path, images, detector, offsets, out, data_format)
    for name, calibration in fitted.info.box_calibration.items():
        click.echo(f"{name}: dx {calibration['dx']:.3f}, dy {calibration['dy']:.3f}, scale {calibration['scale']:.3f} "
                   f"from {calibration['samples']} faces{', and a fit from where it saw the eyes' if calibration.get('eyes') else ''}")
    if offsets and fitted.info.point_offsets:
        shifts = np.linalg.norm(fitted.info.point_offsets, axis=-1) * fitted.info.crop.size  # (2, K)
        click.echo(f"point offsets in a {fitted.info.crop.size} px crop: direct reading median "
                   f"{np.median(shifts[0]):.2f} px, mirrored {np.median(shifts[1]):.2f} px, largest {shifts.max():.2f} px")
    click.echo(f"wrote {full(fitted.path)}")


@main.command()
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "fmt", required=True, type=click.Choice([f for f in DATA_FORMATS[1:] if f != "pack"]),
              help="Output layout (csv is the image_name,point_1_x,... format).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS), help="Input layout.")
@click.option("--markup", help="Convert the points to this markup (five or kaggle15) from any markup that has their parts.")
@click.option("--crop", "crop_size", type=click.IntRange(min=16), help="Write SIZE x SIZE face crops instead of the original images (a compact copy).")
@click.option("--context", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="With --crop: crop side / landmark-box side.")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="With --crop: JPEG quality of the crops.")
def convert(data_path, out, fmt, data_format, markup, crop_size, context, quality):
    """Write the labelled set DATA in another layout or markup into the new folder OUT.

    Examples: 300-W .pts to CSV: `kerakp convert ../300w_train out/300w --to ytf68`; 68 to 5 points:
    `--to csv --markup five`; a compact copy for another machine: `--crop 160`.
    """
    from kerakp.data.readers import load_dataset
    from kerakp.data.writers import write_dataset

    data = load_dataset(data_path, data_format)
    written = write_dataset(data, out, fmt, markup, crop_size, context, quality=quality)
    click.echo(f"wrote {len(data)} faces ({data.schema.name} -> {markup or fmt}): {full(written)}")


@main.command()
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", required=True, type=click.IntRange(min=16),
              help="Crop side in pixels: at least the recipe's input size x context / crop_scale.")
@click.option("--context", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Crop side / landmark-box side (room for the augmentation).")
@click.option("--quality", type=click.IntRange(1, 100), help="Store the crops as JPEG of this quality (a few times smaller).")
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS), help="Input layout.")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def pack(data_path, out, size, context, quality, data_format, overwrite):
    """Pack a labelled set for large or repeated training: face crops in one file that
    `kerakp train --data OUT` reads with the same persons, markup and validation split, in bounded memory."""
    from kerakp.data.pack import write_pack
    from kerakp.data.readers import load_dataset

    data = load_dataset(data_path, data_format)
    folder = write_pack(data, out, size, context, quality, overwrite=overwrite)
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    click.echo(f"packed {len(data)} faces ({data.schema.name}, {size} px, context {context}): {full(folder)} ({size_mb:.1f} MB)")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path))
@click.option("--format", "data_format", default="auto", show_default=True, type=click.Choice(DATA_FORMATS))
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "oracle", "full"]), help=BOX_HELP)
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, help=DETECTOR_HELP)
@click.option("--passes", default=2, show_default=True, type=click.IntRange(0, 10), help=PASSES_HELP)
@click.option("--turn", default=DEFAULT_TURN, show_default=True, type=click.FloatRange(0, 45), help=TURN_HELP)
@click.option("--subset", default="all", show_default=True, type=click.Choice(["all", "val", "train"]),
              help="Evaluate on the model's own person-wise validation split (val), its training part, or all.")
@click.option("--out", default=Path("runs/evaluate"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def evaluate(model, data_path, data_format, box, detector, passes, turn, subset, out, overwrite):
    """Measure MODEL end to end on labelled data: NME, PCK, AUC, failure rate; CED and grid plots.

    Each image's one labelled face is scored against the detected face the model reads most consistently.
    """
    from kerakp.api import Landmarker
    from kerakp.evaluate import format_metrics
    from kerakp.io import refuse_existing

    refuse_existing(out, overwrite)
    metrics = Landmarker(model, detector=detector, box=box, passes=passes, turn=turn).evaluate(
        data_path, subset, out, data_format, overwrite=True)
    click.echo(format_metrics(metrics))
    click.echo(f"report: {full(out / 'metrics.json')}, {full(out / 'per_image.csv')}\n"
               f"plots:  {full(out / 'ced.png')}, {full(out / 'grid.png')}")


def _report_skipped(results) -> None:
    """One warning line for the files skipped as unreadable; an error when no image could be read."""
    skipped = results.skipped
    if skipped and len(skipped) == len(results.images):
        raise KerakpError(f"no readable image: {skipped[0].error}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
    if skipped:
        names = ", ".join(item.name for item in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        click.echo(f"warning: skipped {len(skipped)} of {len(results.images)} files, not readable images: {names}", err=True)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("predictions.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]), help=BOX_HELP)
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, help=DETECTOR_HELP)
@click.option("--max-faces", type=click.IntRange(min=1),
              help="At most this many faces per image, the surest (default: every face found). 1 writes one row "
                   "per image without the face column: the face the model reads most consistently.")
@click.option("--passes", default=2, show_default=True, type=click.IntRange(0, 10), help=PASSES_HELP)
@click.option("--turn", default=DEFAULT_TURN, show_default=True, type=click.FloatRange(0, 45), help=TURN_HELP)
@click.option("--fallback/--no-fallback", default=True, show_default=True,
              help="Where the detector finds no face (with --max-faces 1: or none the model reads consistently), "
                   "read the whole image instead: every image gets landmarks, and the detected column says whose box won.")
@click.option("--pose", is_flag=True, help="Add each face's head pose: yaw, pitch, roll in degrees (see README).")
@click.option("--confidence", is_flag=True, help="Add each point's confidence in 0..1: c0, c1, ...")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def predict(model, paths, out, box, detector, max_faces, passes, turn, fallback, pose, confidence, overwrite):
    """Predict landmarks for images or folders: one row per face (image, face, found, detected, x0, y0, ... in
    image pixels; face 0 is the largest), or per image with --max-faces 1. Files that are not readable images
    are skipped and listed; the exit code is 0 when at least one image was read."""
    from kerakp.api import Landmarker
    from kerakp.io import refuse_existing

    refuse_existing(out, overwrite)
    results = Landmarker(model, detector=detector, box=box, passes=passes, turn=turn, fallback=fallback).predict_many(
        paths, max_faces, progress=True)
    _report_skipped(results)
    table = results.table(pose, confidence)
    results.to_csv(out, overwrite=True, pose=pose, confidence=confidence)
    read = table["image"].nunique()
    found = table.loc[table["found"] == 1, "image"].nunique()
    click.echo(f"{int(table['found'].sum())} faces in {found} of {read} images "
               f"({int(table['detected'].sum())} from the detector's box); wrote {full(out)}")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("labels"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="New folder: the labelled set (readable by `kerakp train --data`) and annotations.csv.")
@click.option("--format", "fmt", default="ytf68", show_default=True, type=click.Choice(["ytf68", "pts", "csv5"]),
              help="csv5 writes the 5-point CSV (converted through the markup's named points).")
@click.option("--max-disagreement", type=click.FloatRange(min=0),
              help="Leave out faces whose flip disagreement (NME between the image's and its mirror's prediction) exceeds this.")
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]), help=BOX_HELP)
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, help=DETECTOR_HELP)
@click.option("--max-faces", type=click.IntRange(min=1),
              help="At most this many faces per image, the surest (default: every face found); a second face of "
                   "photo.jpg is labelled as photo_face1.jpg.")
def annotate(model, paths, out, fmt, max_disagreement, box, detector, max_faces):
    """Label unlabelled face images with MODEL (the teacher), with a confidence proxy per face."""
    import numpy as np

    from kerakp.api import Landmarker

    written, table = Landmarker(model, detector=detector, box=box).annotate(paths, out, fmt, max_disagreement, max_faces)
    click.echo(f"labelled {int(table['kept'].sum())} faces in {table['image'].nunique()} images "
               f"(no face: {int((table['found'] == 0).sum())}, above --max-disagreement: "
               f"{int(((table['found'] == 1) & (table['kept'] == 0)).sum())}); median flip NME {np.nanmedian(table['flip_nme']):.4f}")
    click.echo(f"labels: {full(written)}\nper face: {full(out / 'annotations.csv')}")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="New folder for the crops.")
@click.option("--size", default=112, show_default=True, type=click.IntRange(min=16), help="Crop side in pixels.")
@click.option("--max-faces", type=click.IntRange(min=1), help="At most this many faces per image, the surest.")
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, help=DETECTOR_HELP)
def align(model, paths, out, size, max_faces, detector):
    """Write aligned face crops: each face turned, scaled and moved so its eye centres, nose tip and mouth
    corners lie nearest the ArcFace template (for 112 px: eyes at (38.3, 51.7) and (73.5, 51.5), nose tip
    (56.0, 71.7), mouth corners (41.5, 92.4) and (70.7, 92.2)), for recognition pipelines."""
    from kerakp.api import Landmarker

    folder, count = Landmarker(model, detector=detector).align(paths, out, size, max_faces)
    click.echo(f"wrote {count} aligned faces: {full(folder)}")


@main.command("kaggle-submit")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--test", "test_csv", required=True, type=click.Path(path_type=Path), help="The competition's test.csv (ImageId, Image).")
@click.option("--lookup", "lookup_csv", required=True, type=click.Path(path_type=Path), help="IdLookupTable.csv (RowId, ImageId, FeatureName).")
@click.option("--out", default=Path("submission.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def kaggle_submit(model, test_csv, lookup_csv, out, overwrite):
    """Write a Kaggle Facial Keypoints submission (RowId, Location) with a kaggle15 MODEL (whole-image crops)."""
    from kerakp.api import Landmarker
    from kerakp.io import refuse_existing, write_csv

    refuse_existing(out, overwrite)
    table = Landmarker(model).kaggle_submission(test_csv, lookup_csv)
    write_csv(table, out)
    click.echo(f"wrote {len(table)} locations: {full(out)}")


@main.command(cls=TensorFlowCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="tflite", show_default=True, type=click.Choice(list(EXPORT_FORMATS)))
@click.option("--quantize", default="none", show_default=True, type=click.Choice(QUANTIZATIONS),
              help="TFLite only; int8 needs --calibration.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Labelled faces (training data) for int8 ranges and the parity check (default: synthetic faces).")
@click.option("--out", type=click.Path(path_type=Path), help="Output file (default: beside MODEL, named after it).")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def export(model, fmt, quantize, calibration, out, overwrite):
    """Export MODEL (.keras, trained on any backend) to TFLite, ONNX or a SavedModel, with a parity check
    stored in <file>.json. Runs on the TensorFlow backend."""
    import json

    from kerakp.api import Landmarker
    from kerakp.runtime import sidecar_of

    path = Landmarker(model, box="full").export(fmt, quantize, out, calibration, overwrite)
    report = json.loads(sidecar_of(path).read_text())
    parity = report["parity"]
    click.echo(f"wrote {path} ({report['size_bytes'] / 1e6:.2f} MB)")
    click.echo(f"parity on {parity['crops']} crops ({parity['source']}): max |export - keras| {parity['max_abs_diff']:.2e}, "
               f"NME {parity['nme_keras']:.4f} -> {parity['nme_export']:.4f} ({parity['nme_change']:+.4f})")


@main.command()
@click.option("--tflite", "--model", "model", default="300w", show_default=True,
              help="Landmark model: .tflite (fastest on a CPU), .onnx, .keras or a packaged preset.")
@click.option("--source", default="0", show_default=True, help="Camera index or video file.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Write the annotated video here (r toggles).")
@click.option("--headless", is_flag=True, help="No window: for servers and tests (still records and writes stats).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path), help="Write run statistics (JSON) here.")
@click.option("--landmarks", "landmarks_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write per-frame landmarks here: frame, face, x0, y0, ... (one row per face per frame).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Inference threads (TFLite and ONNX).")
@click.option("--max-faces", type=click.IntRange(min=1), help="Track at most this many faces (default: every face found).")
@click.option("--redetect-every", default=30, show_default=True, type=click.IntRange(min=1), help="Run the face detector at least every N frames.")
@click.option("--min-cutoff", default=DEFAULT_MIN_CUTOFF, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="One Euro filter: the cutoff (Hz) of a still face; lower is steadier.")
@click.option("--beta", default=DEFAULT_BETA, show_default=True, type=click.FloatRange(min=0),
              help="One Euro filter: how fast the cutoff rises with speed; higher lags less.")
@click.option("--emotion-config", type=click.Path(path_type=Path), help="Expression thresholds YAML (default: kerakp's fitted rule).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, help=DETECTOR_HELP)
@click.option("--mirror", is_flag=True, help="Read each tracked face's crop and its mirror: as accurate as reading "
              "every frame alone, at twice the model time.")
@click.option("--overwrite", is_flag=True, help="Replace --record, --stats and --landmarks files if they exist.")
def live(model, source, record, headless, stats_path, landmarks_path, threads, max_faces, redetect_every, min_cutoff,
         beta, emotion_config, max_frames, detector, mirror, overwrite):
    """Track the faces of a camera or video live: q quits, r toggles recording, s saves a snapshot."""
    import cv2

    from kerakp.api import Landmarker
    from kerakp.emotion import load_rule
    from kerakp.io import refuse_existing
    from kerakp.live import run_live

    for path in (record, stats_path, landmarks_path):
        if path is not None:
            refuse_existing(path, overwrite)
    cv2.setNumThreads(threads)
    landmarker = Landmarker(model, detector=detector, threads=threads)
    summary = run_live(landmarker.predictor, source, record, headless, stats_path, redetect_every, load_rule(emotion_config),
                       max_frames, max_faces, min_cutoff, beta, landmarks_path, mirror=mirror)
    infer = summary["latency_ms"].get("infer", {})
    click.echo(f"{summary['frames']} frames in {summary['wall_s']:.2f} s: {summary['fps']:.1f} FPS; "
               f"model {infer.get('p50', float('nan')):.2f} ms (p50); {summary['faces_per_frame']:.2f} faces per frame; "
               f"detector calls {summary['detector_calls']}, track losses {summary['track_losses']}; blinks {summary['blinks']}; "
               f"tags {summary['emotion_counts']}")
    for label, path in (("stats", stats_path), ("landmarks", landmarks_path), ("video", record)):
        if path:
            click.echo(f"{label}: {full(path)}")


@main.command("synth-video")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", default=120, show_default=True, type=click.IntRange(min=1))
@click.option("--width", default=640, show_default=True, type=click.IntRange(min=64))
@click.option("--height", default=480, show_default=True, type=click.IntRange(min=64))
@click.option("--seed", default=1, show_default=True, help="Which synthetic person.")
@click.option("--motion", default="move", show_default=True, type=click.Choice(["move", "still"]),
              help="move: drifting, rolling, zooming and smiling; still: one pose, fresh sensor noise each frame.")
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def synth_video(out, frames, width, height, seed, motion, overwrite):
    """Write a video of a synthetic face (.mp4 or .avi) and its true landmarks per frame (OUT.csv)."""
    from kerakp.data.synthetic import write_synthetic_video

    path = write_synthetic_video(out, frames, width, height, seed=seed, overwrite=overwrite, motion=motion)
    click.echo(f"wrote {frames} frames: {full(path)} (landmarks: {full(path)}.csv)")


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


@emotion.command("tag")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path), metavar="[MODEL IMAGES_OR_FOLDERS...]")
@click.option("--landmarks", type=click.Path(path_type=Path), help="Tag a landmark CSV (kerakp predict output or ground truth) instead.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Thresholds YAML (default: kerakp's fitted rule; the published one: kerakp/recipes/emotion_published.yaml).")
@click.option("--out", default=Path("emotions.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]), help=BOX_HELP)
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def emotion_tag(inputs, landmarks, config_path, out, box, overwrite):
    """Tag each face; writes image, tag, w, h, c and prints the tag counts."""
    from kerakp.api import Landmarker
    from kerakp.data.readers import read_landmark_table
    from kerakp.emotion import TAGS, load_rule, tag_table
    from kerakp.io import refuse_existing, write_csv

    refuse_existing(out, overwrite)
    rule = load_rule(config_path)
    if landmarks is not None:
        if inputs:
            raise KerakpError("give either --landmarks CSV or MODEL IMAGES..., not both")
        table = tag_table(*read_landmark_table(landmarks), rule)
    else:
        if len(inputs) < 2:
            raise KerakpError("give MODEL and at least one image or folder (or --landmarks CSV)")
        table = Landmarker(inputs[0], box=box).emotions(inputs[1:], rule)
    write_csv(table, out)
    counts = {tag: int((table["tag"] == tag).sum()) for tag in TAGS}
    untagged = int((table["tag"] == "").sum())
    click.echo(", ".join(f"{tag} {n}" for tag, n in counts.items()) + (f", no face {untagged}" if untagged else ""))
    click.echo(f"wrote {full(out)}")


@emotion.command("calibrate")
@click.option("--landmarks", required=True, type=click.Path(path_type=Path), help="Landmark CSV of the labelled faces.")
@click.option("--labels", "labels_path", required=True, type=click.Path(path_type=Path),
              help="CSV with an image column and a label/expression column (positive|neutral|negative, smile|frown).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Starting thresholds (default: kerakp's fitted rule).")
@click.option("--out", default=Path("emotion_calibrated.yaml"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)
def emotion_calibrate(landmarks, labels_path, config_path, out, overwrite):
    """Fit the rule's thresholds on labelled faces; reports accuracy (on these faces) before and after."""
    import pandas as pd

    from kerakp.emotion import calibrate, load_rule, save_rule
    from kerakp.io import refuse_existing

    refuse_existing(out, overwrite)
    fitted, report = calibrate(landmarks, labels_path, load_rule(config_path))
    for title, entry in report.items():
        click.echo(f"{title}: accuracy {entry['accuracy']:.3f} on {entry['faces']} faces (rows: truth, columns: tag)")
        click.echo(pd.DataFrame(entry["confusion"]).T.to_string())
    save_rule(fitted, out, f"fitted by kerakp emotion calibrate on {landmarks} with {labels_path}")
    click.echo(f"wrote {full(out)}")


@main.command()
@click.option("--out", default=Path("runs/quickstart"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Its folder; a later quickstart reuses its faces and replaces its run.")
@click.option("--images", "num_images", default=600, show_default=True, type=click.IntRange(min=12), help="Synthetic faces to generate.")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, help=DETECTOR_HELP)
def quickstart(out, num_images, epochs, detector):
    """Generate synthetic faces, train a small model, evaluate it end to end and print the results."""
    from kerakp.evaluate import format_metrics
    from kerakp.quickstart import quickstart as run_quickstart

    metrics, model = run_quickstart(out, num_images, epochs, detector)
    click.echo(f"\nend-to-end evaluation on the held-out synthetic persons ({detector} detector boxes):")
    click.echo(format_metrics(metrics))
    click.echo(f"model: {full(model)}\nreport: {full(out / 'evaluate' / 'metrics.json')}\n"
               f"plots: {full(out / 'evaluate' / 'ced.png')}, {full(out / 'evaluate' / 'grid.png')}, "
               f"{full(out / 'run' / 'training_curves.png')}")


if __name__ == "__main__":
    main()
