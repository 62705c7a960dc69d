"""Commands that read images with a model: evaluate, predict, annotate, align, kaggle-submit."""
from __future__ import annotations

from pathlib import Path

import click

from kerakp.bulk import default_workers, skipped_line
from kerakp.cli.app import (
    box_option,
    data_format_option,
    detector_option,
    full,
    main,
    model_argument,
    overwrite_option,
    passes_option,
    turn_option,
)
from kerakp.data.formats import WRITABLE


@main.command()
@model_argument()
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path))
@data_format_option()
@box_option()
@detector_option()
@passes_option()
@turn_option()
@click.option("--subset", default="all", show_default=True, type=click.Choice(["all", "val", "train"]),
              help="Evaluate on the model's own person-wise validation split (val), its training part, or all.")
@click.option("--out", default=Path("runs/evaluate"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--report", is_flag=True, help="Also write report.html: the metrics, CED, error per point, by head pose and "
              "by face size, and every face worst first, in one file a browser opens.")
@overwrite_option()
def evaluate(model, data_path, data_format, box, detector, passes, turn, subset, out, report, overwrite):
    """Measure MODEL end to end on labelled data: NME, PCK, AUC, failure rate; CED and grid plots.

    Each image's one labelled face is scored against the detected face the model reads consistently, the surest if several do.
    """
    from kerakp.api import Landmarker
    from kerakp.evaluate import format_metrics

    metrics = Landmarker(model, detector=detector, box=box, passes=passes, turn=turn).evaluate(
        data_path, subset, out, data_format, overwrite=overwrite, report=report)
    click.echo(format_metrics(metrics))
    click.echo(f"report: {full(out / 'metrics.json')}, {full(out / 'per_image.csv')}"
               + (f", {full(out / 'report.html')}" if report else "")
               + f"\nplots:  {full(out / 'ced.png')}, {full(out / 'grid.png')}")


def bulk_options(command):
    """--workers, --batch and --resume: how a command reads many images (kerakp.bulk)."""
    command = click.option("--resume", is_flag=True, help="Continue an interrupted run from its .partial output: the "
                           "images it read are skipped, and the output ends as an uninterrupted run's.")(command)
    command = click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1),
                           help="Images read together (their face crops go through the model in one call).")(command)
    return click.option("--workers", type=click.IntRange(min=1),
                        help=f"Processes reading images, each with its own model (default: one per core, here "
                             f"{default_workers()}, each with two batches or more; 1: this process)."
                        )(command)


@main.command()
@model_argument()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("predictions.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The table: .csv, or .parquet (needs pyarrow). Written as it goes to OUT.partial, renamed when done.")
@box_option(["detector", "full"])
@detector_option()
@click.option("--max-faces", type=click.IntRange(min=1),
              help="At most this many faces per image, the surest (default: every face found). 1 writes one row "
                   "per image without the face column: the surest face of those the model reads about as consistently as the best.")
@passes_option()
@turn_option()
@click.option("--fallback/--no-fallback", default=False, show_default=True,
              help="Where the detector finds no face (with --max-faces 1: or none the model reads consistently), "
                   "read the whole image as a face: every image gets landmarks, and the detected column says whose box "
                   "won. Without it, an image with no face gets one row with found 0 and no points.")
@click.option("--pose", is_flag=True, help="Add each face's head pose: yaw, pitch, roll in degrees (see README).")
@click.option("--confidence", is_flag=True, help="Add each point's confidence in 0..1: c0, c1, ...")
@click.option("--visibility", is_flag=True, help="Add each point's probability of being seen, 0..1 (iBUG 68; hidden "
              "behind the head at its pose): v0, v1, ...")
@click.option("--draw", type=click.Path(file_okay=False, path_type=Path),
              help="New folder: every image written again with its faces drawn (points, box; head axes with --pose).")
@bulk_options
@click.option("--ray", metavar="ADDRESS", help="Read the images on Ray (pip install 'kerakp[ray]'): local (a Ray instance "
              "of --workers CPUs here), auto (the running cluster) or ray://HOST:10001.")
