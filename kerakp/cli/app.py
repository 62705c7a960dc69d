"""The command group, its error boundary, and the options several commands share, their choices and help texts
made from kerakp's tables (presets, detectors, box sources, data formats)."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from kerakp import __version__
from kerakp.backends import BACKENDS, import_keras_quietly, select_backend, use_tensorflow
from kerakp.data.formats import FORMATS as DATA_FORMATS
from kerakp.detect import DEFAULT_DETECTOR, DETECTORS
from kerakp.errors import KerakpError, KerakpWarning
from kerakp.inference import BOX_SOURCES, DEFAULT_TURN
from kerakp.io import catching_interrupts, interrupted
from kerakp.zoo import PRESETS

MODEL_HELP = f"MODEL: a .keras, .tflite or .onnx file, a SavedModel folder, or a packaged preset ({', '.join(PRESETS)})."
OVERWRITE_HELP = "Replace the output if it exists (otherwise an existing output is refused)."


def full(path) -> str:
    return str(Path(path).absolute())


def runs_without_keras(model) -> bool:
    """A packaged preset or a .tflite / .onnx export runs without Keras (and so without the TensorFlow import)."""
    return model is not None and (str(model) in PRESETS or Path(str(model)).suffix in (".tflite", ".onnx"))


class KerakpCommand(click.Command):
    """A command that imports Keras quietly once its arguments have parsed (so `--help` stays instant), unless
    its MODEL runs without it; a `tensorflow` command runs Keras on TensorFlow (it converts through it)."""

    tensorflow = False

    def invoke(self, ctx):
        if self.tensorflow:
            use_tensorflow(f"`{ctx.info_name}`", ctx.find_root().params.get("backend"))
        if not runs_without_keras(ctx.params.get("model")):
            import_keras_quietly()
        return super().invoke(ctx)


class TensorFlowCommand(KerakpCommand):
    tensorflow = True


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


@click.group(name="kerakp", cls=KerakpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kerakp")
@click.option("--backend", type=click.Choice(list(BACKENDS)),
              help="Keras backend for this run (default: $KERAS_BACKEND, else tensorflow). Models move between backends.")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an internal error (also: KERAKP_DEBUG=1).")
def main(backend, debug):
    """kerakp: train, evaluate and run facial-landmark models (Keras 3).

    Start with `kerakp quickstart`, which generates a synthetic face set, trains a small model on it and
    evaluates it end to end. MODEL arguments take a file or a packaged preset.

    Exit codes: 0 done; 2 bad input (a missing or unreadable file, a wrong option, an existing output without
    --overwrite), with one line on stderr naming the culprit; 1 an internal error, one line (the traceback
    with --debug); 130 interrupted. No command leaves a half-written output behind.
    """
    if backend:
        select_backend(backend)


def model_argument():
    return click.argument("model", type=click.Path(path_type=Path), metavar="MODEL")


def data_format_option(help: str = "Layout of --data (auto: recognised from the path)."):
    return click.option("--format", "data_format", default="auto", show_default=True,
                        type=click.Choice(["auto", *DATA_FORMATS]), help=help)


def detector_option():
    return click.option("--detector", default=DEFAULT_DETECTOR, show_default=True, type=click.Choice(list(DETECTORS)),
                        help="Face detector (kerakp.detect.DETECTORS).")


def box_option(sources=BOX_SOURCES):
    return click.option("--box", default="detector", show_default=True, type=click.Choice(list(sources)),
                        help="Face box: the face detector (end to end), oracle (from ground truth, diagnosis only) "
                             "or the full image.")


def passes_option():
    return click.option("--passes", default=2, show_default=True, type=click.IntRange(0, 10),
                        help="Crop passes; each re-crops around the last prediction (turned level for a model trained "
                             "upright). 0 (fast): read the detector's box directly, turned by the eyes it saw.")


def turn_option():
    return click.option("--turn", default=DEFAULT_TURN, show_default=True, type=click.FloatRange(0, 45),
                        help="Degrees: also read each face with its crop turned this far each way, and average the three "
                             "readings (test-time augmentation: four more model calls per face); 0 turns it off.")


def overwrite_option(help: str = OVERWRITE_HELP):
    return click.option("--overwrite", is_flag=True, help=help)


def sets_option(help: str = "Override any config key, e.g. augment.rotation=10."):
    return click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=help)
