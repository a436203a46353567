"""A trained run, loaded for inference: `load_run` rebuilds the network of a run directory or checkpoint in eval mode
with everything needed to reproduce its data pipeline (`LoadedRun`: survey, normaliser, time decimation).

Used by evaluation (`fwi.evaluate`), the notebook, the ablation and FWI refinement; scoring lives in `fwi.scoring`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fwi.checkpoint import CheckpointError, load_checkpoint
from fwi.config import from_dict, upgrade_config
from fwi.data.transforms import Normalizer, decimate_time
from fwi.distributed import resolve_device
from fwi.models.build import build_model
from fwi.models.config import ModelConfig
from fwi.physics import Survey, clamp_velocity, forward_model

__all__ = ["LoadedRun", "find_run", "load_run"]


@dataclass
class LoadedRun:
    """A trained network ready for inference, with everything needed to reproduce its data pipeline."""

    model: nn.Module  # in eval mode, on ``device``
    config: dict[str, Any]  # the resolved training config (sections data / model / loss / optim / run)
    survey: Survey
    normalizer: Normalizer
    data_shape: tuple[int, int, int]  # (S, T', R) of the network's input
    time_decimation: int
    checkpoint: Path
    device: torch.device
    epoch: int = 0
    data: str = ""  # dataset path recorded at training time

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def grid(self) -> tuple[int, int]:
        return self.survey.shape

    @torch.no_grad()
    def predict(self, gathers: torch.Tensor) -> dict[str, torch.Tensor]:
        """Network output for normalised gathers (B, S, T', R): velocity [-1, 1] and salt logits, float32."""
        if tuple(gathers.shape[1:]) != self.data_shape:
            raise ValueError(f"gathers {tuple(gathers.shape[1:])} do not match the run's input {self.data_shape}")
        out = self.model(gathers.to(self.device, torch.float32))
        return {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def model_data(self, velocity_ms: torch.Tensor, survey: Survey | None = None, clamp: bool = False
                   ) -> torch.Tensor:
        """Raw gathers (B, S, T', R) of velocities (B, nz, nx) in m/s, modelled and decimated like the training data.

        ``clamp``: clamp into the propagatable range first (for predictions); otherwise the velocity is checked and a
        model the survey cannot propagate is an error.
        """
        survey = survey or self.survey
        v = torch.as_tensor(velocity_ms, dtype=torch.float32).to(self.device)
        if clamp:
            v = clamp_velocity(v, survey)
        return decimate_time(forward_model(v, survey, check=not clamp), self.time_decimation)

    def describe(self) -> str:
        m = self.config.get("model", {})
        return (f"{self.name}: {m.get('arch', '?')} attn={m.get('attn', 'none')} epoch {self.epoch}, grid "
                f"{self.grid[0]}x{self.grid[1]}, input {self.data_shape}, checkpoint {self.checkpoint}")


def find_run(path: str | os.PathLike, *roots: str | os.PathLike) -> Path:
    """``path`` as given (relative to the working directory), else the first ``root / path`` that exists, else
    ``path`` unchanged (`load_run` then names it in its error).

    A notebook runs in ``notebooks/`` while run directories live in ``<project>/runs/``: it passes its project
    directory as a root. Nothing is resolved against the installed package's location.
    """
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    for root in roots:
        candidate = Path(root) / path
        if candidate.exists():
            return candidate
    return path


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """Load a run directory (its ``best.pt``) or a checkpoint file and rebuild the network in eval mode."""
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    path = Path(path)
    checkpoint = path / "best.pt" if path.is_dir() else path
    try:
        state = load_checkpoint(checkpoint, map_location=device)
    except CheckpointError as exc:  # torch's unpickling messages span many lines; keep the error to one
        text, marker = str(exc), " is not a readable checkpoint"
        if "\n" in text and marker in text:
            text = text[:text.index(marker) + len(marker)] + " (damaged, truncated or not a torch.save file)"
        raise CheckpointError(" ".join(text.split())) from None
    missing = [k for k in ("model", "config", "survey", "normalisation", "data_shape") if k not in state]
    if missing:
        raise CheckpointError(f"{checkpoint} lacks {', '.join(missing)}: it was not written by fwi.train")
    config = upgrade_config(state["config"])
    try:
        model_cfg = from_dict(ModelConfig, config["model"], f"{checkpoint}: config.model")
        survey = Survey.from_dict(dict(state["survey"]))
        normalizer = Normalizer.from_dict(state["normalisation"])
        data_shape = tuple(int(v) for v in state["data_shape"])
        time_decimation = int(config.get("data", {}).get("time_decimation", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint} holds an invalid run description ({type(exc).__name__}: {exc})") from None
    model = build_model(model_cfg, data_shape, survey.shape)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{checkpoint}: the weights do not fit the configured model "
                              f"({' '.join(line.strip() for line in first[:3])})") from None
    channels_last = bool(config.get("optim", {}).get("channels_last", False))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()
    return LoadedRun(model=model, config=config, survey=survey, normalizer=normalizer, data_shape=data_shape,
                     time_decimation=time_decimation, checkpoint=checkpoint.resolve(), device=device,
                     epoch=int(state.get("epoch", 0)), data=str(state.get("data", "")))
