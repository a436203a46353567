"""Starting models (B, nz, nx) m/s: a trained run's prediction, a smoothed model, a file, a 1D trend."""

from __future__ import annotations

import os

import h5py
import numpy as np
import torch

from fwi.data.transforms import decimate_time
from fwi.invert.precondition import gaussian_smooth


@torch.no_grad()
def network_start(run, observed_raw: torch.Tensor, vmin: float = 1400.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prediction of a loaded run for full-rate raw gathers (B, S, nt, R): velocity (m/s, clamped into
    [vmin, survey.max_velocity]), salt probability and salt logits, each (B, nz, nx) on the CPU."""
    out = run.predict(run.normalizer.gathers(decimate_time(observed_raw.float(), run.time_decimation)))
    v = run.normalizer.velocity_inverse(out["velocity"][:, 0]).clamp(vmin, run.survey.max_velocity)
    logits = out["salt_logits"][:, 0]
    return v.cpu(), torch.sigmoid(logits).cpu(), logits.cpu()


def smooth_start(velocity: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed models (``sigma`` in cells), the classic FWI starting model from a known one."""
    if not sigma > 0:
        raise ValueError(f"smoothing sigma must be positive (cells), got {sigma}")
    return gaussian_smooth(torch.as_tensor(velocity, dtype=torch.float32), sigma)


def trend_start(data: str | os.PathLike, n: int, split: str = "train") -> torch.Tensor:
    """A 1D trend v(z): the mean over models and x of the training split's velocities, repeated n times."""
    with h5py.File(data, "r") as f:
        if split not in f:
            raise ValueError(f"{data} has no {split!r} split for the 1D trend")
        v = f[split]["velocity"][()].astype(np.float64)  # (N, 1, nz, nx)
    trend = v.mean(axis=(0, 1, 3))
    nx = v.shape[-1]
    return torch.from_numpy(np.repeat(trend[None, :, None], nx, axis=2).repeat(n, 0)).float()
