"""Training across processes: each process reads its own part of every global batch, the launcher
(`kerakp train --processes N`, `--ray ADDRESS`) supervises the processes, and two processes train as one process
on two devices does."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import _thread
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_scale import job

from kerakp.data.augment import Augment
from kerakp.data.sequence import KeypointSequence
from kerakp.errors import KerakpError
from kerakp.launch import Process, ProcessFailed, _Local, _supervise
from kerakp.model_info import CropRule

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install -e '.[jax]')")
# the recipe of tests/scale_job.py, as `--set` options
RECIPE = ["--epochs", "1", "--backbone", "simplecnn", "--input-size", "32", "--batch-size", "6", "--seed", "0",
          "--workers", "1", *[a for kv in ("head_units=16", "calibration_images=0", "dropout=0.0", "clipnorm=1000000.0")
                              for a in ("--set", kv)]]
CROPS = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)   # scale_job's crops


def test_each_process_reads_its_equal_part_of_every_global_batch(synthetic_set):
    """48 faces in global batches of 10 over 2 processes of one device each: the parts, put together, are the
    one-process batches (the last, of 8, too), every image once an epoch, and every part the same size."""
    def sequence(shard, devices):
        return KeypointSequence(synthetic_set, CropRule(32), batch_size=10, augment=Augment(), shuffle=True, seed=3,
                                epoch=1, devices=devices, shard=shard)

    whole = sequence((0, 1), 2)
    parts = [sequence((k, 2), 2) for k in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 5
    for batch in range(len(whole)):
        first, second = (part.batch_indices(batch) for part in parts)
        assert len(first) == len(second) and np.array_equal(np.concatenate([first, second]), whole.batch_indices(batch))
    assert [len(parts[1].batch_indices(b)) for b in range(5)] == [5, 5, 5, 5, 4]
    crops, targets = parts[1][4]
    assert crops.shape == (4, 32, 32, 3) and np.array_equal(targets, whole[4][1][4:], equal_nan=True)
    with pytest.raises(KerakpError, match="3 devices do not split evenly over 2 processes"):
        sequence((0, 2), 3)


def test_training_across_processes_is_refused_off_jax_in_one_line(monkeypatch, synthetic_csv, tmp_path):
    import keras

    from kerakp.devices import join_processes
    from kerakp.launch import train_processes

    with pytest.raises(KerakpError, match="^--processes starts local processes and --ray one per Ray node: choose one$"):
        train_processes(synthetic_csv, None, tmp_path / "run", {}, processes=2, ray="auto")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(KerakpError, match=r"^training across processes runs on JAX: kerakp --backend jax train"):
        train_processes(synthetic_csv, None, tmp_path / "run", {}, processes=2)
    if keras.backend.backend() != "jax":    # by hand, with the variables set, on TensorFlow
        monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
        with pytest.raises(KerakpError, match=r"KERAS_DISTRIBUTION_NUM_PROCESSES=2\) runs on JAX"):
            join_processes()
    assert not (tmp_path / "run").exists()


def _workers(*scripts):
    return [_Local(Process(["-c", script], {}), "here") for script in scripts]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table in /proc")
def test_a_failed_process_stops_the_others_and_their_children_with_one_line(capsys, tmp_path):
    sleeper = "import subprocess, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"
    failing = (f"import pathlib, subprocess, sys, time; pathlib.Path({str(tmp_path / 'pid')!r}).write_text("
               "str(subprocess.Popen(['sleep', '60']).pid)); time.sleep(1); sys.exit('error: the disk is full')")
    workers = _workers(sleeper, failing)    # a process it started keeps the failed one's pipes open
    started = time.monotonic()
    with pytest.raises(ProcessFailed) as failed:
        _supervise(workers)
    assert time.monotonic() - started < 20
    assert str(failed.value) == "training process 1 of 2 ended with exit code 1; stopped the others: the disk is full"
    grandchild = int(capsys.readouterr().out.split()[0])     # process 0's output came through
    held = int((tmp_path / "pid").read_text())
    assert not any(_alive(pid) for pid in (workers[0].process.popen.pid, grandchild, held))


def test_a_process_that_refuses_its_input_gives_its_own_line_and_a_killed_one_is_named():
    refusing = "import sys; print('error: data.csv: not found', file=sys.stderr); sys.exit(2)"
    with pytest.raises(KerakpError, match=r"^data\.csv: not found$"):
        _supervise(_workers(refusing, refusing))
    with pytest.raises(ProcessFailed, match=r"^training process 0 of 2 was killed by SIGKILL; stopped the others$"):
        _supervise(_workers("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "import time; time.sleep(60)"))


def test_an_interrupt_stops_every_process():
    workers = _workers("import time; time.sleep(60)", "import time; time.sleep(60)")
    threading.Timer(1.0, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        _supervise(workers)
    assert all(worker.process.popen.returncode is not None for worker in workers)


def _run_processes(marker: str) -> list[int]:
    """Live processes whose command line names `marker` (the run's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace") \
                    and _alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _launch(data, out, *extra, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "kerakp", "--backend", "jax", "train", "--data", str(data),
                           "--out", str(out), *RECIPE, *extra], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def one_process_two_devices(synthetic_csv, tmp_path_factory):
    """The first epoch's loss and the model's outputs of one process training on two devices (scale_job)."""
    return job("jax", 2, "data-parallel", "float32", synthetic_csv, tmp_path_factory.mktemp("one"))["data-parallel"]


