"""Which checkpoint a run may continue from: its own (``--resume``) or another run's snapshot (``--branch-from``).

A *branch* starts a new run from ``epoch-K.pt``, a snapshot a *trunk* run kept after epoch K (``--keep-epochs K``).
It may differ from the trunk only in what had no effect on epochs 1..K: the physics loss's settings, when the physics
term was off in both runs before epoch K (``physics_start_epoch >= K`` or weight 0). The per-step random draws
depend on (seed, epoch, step) only, so a branch gives the weights a run of the branch's config trained from scratch
gives (tested), for the cost of its last epochs; and branches of one trunk differ only by what happened after K,
which pairs their comparison (no trunk-to-trunk noise).

`prepare_run_dir` makes a run directory ready for a training (fresh, ``--resume``, ``--branch-from`` or
``--overwrite``) and `repair_records` makes its side files agree with ``last.pt`` after a kill.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from fwi.atomic import write_text
from fwi.checkpoint import CheckpointError, load_checkpoint
from fwi.config import Config, flatten_config, upgrade_config
from fwi.data.output import remove_debris

#: Config keys a ``--resume`` may change: they cannot change the weights or the recorded metrics.
RESUME_FREE_KEYS = frozenset({
    "data.num_workers", "data.cache_gb", "data.generate_workers", "optim.device", "optim.eval_batch_size",
    "run.out", "run.name", "run.wandb", "run.wandb_project", "run.group", "run.tags", "run.resume", "run.overwrite",
    "run.stop_after", "run.progress", "run.images", "run.keep_epochs", "run.branch_from"})

#: Keys of the physics term: a branch may change them when the term was off in both runs up to the branch epoch.
PHYSICS_KEYS = frozenset({
    "loss.physics_weight", "loss.physics_norm", "loss.physics_shots", "loss.physics_samples",
    "loss.physics_start_epoch", "loss.physics_ramp_epochs", "loss.physics_storage", "loss.physics_compression",
    "loss.physics_gradient_sampling", "loss.physics_checkpoint_segments", "loss.physics_depth_power"})


def snapshot_name(epoch: int) -> str:
    """File name of the snapshot a run keeps after ``epoch`` (1-based, as in metrics.jsonl)."""
    return f"epoch-{epoch}.pt"


def snapshot_epoch(path: str | Path) -> int | None:
    """The epoch of a snapshot file named by `snapshot_name` (``.../epoch-K.pt`` -> K), else None."""
    stem = Path(path).name.removesuffix(".pt")
    prefix, _, number = stem.partition("-")
    return int(number) if prefix == "epoch" and number.isdigit() else None


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """A (possibly older) nested config flattened, keys it lacks at their defaults (the behaviour it had)."""
    return {**flatten_config(Config().to_dict()), **flatten_config(upgrade_config(config))}


def resume_conflicts(requested: dict[str, Any], recorded: dict[str, Any],
                     free: frozenset[str] = RESUME_FREE_KEYS) -> list[str]:
    """``key (recorded -> requested)`` for every result-changing key in which a resume differs from its checkpoint.

    A key the checkpoint does not record (added since it was written) counts as its default, the behaviour it had.
    """
    new, old = flatten_config(requested), _flat(recorded)
    return [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in sorted(set(new) | set(old))
            if k not in free and new.get(k) != old.get(k)]


def physics_off_before(config: dict[str, Any], epoch: int) -> bool:
    """True when the physics term of ``config`` had weight 0 at every step of epochs 1..``epoch``."""
    flat = _flat(config)
    return flat["loss.physics_weight"] == 0 or flat["loss.physics_start_epoch"] >= epoch


def branch_conflicts(requested: dict[str, Any], recorded: dict[str, Any], epoch: int) -> list[str]:
    """Why a run of config ``requested`` cannot branch from a snapshot after ``epoch`` of a run of ``recorded``
    (empty when it can): the result-changing keys that differ, physics keys only if the term acted before."""
    trunk_off, branch_off = physics_off_before(recorded, epoch), physics_off_before(requested, epoch)
    dormant = trunk_off and branch_off
    reasons = resume_conflicts(requested, recorded, RESUME_FREE_KEYS | (PHYSICS_KEYS if dormant else frozenset()))
    if not dormant:
        reasons.append(f"the physics term acts before epoch {epoch + 1} in {'this run' if trunk_off else 'the trunk'} "
                       f"(physics_start_epoch must be >= {epoch} in both, or the weight 0)")
    return reasons


def check_branch(requested: dict[str, Any], state: dict[str, Any], path: Path) -> None:
    """Raise ValueError naming every obstacle when ``requested`` cannot branch from the snapshot ``state``."""
    if "epoch" not in state or "optimizer" not in state:
        raise ValueError(f"--branch-from {path}: not a training checkpoint (no epoch or optimizer state)")
    epoch = int(state["epoch"])
    epochs = int(_flat(requested)["optim.epochs"])
    if epoch >= epochs:
        raise ValueError(f"--branch-from {path}: the snapshot is after epoch {epoch}; this run has only {epochs} "
                         "epochs, nothing would be left to train")
    conflicts = branch_conflicts(requested, state.get("config", {}), epoch)
    if conflicts:
        raise ValueError(f"--branch-from {path}: this run would not have trained epochs 1..{epoch} as the trunk did: "
                         + "; ".join(conflicts))


def check_resume(cfg: Config, checkpoint: Path) -> dict[str, Any]:
    """The checkpoint to resume from, after checking that ``cfg`` would continue the same run (else an error)."""
    state = load_checkpoint(checkpoint)
    conflicts = resume_conflicts(cfg.to_dict(), state.get("config", {}))
    if conflicts:
        raise CheckpointError(
            f"--resume would not continue {checkpoint.parent.name} as it was trained: {', '.join(conflicts)}. "
            "Drop these flags to continue it (the learning-rate schedule is fixed by its epochs and batch size), "
            "or start another run with --name (or --overwrite)")
    return state


def load_branch(cfg: Config) -> dict[str, Any]:
    """The trunk's snapshot ``--branch-from`` names, after checking that ``cfg`` trained its epochs as the trunk did."""
    path = Path(cfg.run.branch_from)
    state = load_checkpoint(path)
    check_branch(cfg.to_dict(), state, path)
    return state


