"""Keep native libraries' start-up lines (TensorFlow, LiteRT) off the terminal; Python errors still surface."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration: C++ logging that no log level reaches."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