def _assert_trains_as_one_process(out: Path, reference: dict):
    from kerakp.runtime import load_keras_model

    loss = float(pd.read_csv(out / "history.csv")["loss"][0])
    assert abs(loss / reference["loss"] - 1) < 0.005, (loss, reference["loss"])
    outputs = np.asarray(load_keras_model(out / "model.keras").predict_on_batch(CROPS))
    assert np.abs(outputs - np.asarray(reference["outputs"])).max() * 32 <= 0.01     # crop fractions -> pixels
    assert json.loads((out / "split.json").read_text())["train_images"] > 0


@pytest.mark.slow
@needs_jax
def test_two_processes_train_as_one_process_on_two_devices(synthetic_csv, tmp_path, one_process_two_devices):
    out = tmp_path / "run"
    done = _launch(synthetic_csv, out, "--processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel over 2 devices (3 images each per step)" in done.stdout     # process 0's output
    _assert_trains_as_one_process(out, one_process_two_devices)
    assert not list(out.glob(".*tmp*")) and not _run_processes(str(out))


@pytest.mark.slow
@needs_jax
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install -e '.[ray]')")
def test_two_ray_nodes_train_as_one_process_on_two_devices(synthetic_csv, tmp_path, one_process_two_devices):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "run"
        done = _launch(synthetic_csv, out, "--ray", cluster.address)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "data-parallel over 2 devices" in done.stdout
        _assert_trains_as_one_process(out, one_process_two_devices)
    finally:
        cluster.shutdown()
    assert not _run_processes(str(out))


@pytest.mark.slow
@needs_jax
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table in /proc")
def test_a_killed_process_ends_the_run_with_one_line_and_resume_continues(synthetic_csv, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "kerakp", "--backend", "jax", "train", "--data", str(synthetic_csv), "--out", str(out),
               *RECIPE, "--epochs", "50", "--processes", "2"]
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while not (out / "history.csv").is_file() and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.5)
        second = [pid for pid in _run_processes(str(out)) if pid != launcher.pid
                  and b"KERAS_DISTRIBUTION_PROCESS_ID=1\0" in Path(f"/proc/{pid}/environ").read_bytes()]
        assert len(second) == 1, launcher.stderr.read()[-3000:] if launcher.poll() is not None else second
        os.kill(second[0], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = launcher.communicate(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if launcher.poll() is None:
            launcher.kill()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert launcher.returncode == 1 and errors == [
        "error: training process 1 of 2 was killed by SIGKILL; stopped the others"], stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == errors[0]
    assert not _run_processes(str(out))
    finished = len(pd.read_csv(out / "history.csv"))
    resumed = _launch(synthetic_csv, out, "--processes", "2", "--resume", "--epochs", str(finished + 1))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == list(range(finished + 1))
