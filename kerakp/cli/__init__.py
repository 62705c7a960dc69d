"""The `kerakp` command line: each command parses its options and makes one call into the library (mostly
`kerakp.api.Landmarker`), then echoes the result. Heavy imports happen inside commands, so `--help` is quick.
One module per family of commands; `main` is the group (`kerakp.cli.app`)."""
from kerakp.cli import data, images, live, models, start  # noqa: F401  (each registers its commands)
from kerakp.cli.app import main

__all__ = ["main"]
