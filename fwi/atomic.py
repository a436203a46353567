"""Atomic file writes: write to a temporary sibling, fsync, rename over the target; never a half-written file.

A full disk is one `DiskFullError` (an ``OSError`` with errno ENOSPC) naming the target and what to do, whatever
wrote the file: Python, numpy, matplotlib, ``torch.save`` (whose C++ writer otherwise reports
``[enforce fail at inline_container.cc]``) or HDF5 (which crashes the interpreter at exit after a failed write:
write HDF5 files through `SpaceGuardedFile`, which never lets a write fail under the library's feet).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Iterator

#: What to do after a full disk, unless the caller knows better (`DiskFullError.hint`).
RERUN = "free some space and run the command again"


class DiskFullError(OSError):
    """No space left on the device while writing ``path``; the target was left as it was (nothing half-written)."""

    def __init__(self, path: str | os.PathLike | None, hint: str = RERUN, needed: int | None = None) -> None:
        super().__init__(str(path))
        self.errno = errno.ENOSPC
        self.path, self.hint, self.needed = (None if path is None else Path(path)), hint, needed

    def __str__(self) -> str:
        if self.path is None:  # a bare ENOSPC whose file Python did not record
            return f"disk full: no space left on the device being written; {self.hint}"
        need = f", about {self.needed / 2**20:.1f} MB needed" if self.needed else ""
        return (f"disk full: no space left on the device holding {self.path} ({_free_mb(self.path)} free there"
                f"{need}); nothing was written at {self.path}; {self.hint}")

    def __reduce__(self):  # keeps path, hint and size through a process pool
        return DiskFullError, (self.path, self.hint, self.needed)

    def with_hint(self, hint: str) -> "DiskFullError":
        return DiskFullError(self.path, hint, self.needed)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free space on the device that holds ``path`` (or would: its nearest existing parent); None if unknown."""
    path = Path(path)
    for place in (path, *path.parents):
        if place.exists():
            try:
                return shutil.disk_usage(place).free
            except OSError:
                return None
    return None


def _free_mb(path: Path) -> str:
    free = free_bytes(path)
    return "? MB" if free is None else f"{free / 2**20:.1f} MB"


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_hint(hint: str) -> Iterator[None]:
    """Inside the block, a `DiskFullError` (or a bare ENOSPC ``OSError``) carries ``hint`` (e.g. "--resume ...")."""
    try:
        yield
    except DiskFullError as exc:
        raise exc.with_hint(hint) from None
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(exc.filename, hint) from None


class SpaceGuardedFile(io.FileIO):
    """A binary file whose writes never fail for lack of space: the first ENOSPC is recorded (`full`), that write
    and every later one are dropped, and the writer goes on to a clean close; `check` (or `space_guarded` at the
    end) then raises `DiskFullError`. Meant for writers that cannot survive a failed write (HDF5) or that hide the
    reason (``torch.save``); the file's content is garbage once `full` is set, so it must be a temporary file."""

    def __init__(self, path: str | os.PathLike, mode: str = "wb", target: str | os.PathLike | None = None) -> None:
        super().__init__(path, mode.replace("b", ""))
        self.target = Path(target if target is not None else path)
        self.full: OSError | None = None

    def write(self, data) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        done = 0
        while self.full is None and done < len(view):  # a short write is retried: the retry reports ENOSPC
            try:
                done += super().write(view[done:]) or 0
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                self.full = exc
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        try:
            return super().truncate(size)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.full = exc
            return self.tell() if size is None else size

    def check(self) -> None:
        """`DiskFullError` naming the target once a write found the disk full."""
        if self.full is not None:
            raise DiskFullError(self.target)


@contextlib.contextmanager
def space_guarded(path: str | os.PathLike, mode: str = "wb",
                  target: str | os.PathLike | None = None) -> Iterator[SpaceGuardedFile]:
    """Open ``path`` as a `SpaceGuardedFile`; `DiskFullError` naming ``target`` after the block (also when the
    block failed on the garbage a full disk left behind)."""
    fh = SpaceGuardedFile(path, mode, target)
    try:
        yield fh
    except BaseException:
        fh.close()
        fh.check()
        raise
    fh.close()
    fh.check()


#: The name of a temporary file of `atomic_path`: ``.<stem>.<pid>.<thread>.tmp<suffix>`` beside the target
#: (`fwi.data.output.remove_debris` finds those of dead writers by it).
TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.(?P<tid>\d+)\.tmp(?P<suffix>[^/]*)$")


def temp_path(path: Path) -> Path:
    """The temporary sibling `atomic_path` writes ``path`` through (matches `TEMP_NAME`)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that go by extension still work).

    When the block ends without error the file is fsynced and renamed over ``path`` (atomic on one file system);
    on error it is removed and ``path`` is untouched. Running out of space anywhere on the way is a `DiskFullError`.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except DiskFullError:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(path) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
