"""HDF5 files opened for writing so that a full disk is a `fwi.atomic.DiskFullError`, never a crash.

HDF5 cannot survive a failed write: after ``No space left on device`` its file close fails, and the library
segfaults when the interpreter exits (h5py issue 914). Every dataset file is therefore written through a
`fwi.atomic.SpaceGuardedFile` (h5py's file-object driver; the bytes on disk are the same as with the default
driver): HDF5 never sees a failed write, the writer checks `SpaceGuardedFile.check` between blocks, and the
temporary file is removed by `fwi.atomic.atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import h5py

from fwi.atomic import RERUN, DiskFullError, SpaceGuardedFile, free_bytes, space_guarded

#: Free space an in-place attribute update (``verify --stamp``) needs: a few KB of metadata, with a wide margin.
IN_PLACE_RESERVE = 1 << 20


@contextlib.contextmanager
def h5_writing(path: str | os.PathLike, target: str | os.PathLike | None = None,
               mode: str = "w") -> Iterator[tuple[h5py.File, SpaceGuardedFile]]:
    """Open ``path`` for writing (``mode`` "w" creates, "r+" updates) through a space-guarded file; yields the HDF5
    file and the guard (call ``guard.check()`` between large writes to stop early). After the block the file is
    closed, and `DiskFullError` naming ``target`` (default ``path``) is raised if the disk was full.

    Once the disk is full the file's content is garbage (see `SpaceGuardedFile`): use it on a temporary file, or
    update a file in place only after `check_free_space`.
    """
    with space_guarded(path, "w+b" if mode == "w" else "r+b", target=target) as guard:
        f = h5py.File(guard, mode)
        try:
            yield f, guard
        finally:
            f.close()


def check_free_space(path: str | os.PathLike, needed: int = IN_PLACE_RESERVE, hint: str = RERUN) -> None:
    """`DiskFullError` unless the device holding ``path`` has ``needed`` bytes free: checked before updates made in
    place, which no temporary file protects, and before writes whose size is known (a merge)."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise DiskFullError(path, hint, needed)
