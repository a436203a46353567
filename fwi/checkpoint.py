"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fwi.atomic import DiskFullError, atomic_path, space_guarded

FORMAT = "fwi-checkpoint"
#: What to do after a full disk while a checkpoint was written (the previous one is kept as it was).
RESUME_HINT = "the previous checkpoint there (if any) is kept: free some space, then --resume continues from it"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not an fwi checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, hint: str = RESUME_HINT) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename; a full disk is a
    `fwi.atomic.DiskFullError` (with ``hint``) and leaves ``path`` as it was."""
    try:
        with atomic_path(path) as tmp, space_guarded(tmp, "wb", target=path) as fh:
            torch.save({"format": FORMAT, **state}, fh)
    except DiskFullError as exc:
        raise exc.with_hint(hint) from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (or the ``best.pt`` of a run directory) safely."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "Unsupported global" in str(exc):  # never pass on torch's suggestion of weights_only=False
            raise CheckpointError(f"{path} holds objects other than tensors and plain values; fwi refuses to "
                                  "unpickle them (torch.load weights_only=True), it was not written by fwi") from None
        if "weights_only" in str(exc):
            raise CheckpointError(f"{path} is not a readable checkpoint (damaged, truncated or not a torch.save "
                                  "file)") from None
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{first_line[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fwi checkpoint")
    return state
