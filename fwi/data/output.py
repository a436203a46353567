"""A dataset output file: its lock file, the checks before any work, and the removal of temporary files left
by a killed writer (of a dataset file or of a run directory: the one debris cleaner)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from fwi.atomic import TEMP_NAME
from fwi.data.store import DatasetError


def lock_path(out: Path) -> Path:
    """The lock file of a dataset output."""
    return out.with_name(out.name + ".lock")


def check_out(out: Path, overwrite: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work: a directory, a parent that is a file or that
    cannot be created, an unwritable directory."""
    if out.is_dir():
        raise DatasetError(f"--out {out} is a directory; give a file path such as {out / 'dataset.h5'}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    parent = out.parent
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise DatasetError(f"--out {out}: {above} is a file, not a directory")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"--out {out}: cannot create the directory {parent} ({exc.strerror or exc})") from None
    try:  # a real probe: permission bits say nothing for root, a read-only mount or /proc
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.probe."):
            pass
    except OSError as exc:
        raise DatasetError(f"--out {out}: cannot write in {parent} ({exc.strerror or exc})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_debris(out: Path) -> list[Path]:
    """Remove the temporary files of `fwi.atomic.atomic_path` (``.<stem>.<pid>.<thread>.tmp<suffix>``) whose writer
    process is dead: for a dataset file ``out``, its own beside it and every one in ``<out>.parts/``; for a directory
    ``out`` (a run directory), every one in it. The caller holds the lock of ``out``. Returns the removed paths."""
    out = Path(out)
    removed = []
    places = [(out, None)] if out.is_dir() else [(out.parent, out.stem), (out.with_name(out.name + ".parts"), None)]
    for directory, stem in places:
        if not directory.is_dir():
            continue
        for path in directory.glob(".*.tmp*"):
            m = TEMP_NAME.match(path.name)
            if m is None or (stem is not None and m["stem"] != stem) or _alive(int(m["pid"])):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by a killed writer of {out}", file=sys.stderr)
    return removed
