"""Commands that make models: train, distill, compare, fit-detector, export."""
from __future__ import annotations

from pathlib import Path

import click

from kerakp.cli.app import (
    TensorFlowCommand,
    data_format_option,
    full,
    main,
    model_argument,
    overwrite_option,
    sets_option,
)
from kerakp.config import DISTRIBUTIONS, PRECISIONS, overrides_from
from kerakp.export import FORMATS as EXPORT_FORMATS
from kerakp.export import QUANTIZATIONS
from kerakp.models.backbones import BACKBONES
from kerakp.models.heads import HEADS
from kerakp.models.losses import LOSSES

RUN_HELP = "Run folder."
RESUME_HELP = "Continue the interrupted run in --out (same split and schedule)."
REPLACE_RUN_HELP = "Replace the run in --out (otherwise a folder holding a run is refused)."


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@data_format_option()
@click.option("--config", "config_path", help="YAML recipe: a file, or a packaged recipe's name (kerakp/recipes/).")
@click.option("--out", default=Path("runs/train"), show_default=True, type=click.Path(file_okay=False, path_type=Path), help=RUN_HELP)
@click.option("--backbone", type=click.Choice(list(BACKBONES)), help="Feature extractor (kerakp.models.backbones).")
@click.option("--weights", help="none, imagenet, or a local weights file for the backbone.")
@click.option("--input-size", type=int, help="Model input side in pixels.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--learning-rate", "--lr", "learning_rate", type=float)
@click.option("--head", type=click.Choice(list(HEADS)), help="Head (kerakp.models.heads).")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Start from a trained .keras model wherever layers match (e.g. a new head on its backbone).")
@click.option("--loss", type=click.Choice(list(LOSSES)), help="Loss (kerakp.models.losses).")
@click.option("--val-fraction", type=float, help="Share of persons held out for validation.")
@click.option("--seed", type=int, help="Seeds the person split, augmentation, initial weights and dropout.")
@click.option("--workers", type=int, help="Data-loading threads beside the model (default 1; processes with --set use_multiprocessing=true).")
@click.option("--cache-mb", type=int, help="Decoded images kept in memory, in MB, per process (default 2048; 0: none).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Keras dtype policy for training (the heads stay float32; the saved model is float32).")
@click.option("--distribute", type=click.Choice([d for d in DISTRIBUTIONS if d]),
              help="Data-parallel training over every local device (JAX: keras.distribution; TensorFlow: MirroredStrategy).")
@click.option("--processes", type=click.IntRange(min=1), default=1,
              help="Train data-parallel over this many local processes (JAX; kerakp.launch).")
@click.option("--ray", metavar="ADDRESS", help="Train data-parallel with one process per node of the Ray cluster at ADDRESS "
              "(auto, ray://HOST:10001; JAX; pip install 'kerakp[ray]'). Data and --out must be on a disk every node sees.")
@click.option("--tensorboard/--no-tensorboard", default=None, help="Also write TensorBoard logs.")
@click.option("--extra-data", multiple=True, type=click.Path(path_type=Path),
              help="Another labelled set of the same markup to train on (repeatable); never validated on.")
@sets_option()
@click.option("--detector", help="Fit only this face detector's box calibration (default: every detector).")
@click.option("--resume", is_flag=True, help=RESUME_HELP)
@overwrite_option(REPLACE_RUN_HELP)
def train(data_path, data_format, config_path, out, resume, overwrite, sets, extra_data, processes, ray, **options):
    """Train a landmark model; writes model.keras, history and curves into --out."""
    from kerakp.api import Landmarker
    from kerakp.launch import ProcessFailed

    options["extra_data"] = [str(path) for path in extra_data] or None
    try:
        model = Landmarker.train(data_path, config_path, out, format=data_format, resume=resume, overwrite=overwrite,
                                 processes=processes, ray=ray, **overrides_from(options, sets))
    except ProcessFailed as err:
        raise click.ClickException(str(err)) from None     # one line, exit code 1
    if processes == 1 and not ray:      # a launched run's process 0 has said it
        click.echo(f"model: {full(model.path)}\ncurves: {full(out / 'training_curves.png')}")


