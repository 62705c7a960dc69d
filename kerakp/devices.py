"""What this installation runs on: versions, the Keras backend and the compute devices it sees (CPU, CUDA GPUs,
Apple Metal), and the packaged models (`kerakp info`); and the processes of a training run across processes or
hosts (`join_processes`), which each start with the KERAS_DISTRIBUTION_* environment variables."""
from __future__ import annotations

import os

from kerakp.errors import KerakpError

PROCESSES_VARIABLE = "KERAS_DISTRIBUTION_NUM_PROCESSES"


def requested_processes() -> int:
    """The number of processes KERAS_DISTRIBUTION_NUM_PROCESSES asks for (1 when unset)."""
    try:
        return int(os.environ.get(PROCESSES_VARIABLE, "1"))
    except ValueError:
        raise KerakpError(f"{PROCESSES_VARIABLE}={os.environ[PROCESSES_VARIABLE]!r} is not a whole number") from None


def join_processes() -> tuple[int, int]:
    """(this process's index, the number of processes) of a run across processes: with
    KERAS_DISTRIBUTION_NUM_PROCESSES above 1 (and KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID),
    joins the others through `keras.distribution.initialize` on first call, which must come before any JAX
    computation; (0, 1) otherwise. JAX only: TensorFlow and torch train on one process's devices."""
    count = requested_processes()
    if count <= 1:
        return 0, 1
    import keras

    if keras.backend.backend() != "jax":
        raise KerakpError(f"training across processes ({PROCESSES_VARIABLE}={count}) runs on JAX: "
                          f"kerakp --backend jax train ... (the {keras.backend.backend()} backend trains on one process)")
    import jax

    if not jax.distributed.is_initialized():
        keras.distribution.initialize()
    return jax.process_index(), jax.process_count()


def wait_for_processes(name: str) -> None:
    """Every process of a run across processes waits here until all have come (a no-op in a one-process run)."""
    if join_processes()[1] > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


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
