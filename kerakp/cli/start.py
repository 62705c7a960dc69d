"""Commands to start with: info, quickstart."""
from __future__ import annotations

from pathlib import Path

import click

from kerakp.cli.app import detector_option, full, main


@main.command()
def info():
    """Print versions, the Keras backend, the devices Keras can use and the packaged models."""
    from kerakp.devices import environment

    for name, value in environment():
        click.echo(f"{name:<14}{value}")


@main.command()
@click.option("--out", default=Path("runs/quickstart"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Its folder; a later quickstart reuses its faces and replaces its run.")
@click.option("--images", "num_images", default=600, show_default=True, type=click.IntRange(min=12), help="Synthetic faces to generate.")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="Override the recipe's epochs.")
@detector_option()
def quickstart(out, num_images, epochs, detector):
    """Generate synthetic faces, train a small model, evaluate it end to end and print the results."""
    from kerakp.evaluate import format_metrics
    from kerakp.quickstart import quickstart as run_quickstart

    metrics, model = run_quickstart(out, num_images, epochs, detector)
    click.echo(f"\nend-to-end evaluation on the held-out synthetic persons ({detector} detector boxes):")
    click.echo(format_metrics(metrics))
    click.echo(f"model: {full(model)}\nreport: {full(out / 'evaluate' / 'report.html')} (open it in a browser), "
               f"{full(out / 'evaluate' / 'metrics.json')}\n"
               f"plots: {full(out / 'evaluate' / 'ced.png')}, {full(out / 'evaluate' / 'grid.png')}, "
               f"{full(out / 'run' / 'training_curves.png')}")