@main.command()
@click.argument("teacher", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@click.option("--images", multiple=True, type=click.Path(path_type=Path),
              help="Unlabelled images or folders the teacher labels for the student (repeatable; default: the recipe's).")
@click.option("--config", "config_path", required=True, help="The student's recipe: a file, or a packaged recipe's name.")
@data_format_option()
@click.option("--out", default=Path("runs/distill"), show_default=True, type=click.Path(file_okay=False, path_type=Path), help=RUN_HELP)
@click.option("--epochs", type=int)
@sets_option("Override any config key, e.g. teacher_weight=0.5.")
@click.option("--resume", is_flag=True, help=RESUME_HELP)
@overwrite_option(REPLACE_RUN_HELP)
def distill(teacher, data_path, images, config_path, data_format, out, epochs, sets, resume, overwrite):
    """Train a compact student on what TEACHER (a model or preset) reads in every crop the student sees.

    The student trains on the teacher's flip-averaged reading of each augmented crop (beside the label where
    one exists), and the teacher also labels --images for it; the validation persons are the teacher's.
    Example: `kerakp distill 300w --data ../shared/data/300w_train --config 300w_fast --out runs/300w_fast`.
    """
    from kerakp.api import Landmarker

    student = Landmarker(teacher, box="full").distill(data_path, config_path, out, images=images, format=data_format,
                                                       resume=resume, overwrite=overwrite,
                                                       **overrides_from({"epochs": epochs}, sets))
    click.echo(f"model: {full(student.path)}\ncurves: {full(out / 'training_curves.png')}")


@main.command()
@click.option("--backbones", default="mobilenetv2,efficientnetv2b0,resnet18,resnet34,simplecnn", show_default=True,
              help=f"Comma-separated backbones to train under the same recipe ({', '.join(BACKBONES)}).")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Labelled set (CSV or folder).")
@data_format_option()
@click.option("--budget", type=int, help="Epochs per backbone (default: the recipe's).")
@click.option("--config", "config_path", help="YAML recipe shared by every backbone (a file or a packaged recipe's name).")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of local ImageNet weights; a backbone whose name starts a file's name starts from it, others from scratch.")
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "oracle", "full"]),
              help="Face box of the evaluation: the detector (end to end), oracle (ground truth) or the full image.")
