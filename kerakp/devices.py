"""What this installation runs on: versions, the Keras backend and the compute devices it sees (CPU, CUDA GPUs,
Apple Metal), and the packaged models (`kerakp info`)."""
from __future__ import annotations


def list_devices() -> dict[str, str]:
    """Device names per backend, asking only the backend Keras is using."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_physical_devices()]
    elif backend == "jax":
        import jax

        devices = [f"{d.platform.upper()}:{d.id}" for d in jax.devices()]
    elif backend == "torch":
        import torch

        devices = ["CPU:0"] + [f"CUDA:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            devices.append("MPS:0 (Apple Metal)")
    else:
        devices = ["CPU:0"]
    return {"devices": ", ".join(devices)}


def environment() -> list[tuple[str, str]]:
    """(name, value) rows: kerakp, Python, Keras and its backend, NumPy, OpenCV, the devices, the presets."""
    import platform

    import cv2
    import keras
    import numpy

    from kerakp import __version__
    from kerakp.zoo import presets

    rows = [("kerakp", __version__), ("python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
            ("keras", f"{keras.__version__} (backend: {keras.backend.backend()})"), ("numpy", numpy.__version__),
            ("opencv", cv2.__version__), *list_devices().items()]
    return rows + [(f"preset {name}", f"{preset.path} ({preset.summary})") for name, preset in presets().items()]
