"""kerakp: facial landmarks with Keras 3 — train, evaluate, export and run live, from the shell or from Python.

    from kerakp import Landmarker
    faces = Landmarker().predict("photo.jpg")

The public names load lazily, so `import kerakp` stays quick and imports neither Keras nor TensorFlow.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ errors on CPU-only machines are false alarms

__version__ = "0.2.0"
__all__ = ["Landmarker", "Face", "KerakpError", "presets", "load_dataset", "__version__"]
_PUBLIC = {"Landmarker": "kerakp.api", "Face": "kerakp.results", "presets": "kerakp.api",
           "KerakpError": "kerakp.errors", "load_dataset": "kerakp.data.formats"}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kerakp' has no attribute {name!r}")
