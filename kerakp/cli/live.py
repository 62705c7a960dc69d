"""Commands for faces over time and their expressions: live, emotion (tag, calibrate)."""
from __future__ import annotations

from pathlib import Path

import click

from kerakp.cli.app import KerakpGroup, detector_option, full, main, overwrite_option
from kerakp.errors import KerakpError
from kerakp.tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF
from kerakp.zoo import DEFAULT_PRESET


@main.command()
@click.option("--tflite", "--model", "model", default=DEFAULT_PRESET, show_default=True,
              help="Landmark model: .tflite (fastest on a CPU), .onnx, .keras or a packaged preset.")
@click.option("--source", default="0", show_default=True, help="Camera index or video file.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Write the annotated video here (r toggles).")
@click.option("--headless", is_flag=True, help="No window: for servers and tests (still records and writes stats).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write run statistics (JSON) here: FPS, ms per stage, model reads per frame and per face, detector calls, ...")
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
@detector_option()
@click.option("--mirror", is_flag=True, help="Read each tracked face's crop and its mirror: as accurate as reading "
              "every frame alone, at twice the model time.")
@overwrite_option("Replace --record, --stats and --landmarks files if they exist.")
def live(model, source, record, headless, stats_path, landmarks_path, threads, max_faces, redetect_every, min_cutoff,
         beta, emotion_config, max_frames, detector, mirror, overwrite):
    """Track the faces of a camera or video live: q quits, r toggles recording, s saves a snapshot."""
    from kerakp.api import Landmarker
    from kerakp.emotion import load_rule
    from kerakp.live import run_live

    summary = run_live(Landmarker(model, detector=detector, threads=threads), source, record, headless, stats_path,
                       redetect_every, load_rule(emotion_config), max_frames, max_faces, min_cutoff, beta, landmarks_path,
                       mirror=mirror, overwrite=overwrite, threads=threads)
    reads, infer = summary["model_reads"], summary["latency_ms"].get("infer", {})
    click.echo(f"{summary['frames']} frames in {summary['wall_s']:.2f} s: {summary['fps']:.1f} FPS; "
               f"{summary['faces_per_frame']:.2f} faces per frame; model reads {reads['per_frame']:.2f} a frame, "
               f"{reads['per_face']:.2f} a face (tracked {reads['tracked']}, new faces {reads['new']}); "
               f"detector calls {summary['detector_calls']}, track losses {summary['track_losses']}; blinks {summary['blinks']}; "
               f"tags {summary['emotion_counts']}")
    click.echo("ms per frame: " + ", ".join(f"{stage} {ms:.2f}" for stage, ms in summary["ms_per_frame"].items())
               + f"; infer p50 {infer.get('p50', float('nan')):.2f} in frames with faces")
    for label, path in (("stats", stats_path), ("landmarks", landmarks_path), ("video", record)):
        if path:
            click.echo(f"{label}: {full(path)}")


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
@click.option("--box", default="detector", show_default=True, type=click.Choice(["detector", "full"]),
              help="Face box: the face detector, or the full image.")
@overwrite_option()
def emotion_tag(inputs, landmarks, config_path, out, box, overwrite):
    """Tag each face; writes image, tag, w, h, c and prints the tag counts."""
    from kerakp.api import Landmarker
    from kerakp.emotion import TAGS, load_rule, tag_landmarks

    rule = load_rule(config_path)
    if landmarks is not None:
        if inputs:
            raise KerakpError("give either --landmarks CSV or MODEL IMAGES..., not both")
        table = tag_landmarks(landmarks, rule, out, overwrite)
    else:
        if len(inputs) < 2:
            raise KerakpError("give MODEL and at least one image or folder (or --landmarks CSV)")
        table = Landmarker(inputs[0], box=box).emotions(inputs[1:], rule, out, overwrite)
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
@overwrite_option()
def emotion_calibrate(landmarks, labels_path, config_path, out, overwrite):
    """Fit the rule's thresholds on labelled faces; reports accuracy (on these faces) before and after."""
    import pandas as pd

    from kerakp.emotion import calibrate, load_rule

    _, report = calibrate(landmarks, labels_path, load_rule(config_path), out, overwrite)
    for title, entry in report.items():
        click.echo(f"{title}: accuracy {entry['accuracy']:.3f} on {entry['faces']} faces (rows: truth, columns: tag)")
        click.echo(pd.DataFrame(entry["confusion"]).T.to_string())
    click.echo(f"wrote {full(out)}")
