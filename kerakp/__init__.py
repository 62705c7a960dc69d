"""kerakp: facial-landmark detection with Keras 3 — train, evaluate, export and run live."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

__version__ = "0.1.0"
