"""Run by tests/test_scale.py in a fresh process: train one epoch for each comma-separated way of distributing
(`none`, `data-parallel`) with some devices, backend and precision; print, per run, the first epoch's loss and
the saved model's outputs on fixed crops, as one JSON line. Runs of one process share its import and devices."""
import json
import os
import sys

backend, devices, distributes, precision, data, out = sys.argv[1:7]
batch = int(sys.argv[7]) if len(sys.argv) > 7 else 6
os.environ["KERAS_BACKEND"] = backend
if backend == "jax":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
if backend == "tensorflow" and int(devices) > 1:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(devices))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kerakp.api import Landmarker  # noqa: E402

overrides = dict(epochs=1, backbone="simplecnn", input_size=32, batch_size=batch, head_units=16, calibration_images=0,
                 seed=0, precision=precision, workers=1, dropout=0.0, clipnorm=1e6)
crops = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
runs = {}
for distribute in distributes.split(","):
    model = Landmarker.train(data, None, f"{out}/{distribute}", progress=False,
                             **overrides, **({} if distribute == "none" else {"distribute": distribute}))
    outputs = np.asarray(model.model.predict_on_batch(crops))
    runs[distribute] = {"loss": float(pd.read_csv(f"{out}/{distribute}/history.csv")["loss"][0]),
                        "outputs": outputs.tolist(), "dtype": str(outputs.dtype)}
print(json.dumps(runs))