@click.option("--out", default=Path("runs/compare"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@sets_option("Override any config key for every backbone.")
@overwrite_option()
def compare(backbones, data_path, data_format, budget, config_path, weights_dir, box, out, sets, overwrite):
    """Train each backbone under one recipe and budget; evaluate all on the same validation split.

    Writes compare.md / compare.json (NME, PCK@0.10, AUC, failure rate, parameters, Keras ms per crop,
    model size, training time), ced.png (all backbones) and nme_vs_latency.png into --out.
    """
    from kerakp.compare import compare_backbones, markdown_table

    table = compare_backbones(backbones, data_path, config_path, overrides_from({"epochs": budget}, sets), out, box,
                              weights_dir, data_format, overwrite)
    click.echo(markdown_table(table))
    click.echo(f"table: {full(out / 'compare.md')}\nplots: {full(out / 'ced.png')}, {full(out / 'nme_vs_latency.png')}")


@main.command("fit-detector")
@model_argument()
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="The full-size labelled set MODEL trained on.")
@data_format_option()
@click.option("--images", default=400, show_default=True, type=click.IntRange(min=1), help="Training images to fit on.")
@click.option("--extra", "extra", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="A set of turned faces (a `kerakp profile` folder, the model's markup) whose training part also "
                   "fits the box calibration, up to --images faces of it (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the model here instead of replacing MODEL.")
@click.option("--detector", help="Fit only this face detector's box calibration, keeping the others (default: every detector).")
@click.option("--offsets/--no-offsets", default=True, show_default=True, help="Also refit the point offsets.")
@overwrite_option("Replace --out if it exists.")
def fit_detector(model, data_path, data_format, images, extra, out, detector, offsets, overwrite):
    """Fit MODEL's detector-box -> landmark-box calibrations and its point offsets on the training part of DATA.

    `kerakp train` does this itself; a model trained on compact face crops (scripts/gpu_train.sh) needs it
    afterwards on the original images, where the detector sees whole faces. The point offsets are the median
    residuals of the model's final landmarks per point, added back at inference. An exported model (.tflite,
    .onnx) gets them in its <file>.json. Without --out, MODEL is replaced. `--extra runs/profiled_300w` fits the
    box on turned faces too (`kerakp profile`'s copies; faces with hidden points, as AFLW's, cannot fit a box).
    """
    from kerakp.api import Landmarker

    fitted = Landmarker(model, box="full").fit_detector(data_path, images, detector, offsets, out, data_format,
                                                        overwrite=overwrite, extra=extra)
    for line in fitted.info.describe_fit():
        click.echo(line)
    click.echo(f"wrote {full(fitted.path)}")


@main.command(cls=TensorFlowCommand)
@model_argument()
@click.option("--format", "fmt", default="tflite", show_default=True, type=click.Choice(list(EXPORT_FORMATS)))
@click.option("--quantize", default="none", show_default=True, type=click.Choice(QUANTIZATIONS),
              help="TFLite only; int8 sets its ranges on the --calibration faces (best: the training data); "
                   "int8-float-head is int8 in the backbone with the head left in float (a heatmap head keeps its "
                   "accuracy, most of int8's saving stays).")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Labelled faces (training data, the model's markup or one convertible to it) for int8 ranges and "
                   "the parity check, which then also reports NME against their labels (default: synthetic faces, "
                   "outputs compared only).")
@click.option("--out", type=click.Path(path_type=Path), help="Output file, or folder for web (default: beside MODEL, named after it).")
@overwrite_option()
def export(model, fmt, quantize, calibration, out, overwrite):
    """Export MODEL (.keras, trained on any backend) to TFLite, ONNX or a SavedModel, with a parity check
    stored in <file>.json. Runs on the TensorFlow backend.

    `--format web` writes a folder with a page that runs MODEL (a .keras model, a .tflite export or a preset)
    live in the browser, offline; open it with `kerakp serve FOLDER`.
    """
    from kerakp.export import export_model

    report = export_model(model, fmt, quantize, out, calibration, overwrite)
    if fmt == "web":   # a page: its landmark file was parity-checked when it was exported to TFLite
        click.echo(f"wrote {report['file']} ({report['size_bytes'] / 1e6:.2f} MB); open it with `kerakp serve {report['file']}`")
        return
    parity = report["parity"]
    click.echo(f"wrote {report['file']} ({report['size_bytes'] / 1e6:.2f} MB)")
    against = (f"crop NME against the labels {parity['nme_keras']:.4f} -> {parity['nme_export']:.4f} "
               f"({parity['nme_change']:+.4f})" if parity["labels"] else
               f"points {parity['shift_to_keras']:.1e} crop sides from the Keras model's (no labels: outputs compared)")
    click.echo(f"parity on {parity['crops']} crops ({parity['source']}): max |export - keras| {parity['max_abs_diff']:.2e}, "
               f"{against}")


@main.command(cls=click.Command)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
def serve(folder, port):
    """Serve FOLDER, a page written by `kerakp export --format web`, on 127.0.0.1 (Ctrl-C stops it).

    Sent with the cross-origin isolation headers (COOP/COEP) WebAssembly threads need. A phone's camera needs
    HTTPS: see the guide, "Landmarks in the browser".
    """
    from kerakp.web import serve as serving

    server = serving(folder, port)
    click.echo(f"serving {full(folder)} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    with server:
        server.serve_forever()