@overwrite_option()
def predict(model, paths, out, box, detector, max_faces, passes, turn, fallback, pose, confidence, visibility, draw, workers,
            batch, resume, ray, overwrite):
    """Predict landmarks for images or folders: one row per face (image, face, found, detected, x0, y0, ... in
    image pixels; face 0 is the largest), or per image with --max-faces 1. Files that are not readable images
    are skipped and listed; the exit code is 0 when at least one image was read."""
    from kerakp.api import Landmarker

    counts = Landmarker(model, detector=detector, box=box, passes=passes, turn=turn, fallback=fallback).predict_to(
        out, paths, max_faces, pose, confidence, draw, batch, workers, resume, overwrite, ray=ray, visibility=visibility)
    if skipped_line(counts):
        click.echo(f"warning: {skipped_line(counts)}", err=True)
    resumed = f" (after the {counts['resumed_after']} images of the interrupted run)" if counts["resumed_after"] else ""
    click.echo(f"{counts['faces']} faces in {counts['with_face']} of {counts['images'] - len(counts['skipped'])} images{resumed} "
               f"({counts['detected']} from the detector's box); wrote {full(out)}"
               + (f"; drawn: {full(draw)}" if draw is not None else ""))


@main.command()
@model_argument()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("labels"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="New folder: the labelled set (readable by `kerakp train --data`) and annotations.csv; written as it "
                   "goes to OUT.partial, renamed when done.")
@click.option("--format", "fmt", default="ytf68", show_default=True, type=click.Choice(WRITABLE),
              help="Layout of the labelled set (kerakp.data.formats).")
@click.option("--markup", help="Write the labels in this markup (five, kaggle15, ...), converted through the named points.")
@click.option("--max-disagreement", type=click.FloatRange(min=0),
              help="Leave out faces whose flip disagreement (NME between the image's and its mirror's prediction) exceeds this.")
@box_option(["detector", "full"])
@detector_option()
@click.option("--max-faces", type=click.IntRange(min=1),
              help="At most this many faces per image, the surest (default: every face found); a second face of "
                   "photo.jpg is labelled as photo_face1.jpg.")
@bulk_options
@overwrite_option()
def annotate(model, paths, out, fmt, markup, max_disagreement, box, detector, max_faces, workers, batch, resume, overwrite):
    """Label unlabelled face images with MODEL (the teacher), with a confidence proxy per face."""
    from kerakp.api import Landmarker

    written, counts = Landmarker(model, detector=detector, box=box).annotate(
        paths, out, fmt, max_disagreement, max_faces, markup=markup, batch=batch, workers=workers, resume=resume,
        overwrite=overwrite)
    if skipped_line(counts):
        click.echo(f"warning: {skipped_line(counts)}", err=True)
    click.echo(f"labelled {counts['kept']} faces in {counts['images'] - len(counts['skipped'])} images "
               f"(no face: {counts['no_face']}, above --max-disagreement: {counts['faces'] - counts['kept']}); "
               f"median flip NME {counts['median_flip_nme']:.4f}")
    click.echo(f"labels: {full(written)}\nper face: {full(out / 'annotations.csv')}")


@main.command()
@model_argument()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="New folder for the crops.")
@click.option("--size", default=112, show_default=True, type=click.IntRange(min=16), help="Crop side in pixels.")
@click.option("--max-faces", type=click.IntRange(min=1), help="At most this many faces per image, the surest.")
@detector_option()
def align(model, paths, out, size, max_faces, detector):
    """Write aligned face crops: each face turned, scaled and moved so its eye centres, nose tip and mouth
    corners lie nearest the ArcFace template (for 112 px: eyes at (38.3, 51.7) and (73.5, 51.5), nose tip
    (56.0, 71.7), mouth corners (41.5, 92.4) and (70.7, 92.2)), for recognition pipelines."""
    from kerakp.api import Landmarker

    folder, count = Landmarker(model, detector=detector).align(paths, out, size, max_faces)
    click.echo(f"wrote {count} aligned faces: {full(folder)}")


@main.command("kaggle-submit")
@model_argument()
@click.option("--test", "test_csv", required=True, type=click.Path(path_type=Path), help="The competition's test.csv (ImageId, Image).")
@click.option("--lookup", "lookup_csv", required=True, type=click.Path(path_type=Path), help="IdLookupTable.csv (RowId, ImageId, FeatureName).")
@click.option("--out", default=Path("submission.csv"), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@overwrite_option()
def kaggle_submit(model, test_csv, lookup_csv, out, overwrite):
    """Write a Kaggle Facial Keypoints submission (RowId, Location) with a kaggle15 MODEL (whole-image crops)."""
    from kerakp.api import Landmarker

    table = Landmarker(model).kaggle_submission(test_csv, lookup_csv, out, overwrite)
    click.echo(f"wrote {len(table)} locations: {full(out)}")
