"""One owner per target: an exclusive lock file beside a run directory or a dataset file.

    with exclusive_lock(run_dir / ".lock", what=f"run {run_dir}"):
        ...   # nobody else trains or evaluates into run_dir meanwhile

The lock is an ``fcntl.flock`` on the file, so the kernel releases it when its holder dies (kill -9 included): a
lock left by a killed process is stale by construction and is taken over silently. The file records who holds it
(pid, host, start time, command line) so that a refused second process can say who is in the way. It is removed
when the holder releases it; an acquirer that finds it replaced meanwhile tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator


class LockError(RuntimeError):
    """The target is held by another live process."""


def holder_description(path: Path) -> str:
    """Who holds the lock at ``path``, as recorded in it ("pid 123 on host a (since ...): python -m ...")."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    cmd = " ".join(info.get("argv", []))[:120]
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (since {info.get('started', '?')})"
            + (f": {cmd}" if cmd else ""))


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the block; `LockError` at once if a live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockError(f"{what} is in use by {holder_description(path)}; wait for it to finish or stop it "
                            "first") from None
        try:  # the holder before us may have removed the file between our open and our flock: retry on the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing releases the flock


def run_lock(run_dir: str | os.PathLike):
    """The lock that makes one process (a training, or an evaluation writing into it) the owner of ``run_dir``:
    ``.<name>.lock`` beside the directory, so that replacing the directory (--overwrite) keeps it. The path is resolved
    first: a symlink to a run directory takes the same lock as the directory itself."""
    run_dir = Path(run_dir).resolve()
    return exclusive_lock(run_dir.with_name(f".{run_dir.name}.lock"), f"run {run_dir}")
