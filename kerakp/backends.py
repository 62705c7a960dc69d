"""Keras backends: which one runs (`select_backend`, before Keras is imported), the package each needs, and Keras
imported without TensorFlow's start-up lines."""
from __future__ import annotations

import importlib.util
import os
import sys

from kerakp.errors import KerakpError

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


def import_keras_quietly() -> None:
    """Import Keras with TensorFlow's C++ start-up lines (printed before any log level applies) kept off stderr."""
    if "keras" not in sys.modules:
        from kerakp.quiet import native_stderr_silenced

        require_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))
        with native_stderr_silenced():
            import keras  # noqa: F401


def use_tensorflow(why: str, chosen: str | None = None) -> None:
    """Run Keras on TensorFlow, whatever $KERAS_BACKEND says (a .keras file trained on any backend loads there),
    for work that converts through TensorFlow (`why` names it); an error where another backend was `chosen`
    (`--backend`) or Keras already runs elsewhere."""
    if chosen not in (None, "tensorflow"):
        raise KerakpError(f"{why} converts through TensorFlow; drop --backend {chosen}")
    if importlib.util.find_spec("tensorflow") is None:
        raise KerakpError(f"{why} needs TensorFlow (pip install tensorflow)")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise KerakpError(f"{why} converts through TensorFlow; run `kerakp --backend tensorflow ...` "
                              f"(Keras is on '{keras.backend.backend()}'; the .keras file loads on any backend)")
    os.environ["KERAS_BACKEND"] = "tensorflow"
