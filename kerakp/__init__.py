"""kerakp: facial-landmark detection with Keras 3 — train, evaluate, export and run live."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ errors on CPU-only machines are false alarms

__version__ = "0.1.0"