def _remove_stale_records(run_dir: Path) -> None:
    """Records of an earlier run whose checkpoint is gone (a fresh machine): this run starts them anew."""
    stale = [run_dir / n for n in ("metrics.jsonl", "summary.json") if (run_dir / n).exists()]
    stale += sorted(p for p in run_dir.glob("eval-*") if p.is_dir())  # evaluations of the earlier weights
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if stale:
        print(f"note: {run_dir} had no checkpoint; its earlier records ({', '.join(p.name for p in stale)}) "
              "were removed and the run starts from epoch 1", file=sys.stderr)


def prepare_run_dir(cfg: Config, run_dir: Path) -> dict[str, Any] | None:
    """Make ``run_dir`` ready for this run (the caller holds its lock) and return the state to continue from:
    its own last.pt with ``--resume``, the trunk's snapshot with ``--branch-from``, else None. Everything is checked
    before anything is removed."""
    if run_dir.exists():
        remove_debris(run_dir)
    if cfg.run.resume:
        if not (run_dir / "last.pt").exists():
            raise CheckpointError(f"--resume: no checkpoint {run_dir / 'last.pt'} to resume from")
        return check_resume(cfg, run_dir / "last.pt")
    branch = load_branch(cfg) if cfg.run.branch_from else None
    if (run_dir / "last.pt").exists():  # a directory without a checkpoint holds nothing worth keeping
        if not cfg.run.overwrite:
            raise FileExistsError(f"run directory {run_dir} exists; use --resume to continue it, --overwrite to "
                                  "replace it, or --name for a new run")
        shutil.rmtree(run_dir)
    else:
        _remove_stale_records(run_dir)
    return branch


def repair_records(run_dir: Path, state: dict[str, Any]) -> None:
    """Make the side files agree with the checkpoint (the source of truth) after a kill at any point.

    ``metrics.jsonl`` is rewritten from the history inside ``last.pt``; a ``best.pt`` that lags the best epoch
    recorded there (a kill between the two checkpoint writes) is restored from ``last.pt``, which is that epoch.
    """
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
    best_epoch = state.get("best_epoch")
    if best_epoch is None:
        return
    best_path = run_dir / "best.pt"
    on_disk = load_checkpoint(best_path)["epoch"] if best_path.exists() else None
    if on_disk != best_epoch and best_epoch == state["epoch"]:
        shutil.copyfile(run_dir / "last.pt", best_path)
        print(f"note: {best_path} lagged the best epoch {best_epoch} recorded in last.pt; restored", file=sys.stderr)
