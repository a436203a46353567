"""The output folder of ``fwi.invert``: one owner (`out_lock`), no stale files (`clear_outputs`), and the results
(`write_outputs`: metrics.json written last, so that it always describes the files beside it).

    out/refined.npy, refined.h5, refined-<i>.sgy (--segy), history.jsonl, convergence.png, comparison.png,
        before.png, after.png, metrics.json, state/models-<first>-<last>-<hash>.pt (resumable states, kept across runs)

refined.h5 holds, under /<split>/, the refined ``velocity`` and ``salt_mask`` in the dataset layout (N, 1, nz, nx),
the ``start`` models and the ``true_velocity`` / ``true_salt_mask`` they were scored against: `load_refinement`
reads a finished output back (the notebook's view of a refinement).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
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
OUTPUTS = ("metrics.json", "refined.npy", "refined.h5", "history.jsonl", "convergence.png", "comparison.png",
           "before.png", "after.png")


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
            g["start"] = result.start.astype(np.float32)[:, None]
            g["true_velocity"] = np.asarray(truth, np.float32)[:, None]
            g["true_salt_mask"] = np.asarray(mask).astype(np.uint8)[:, None]
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
    fig = viz.refinement_panels(truth[:k], result.start[:k], v[:k], mask[:k], [f"#{i}" for i in idx[:k]], survey.dx)
    with atomic_path(out / "comparison.png") as tmp:
        viz.save(fig, tmp)
    for name, models in (("before", result.start[:k]), ("after", v[:k])):
        fig = viz.velocity_panels(truth[:k], models, mask[:k], None, titles=[f"#{i} {name}" for i in idx[:k]],
                                  dx=survey.dx)
        with atomic_path(out / f"{name}.png") as tmp:
            viz.save(fig, tmp)
    write_text(out / "metrics.json", json.dumps({**result.summary(), "indices": idx}, indent=1))


@dataclass
class RefinementOutput:
    """A finished ``fwi.invert`` output read back (`load_refinement`); models (N, nz, nx) in m/s."""

    split: str
    indices: list[int]
    survey: Survey
    start: np.ndarray
    refined: np.ndarray
    truth: np.ndarray
    true_mask: np.ndarray  # (N, nz, nx) in {0, 1}
    salt_mask: np.ndarray  # (N, nz, nx) in {0, 1}, the refined models' salt
    history: list[dict]  # one record per iteration (history.jsonl)
    metrics: dict  # metrics.json: before / after means, per-model values, the settings

    def figure(self, count: int = 4):
        """Truth / start / refined / update / error change of the first ``count`` models (`viz.refinement_panels`)."""
        from fwi import viz

        k = min(count, len(self.refined))
        return viz.refinement_panels(self.truth[:k], self.start[:k], self.refined[:k], self.true_mask[:k],
                                     [f"#{i}" for i in self.indices[:k]], self.survey.dx)

    def convergence(self):
        """Stage misfit and MAE per iteration (`viz.fwi_convergence`)."""
        from fwi import viz

        return viz.fwi_convergence(self.history, f"FWI of {len(self.refined)} model(s) ({self.split} {self.indices})")


def load_refinement(out: str | os.PathLike) -> RefinementOutput:
    """Read a finished ``fwi.invert --out`` folder (metrics.json marks it finished: it is written last)."""
    import h5py

    out = Path(out)
    if not (out / "metrics.json").is_file():
        raise FileNotFoundError(f"{out} holds no finished refinement (no metrics.json; run fwi.invert --out {out})")
    metrics = json.loads((out / "metrics.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    with h5py.File(out / "refined.h5", "r") as f:
        split = next(k for k in f if isinstance(f[k], h5py.Group))
        g = f[split]
        if "start" not in g:
            raise ValueError(f"{out / 'refined.h5'} was written before the start models were stored; rerun fwi.invert")
        arrays = {k: g[k][()][:, 0] for k in ("velocity", "salt_mask", "start", "true_velocity", "true_salt_mask")}
        survey = Survey.from_json(f.attrs["survey"])
        indices = json.loads(f.attrs["indices"])
    return RefinementOutput(split, indices, survey, arrays["start"], arrays["velocity"], arrays["true_velocity"],
                            arrays["true_salt_mask"], arrays["salt_mask"], history, metrics)
