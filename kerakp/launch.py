"""Training across processes without setting environment variables by hand (`kerakp train --processes N` or
`--ray ADDRESS`): start N local training processes, or one on every Ray node with a CPU, each running the
`kerakp train` command of the same run on JAX with the KERAS_DISTRIBUTION_* variables wired (process 0 is the
coordinator, `kerakp.devices.join_processes`); stream process 0's output; stop every process when one fails or
on Ctrl-C. The data and the run folder must be where every process sees them (one machine, or a disk shared by
the hosts); only process 0 writes the run's files.

A failed run raises `ProcessFailed` (the CLI: one line naming the process, exit code 1), or `KerakpError` where a
process refused its input (exit code 2, the process's own line).
"""
from __future__ import annotations

import codecs
import collections
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from kerakp.errors import KerakpError

STOP_GRACE_S = 5        # after SIGINT (a process's Ctrl-C: it removes its partial files), its group gets SIGKILL
POLL_S = 0.2
ANSWER_S = 60           # a Ray node whose process does not answer this long counts as failed


class ProcessFailed(RuntimeError):
    """A training process ended badly (killed, crashed, lost with its node); every other one was stopped."""


def train_processes(data, config, out, overrides: dict, *, processes: int = 1, ray: str | None = None,
                    format: str = "auto", resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Train one run over `processes` local processes or, with `ray` (a Ray address: auto, ray://HOST:10001,
    HOST:PORT), over one process per Ray node; returns the path of the best model. `progress`: show process
    0's output."""
    from kerakp.backends import require_backend
    from kerakp.config import load_config

    if ray and processes > 1:
        raise KerakpError("--processes starts local processes and --ray one per Ray node: choose one")
    chosen = os.environ.get("KERAS_BACKEND", "jax")
    if chosen != "jax":
        raise KerakpError(f"training across processes runs on JAX: kerakp --backend jax train ... (not {chosen})")
    require_backend("jax")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "jax"     # this process only loads the trained model: no TensorFlow to import
    load_config(config, overrides)      # a bad recipe or option: one line here, before any process starts
    command = _command(data, config, out, overrides, format, resume, overwrite)
    if not ray:
        _supervise(_local_workers(processes, command), progress)
        return Path(out) / "model.keras"
    joined = _join_ray(ray)
    try:
        _supervise(_ray_workers(ray, command), progress)
    finally:
        if joined:
            import ray as ray_module

            ray_module.shutdown()
    return Path(out) / "model.keras"


def _command(data, config, out, overrides: dict, format: str, resume: bool, overwrite: bool) -> list[str]:
    """The arguments after `python` of every process: the run's `kerakp train`, data-parallel on JAX, its paths
    absolute (a Ray node starts it elsewhere)."""
    if config is not None and Path(config).is_file():
        config = Path(config).absolute()
    command = ["-m", "kerakp", "--backend", "jax", "train", "--data", str(Path(data).absolute()),
               "--out", str(Path(out).absolute()), "--format", format, *(["--config", str(config)] if config else []),
               *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else [])]
    for key, value in {**overrides, "distribute": "data-parallel"}.items():
        if value is not None:
            command += ["--set", f"{key}={json.dumps(value, default=str)}"]
    return command


def _environment(coordinator: str, processes: int, process: int) -> dict[str, str]:
    return {"KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": coordinator,
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes), "KERAS_DISTRIBUTION_PROCESS_ID": str(process),
            "PYTHONUNBUFFERED": "1", **({"XLA_FLAGS": os.environ["XLA_FLAGS"]} if "XLA_FLAGS" in os.environ else {})}


