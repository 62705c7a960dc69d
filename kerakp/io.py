"""Writing outputs safely: never half-written, never over what the user did not ask to replace.

`replacing(target)` yields a temporary path beside `target` (a file or a folder, written by the caller) and
renames it into place only when the block finishes; on any failure or interrupt the temporary is removed and
`target` is left as it was. `refuse_existing` is the one check that an output is new, or that the user
said `--overwrite`. `catching_interrupts` remembers a Ctrl-C that a library swallowed (TensorFlow's converters turn
it into another error, or drop it), so nothing is placed after it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from kerakp.errors import KerakpError

_interrupted = False


@contextmanager
def catching_interrupts():
    """Within the block, record every SIGINT before raising KeyboardInterrupt as Python does (left alone where
    SIGINT is ignored, as in a job started with `nohup` or `&`); afterwards the handler and the record are
    as before, so a Python session that ran a command is not left stopping its own outputs."""
    global _interrupted
    install = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if install:
        signal.signal(signal.SIGINT, _record_interrupt)
    try:
        yield
    finally:
        _interrupted = False
        if install:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _record_interrupt(signum, frame):
    global _interrupted
    _interrupted = True
    signal.default_int_handler(signum, frame)


def interrupted() -> bool:
    """Whether a SIGINT arrived within `catching_interrupts`, even one a library swallowed."""
    return _interrupted


@contextmanager
def uninterrupted():
    """A block that a Ctrl-C does not cut in two: SIGINT waits (in the main thread) until it ends, so a chunk of
    streamed output and the record of its progress are written together."""
    blocking = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
    if blocking:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if blocking:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def refuse_if_interrupted() -> None:
    """The last check before an output is placed: a swallowed SIGINT stops it there."""
    if _interrupted:
        raise KeyboardInterrupt


def refuse_existing(path, overwrite: bool = False, what: str = "--overwrite") -> None:
    """One line for an output that exists (a file, or a folder that is not empty), unless `overwrite`."""
    path = Path(path)
    taken = path.is_file() or path.is_symlink() or (path.is_dir() and any(path.iterdir()))
    if taken and not overwrite:
        raise KerakpError(f"{path.resolve()}: already exists; choose another output or pass {what} to replace it")


def remove(path: Path) -> None:
    """Delete a file or a folder tree, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def writable_folder(folder) -> Path:
    """`folder`, made if missing; one line naming it when nothing can be written there (rather than naming a
    temporary file the user never asked for)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise KerakpError(f"{folder.resolve()}: not writable (Read-only file system, or no permission)")
    return folder


@contextmanager
def replacing(target, folder: bool = False):
    """A temporary path beside `target` (a new empty folder when `folder`), renamed to `target` on success
    (replacing what was there) and removed on failure."""
    target = Path(target)
    writable_folder(target.parent)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")   # keeps the suffix writers look at
    remove(tmp)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        refuse_if_interrupted()
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        tmp.replace(target)
    except BaseException:
        remove(tmp)
        raise


def write_text(target, text: str) -> Path:
    """Write a text file atomically."""
    with replacing(target) as tmp:
        Path(tmp).write_text(text)
    return Path(target)


def write_csv(frame, target) -> Path:
    """Write a pandas table atomically, without its index."""
    with replacing(target) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(target)


def strict_json(value):
    """`value` with every non-finite float as None, so the JSON is valid for strict parsers (no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(target, value) -> Path:
    """Write strict JSON atomically (non-finite numbers become null)."""
    return write_text(target, json.dumps(strict_json(value), indent=2, allow_nan=False))
