"""Weights & Biases: the mode to use and the training run's initialisation (tags from the config)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any


def wandb_mode(requested: str) -> str:
    """``online`` without credentials falls back to ``offline`` (with a note)."""
    if requested != "online":
        return requested
    netrc = Path.home() / ".netrc"
    if os.environ.get("WANDB_API_KEY") or (netrc.exists() and "api.wandb.ai" in netrc.read_text()):
        return "online"
    print("wandb: no credentials found, logging offline (sync later with `wandb sync`)", file=sys.stderr)
    return "offline"


def start_wandb(cfg, run_dir: Path, extra: dict[str, Any]):
    """A W&B run for training config ``cfg`` (an `fwi.config.Config`) in ``run_dir``, resumed under the same id;
    None when W&B is disabled."""
    if cfg.run.wandb == "disabled":
        return None
    import wandb

    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    m = cfg.model
    tags = [f"model:{m.arch}", f"attn:{m.attn}", f"decoder:{m.decoder}", f"gate:{m.skip_gate}",
            f"physics:{'on' if cfg.loss.physics_weight > 0 else 'off'}", *[f"place:{p}" for p in m.places()],
            *cfg.run.tags]
    return wandb.init(project=cfg.run.wandb_project, name=run_dir.name, group=cfg.run.group or None, tags=tags,
                      config={**cfg.to_dict(), **extra}, dir=str(run_dir), id=run_id, resume="allow",
                      mode=wandb_mode(cfg.run.wandb), settings=wandb.Settings(silent=True))
