"""What compute devices the active Keras backend sees (CPU, CUDA GPUs, Apple Metal)."""
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
