"""Commands for labelled data: synth, synth-video, convert, pack, profile."""
from __future__ import annotations

from pathlib import Path

import click

from kerakp.cli.app import data_format_option, full, main, overwrite_option
from kerakp.data.formats import WRITABLE


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", "num_images", default=600, show_default=True, type=click.IntRange(min=1), help="Number of faces.")
@click.option("--per-person", default=6, show_default=True, type=click.IntRange(min=1), help="Images of each synthetic person.")
@click.option("--size", default=160, show_default=True, type=click.IntRange(min=32), help="Image side in pixels.")
@click.option("--roll", default=25.0, show_default=True, type=click.FloatRange(0, 90), help="Maximum head roll in degrees.")
@click.option("--seed", default=0, show_default=True)
@overwrite_option()
def synth(out_dir, num_images, per_person, size, roll, seed, overwrite):
    """Generate a synthetic labelled face set (iBUG 68 + expression) in OUT_DIR."""
    from kerakp.data.synthetic import write_synthetic_set

    csv = write_synthetic_set(out_dir, num_images, per_person, size, roll, seed, overwrite=overwrite)
    click.echo(f"wrote {num_images} faces: {full(csv)}")


@main.command("synth-video")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", default=120, show_default=True, type=click.IntRange(min=1))
@click.option("--width", default=640, show_default=True, type=click.IntRange(min=64))
@click.option("--height", default=480, show_default=True, type=click.IntRange(min=64))
@click.option("--seed", default=1, show_default=True, help="Which synthetic person.")
@click.option("--motion", default="move", show_default=True, type=click.Choice(["move", "still"]),
              help="move: drifting, rolling, zooming and smiling; still: one pose, fresh sensor noise each frame.")
@overwrite_option()
def synth_video(out, frames, width, height, seed, motion, overwrite):
    """Write a video of a synthetic face (.mp4 or .avi) and its true landmarks per frame (OUT.csv)."""
    from kerakp.data.synthetic import write_synthetic_video

    path = write_synthetic_video(out, frames, width, height, seed=seed, overwrite=overwrite, motion=motion)
    click.echo(f"wrote {frames} frames: {full(path)} (landmarks: {full(path)}.csv)")


@main.command()
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "fmt", required=True, type=click.Choice(WRITABLE),
              help="Output layout (kerakp.data.formats; csv is the image_name,point_1_x,... format).")
@data_format_option("Input layout (auto: recognised from the path).")
@click.option("--markup", help="Convert the points to this markup (five or kaggle15) from any markup that has their parts.")
@click.option("--crop", "crop_size", type=click.IntRange(min=16), help="Write SIZE x SIZE face crops instead of the original images (a compact copy).")
@click.option("--context", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="With --crop: crop side / landmark-box side.")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="With --crop: JPEG quality of the crops.")
def convert(data_path, out, fmt, data_format, markup, crop_size, context, quality):
    """Write the labelled set DATA in another layout or markup into the new folder OUT.

    Examples: 300-W .pts to CSV: `kerakp convert ../300w_train out/300w --to ytf68`; 68 to 5 points:
    `--to csv --markup five`; a compact copy for another machine: `--crop 160`.
    """
    from kerakp.data.formats import load_dataset, write_dataset

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
@data_format_option("Input layout (auto: recognised from the path).")
@overwrite_option()
def pack(data_path, out, size, context, quality, data_format, overwrite):
    """Pack a labelled set for large or repeated training: face crops in one file that
    `kerakp train --data OUT` reads with the same persons, markup and validation split, in bounded memory."""
    from kerakp.data.formats import load_dataset
    from kerakp.data.pack import write_pack

    data = load_dataset(data_path, data_format)
    folder = write_pack(data, out, size, context, quality, overwrite=overwrite)
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    click.echo(f"packed {len(data)} faces ({data.schema.name}, {size} px, context {context}): {full(folder)} ({size_mb:.1f} MB)")


@main.command()
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-face", default=3, show_default=True, type=click.IntRange(min=1), help="Turned copies of each face.")
@click.option("--min-yaw", default=15.0, show_default=True, type=click.FloatRange(0, 90), help="Least yaw of a copy, degrees.")
@click.option("--max-yaw", default=90.0, show_default=True, type=click.FloatRange(0, 90), help="Greatest yaw of a copy, degrees.")
@click.option("--pitch", default=15.0, show_default=True, type=click.FloatRange(0, 45),
              help="Each copy's pitch moves up to this many degrees either way.")
@click.option("--seed", default=0, show_default=True)
@data_format_option("Input layout (auto: recognised from the path).")
@overwrite_option()
def profile(data_path, out, per_face, min_yaw, max_yaw, pitch, seed, data_format, overwrite):
    """Turn the faces of the iBUG-68 set DATA in 3-D (as 300W-LP was made) and write the turned copies, labelled in
    the 3-D convention with each point's visibility, into the new folder OUT (ytf68 layout + visibility.csv).

    Each copy keeps its source face's person (`<source file stem>/<person>_<copy>.jpg`), so a split by person can
    keep the copies of validation faces out of training (`--extra-data OUT`). Look at them first:
    `python scripts/profile_montage.py montage.png OUT`.
    """
    from kerakp.data.formats import load_dataset
    from kerakp.data.profile import profile_set

    report = profile_set(load_dataset(data_path, data_format), out, per_face, seed, (min_yaw, max_yaw), pitch,
                         overwrite=overwrite)
    click.echo(f"{report.line()}: {full(out / 'landmarks.csv')}")
