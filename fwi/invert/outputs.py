"""The output folder of ``fwi.invert``: one owner (`out_lock`), no stale files (`clear_outputs`), and the results
(`write_outputs`: metrics.json written last, so that it always describes the files beside it).

    out/refined.npy, refined.h5, refined-<i>.sgy (--segy), history.jsonl, convergence.png, before.png, after.png,
        metrics.json, state/models-<first>-<last>-<hash>.pt (resumable states, kept across runs)
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import ContextManager

import numpy as np

from fwi.atomic import atomic_path, write_text
from fwi.data.dataset import SALT_THRESHOLD
from fwi.data.h5write import h5_writing
from fwi.data.output import remove_debris
from fwi.invert.config import RefineResult
from fwi.lock import exclusive_lock
from fwi.physics import Survey

#: Files a run writes into --out (metrics.json first: removed first, written last); plus ``refined-*.sgy``.
OUTPUTS = ("metrics.json", "refined.npy", "refined.h5", "history.jsonl", "convergence.png", "before.png", "after.png")


def check_out(out: str | os.PathLike) -> Path:
    """``--out`` as a directory path (it may not exist yet); ValueError for an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file; give a directory (it is created if missing)")
    if not out.resolve().name:
        raise ValueError(f"--out {out}: give a directory below the file-system root")
    return out


def out_lock(out: str | os.PathLike) -> ContextManager[Path]:
    """The lock that makes one ``fwi.invert`` the owner of ``out``: ``.<name>.lock`` beside the resolved directory (a
    symlink to it takes the same lock); `fwi.lock.LockError` naming the holder when another process has it."""
    resolved = Path(out).resolve()
    return exclusive_lock(resolved.with_name(f".{resolved.name}.lock"), f"the refinement output {out}")


def clear_outputs(out: Path) -> list[Path]:
    """Remove the results of a previous run in ``out`` (metrics.json first) and temporary files of a killed writer
    (``.*.tmp*``, here and in state/); the resumable states stay. Call it holding `out_lock`."""
    removed = []
    for path in [out / name for name in OUTPUTS] + sorted(out.glob("refined-*.sgy")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed + [p for where in (out, out / "state") if where.is_dir() for p in remove_debris(where)]


def write_outputs(out: Path, result: RefineResult, split: str, idx: list[int], survey: Survey, truth: np.ndarray,
                  mask: np.ndarray, segy: bool = False) -> None:
    """Refined models (.npy, .h5, optional SEG-Y), history, figures, then metrics.json (last), all atomic."""
    from fwi import viz

    v = result.velocity.astype(np.float32)
    with atomic_path(out / "refined.npy") as tmp:
        np.save(tmp, v)
    salt = (result.salt_prob > 0.5) if result.salt_prob is not None else (v >= SALT_THRESHOLD)
    with atomic_path(out / "refined.h5") as tmp:
        with h5_writing(tmp, target=out / "refined.h5") as (f, _):  # a full disk: one error line, no HDF5 crash
            f.attrs["survey"] = survey.to_json()
            f.attrs["indices"] = json.dumps(idx)
            g = f.create_group(split)
            g["velocity"] = v[:, None]
            g["salt_mask"] = salt[:, None].astype(np.uint8)
    if segy:
        from fwi.io.segy import write_velocity

        for i, model in zip(idx, v):
            with atomic_path(out / f"refined-{i}.sgy") as tmp:
                write_velocity(tmp, model, survey.dx, overwrite=True)
    write_text(out / "history.jsonl", "".join(json.dumps(h) + "\n" for h in result.history))
    fig = viz.fwi_convergence(result.history, f"FWI of {len(v)} model(s)")
    with atomic_path(out / "convergence.png") as tmp:
        viz.save(fig, tmp)
    k = min(4, len(v))
    for name, models in (("before", result.start[:k]), ("after", v[:k])):
        fig = viz.velocity_panels(truth[:k], models, mask[:k], None, titles=[f"#{i} {name}" for i in idx[:k]],
                                  dx=survey.dx)
        with atomic_path(out / f"{name}.png") as tmp:
            viz.save(fig, tmp)
    write_text(out / "metrics.json", json.dumps({**result.summary(), "indices": idx}, indent=1))