def _free_port() -> int:
    """A port free on this host now (for the coordinator)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In a started process, before it runs: a SIGTERM when whatever started it dies, however it dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


class Process:
    """One training process in its own process group, read by threads: `poll` gives its new output, its exit
    code and when it ended; `stop` ends the group (SIGINT, then SIGKILL)."""

    def __init__(self, command: list[str], environment: dict, cwd: str | None = None):
        self.output: queue.Queue = queue.Queue()
        self.popen = subprocess.Popen([sys.executable, *command], env={**os.environ, **environment},
                                      cwd=cwd if cwd and os.path.isdir(cwd) else None, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        self.ended: float | None = None     # when it exited
        self.done = False                   # exited, and its output read
        self.readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                        for name, stream in (("out", self.popen.stdout), ("err", self.popen.stderr))]
        for reader in self.readers:
            reader.start()
        threading.Thread(target=self._wait, daemon=True).start()

    def _read(self, name: str, stream) -> None:
        while chunk := os.read(stream.fileno(), 1 << 16):
            self.output.put((name, chunk))

    def _wait(self) -> None:
        self.popen.wait()
        self.ended = time.time()
        for reader in self.readers:     # its last lines (a process it started may hold the pipes open)
            reader.join(1)
        self.done = True

    def poll(self) -> tuple[list, int | None, float | None]:
        done = self.done
        chunks = []
        while not self.output.empty():
            chunks.append(self.output.get())
        return chunks, (self.popen.returncode if done else None), (self.ended if done else None)

    def signal(self, number: int) -> None:
        try:
            os.killpg(self.popen.pid, number)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        self.signal(signal.SIGINT)
        try:
            self.popen.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        self.signal(signal.SIGKILL)     # the process and anything it started
        self.popen.wait()


class _Local:
    """`Process` as the supervisor sees it."""

    def __init__(self, process: Process, where: str):
        self.process, self.where, self.lost = process, where, None

    def poll(self):
        return self.process.poll()

    def signal_stop(self):
        self.process.signal(signal.SIGINT)

    def stop(self):
        self.process.stop()


def _local_workers(processes: int, command: list[str]) -> list:
    if processes < 1:
        raise KerakpError(f"--processes {processes}: give 1 or more")
    coordinator = f"127.0.0.1:{_free_port()}"
    workers = []
    try:
        for k in range(processes):
            workers.append(_Local(Process(command, _environment(coordinator, processes, k), os.getcwd()), "here"))
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


class _RayHost:
    """A Ray actor holding one training `Process` on its node."""

    def address(self) -> str:
        import ray

        return f"{ray.util.get_node_ip_address()}:{_free_port()}"

    def start(self, command: list[str], environment: dict, cwd: str) -> None:
        self.process = Process(command, environment, cwd)

    def poll(self):
        return self.process.poll()

    def stop(self) -> None:
        self.process.stop()


class _Remote:
    """A `_RayHost` as the supervisor sees it; a node that is lost or stops answering reads as a killed process."""

    def __init__(self, actor, where: str):
        self.actor, self.where, self.lost = actor, where, None

    def poll(self):
        import ray

        try:
            return ray.get(self.actor.poll.remote(), timeout=ANSWER_S)
        except (ray.exceptions.RayError, TimeoutError) as err:
            self.lost = f"was lost ({type(err).__name__})"
            return [], 1, time.time()

    def signal_stop(self):
        pass

    def stop(self):
        import ray

        try:
            ray.get(self.actor.stop.remote(), timeout=ANSWER_S)
        except (ray.exceptions.RayError, TimeoutError):
            pass
        ray.kill(self.actor)


def _join_ray(address: str) -> bool:
    """Connect to the Ray cluster at `address` unless this process already is; whether it connected now."""
    try:
        import ray
    except ImportError:
        raise KerakpError("--ray needs Ray: pip install 'kerakp[ray]'") from None
    import logging

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise KerakpError(f"--ray {address}: cannot join the Ray cluster ({str(err).splitlines()[0][:160]})") from None
    return True


def _ray_workers(address: str, command: list[str]) -> list:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted((n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1),
                   key=lambda n: (n["NodeManagerAddress"], n["NodeID"]))
    if not nodes:
        raise KerakpError(f"--ray {address}: no live node with a CPU to train on")
    host = ray.remote(_RayHost)
    actors = [host.options(num_cpus=1, num_gpus=n["Resources"].get("GPU", 0),
                           scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
              for n in nodes]
    workers = [_Remote(actor, n["NodeManagerAddress"]) for actor, n in zip(actors, nodes)]
    try:
        try:
            coordinator = ray.get(actors[0].address.remote(), timeout=ANSWER_S)
            ray.get([actor.start.remote(command, _environment(coordinator, len(actors), k), os.getcwd())
                     for k, actor in enumerate(actors)], timeout=ANSWER_S)
        except (ray.exceptions.GetTimeoutError, TimeoutError):
            raise KerakpError(f"--ray {address}: a node did not start its training process within {ANSWER_S} s "
                              "(no free CPU?)") from None
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


class _Echo:
    """Process 0's output, passed on as it comes (progress bars included); its own `error:` line is held back, so
    that a failed run ends with the supervisor's one line."""

    def __init__(self, shown: bool):
        self.decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("out", "err")}
        self.pending, self.shown = "", shown

    def feed(self, name: str, chunk: bytes) -> None:
        text = self.decoders[name].decode(chunk)
        if not self.shown:
            return
        if name == "out":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        self.pending += text
        *done, self.pending = _segments(self.pending)
        sys.stderr.write("".join(s for s in done if not s.startswith("error: ")))
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown and not self.pending.startswith("error: "):
            sys.stderr.write(self.pending)


def _segments(text: str) -> list[str]:
    """`text` cut after each newline or carriage return; the last part is what follows the last one."""
    parts, start = [], 0
    for i, char in enumerate(text):
        if char in "\r\n":
            parts.append(text[start:i + 1])
            start = i + 1
    return [*parts, text[start:]]


def _supervise(workers: list, progress: bool = True) -> None:
    """Wait for every process; stream process 0's output (with `progress`); on a failure or an interrupt, stop
    them all and raise."""
    echo = _Echo(progress)
    tails = [collections.deque(maxlen=40) for _ in workers]      # each process's last stderr lines
    rests = [""] * len(workers)
    try:
        while True:
            states = []
            for k, worker in enumerate(workers):
                chunks, code, ended = worker.poll()
                for name, chunk in chunks:
                    if k == 0:
                        echo.feed(name, chunk)
                    if name == "err":
                        *lines, rests[k] = _segments(rests[k] + chunk.decode(errors="replace"))
                        tails[k].extend(line.strip() for line in lines if line.strip())
                states.append((code, ended))
            failed = [k for k, (code, _) in enumerate(states) if code not in (None, 0)]
            if failed:
                first = min(failed, key=lambda k: states[k][1])     # the one that ended first brought the others down
                _stop(workers)
                raise _failure(first, len(workers), workers[first], states[first][0], tails[first])
            if all(code == 0 for code, _ in states):
                echo.close()
                return
            time.sleep(POLL_S)
    except BaseException:
        _stop(workers)
        raise


def _stop(workers: list) -> None:
    for worker in workers:      # all asked at once, then each waited for
        worker.signal_stop()
    for worker in workers:
        worker.stop()


def _failure(process: int, processes: int, worker, code: int, tail) -> Exception:
    """The one line of a failed run: the process refused its input (its own line, `KerakpError`), or it died."""
    said = next((line[len("error: "):] for line in reversed(tail) if line.startswith("error: ")), None)
    if code == 2 and said:
        return KerakpError(said)
    how = worker.lost or (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
                          else f"ended with exit code {code}")
    node = "" if worker.where == "here" else f" (node {worker.where})"
    return ProcessFailed(f"training process {process} of {processes}{node} {how}; stopped the others"
                         + (f": {said}" if said else ""))
