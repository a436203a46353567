"""Which checkpoint a run may continue from: its own (``--resume``) or another run's snapshot (``--branch-from``).

A *branch* starts a new run from ``epoch-K.pt``, a snapshot a *trunk* run kept after epoch K (``--keep-epochs K``).
It may differ from the trunk only in what had no effect on epochs 1..K: the physics loss's settings, when the physics
term was off in both runs before epoch K (``physics_start_epoch >= K`` or weight 0). The per-step random draws
depend on (seed, epoch, step) only, so a branch gives the weights a run of the branch's config trained from scratch
gives (tested), for the cost of its last epochs; and branches of one trunk differ only by what happened after K,
which pairs their comparison (no trunk-to-trunk noise). Importing this module loads no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fwi.config import Config, flatten_config, upgrade_config

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
