"""Starting models (B, nz, nx) m/s: a trained run's prediction, a smoothed model, a file, a 1D trend; `load_start`
builds them from a ``--start`` spec through the `STARTS` registry."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fwi.data.store import read_info
from fwi.data.transforms import decimate_time
from fwi.invert.parsing import parse_start
from fwi.invert.precondition import gaussian_smooth
from fwi.io.velocity_files import load_velocity_file
from fwi.registry import Registry


def network_inputs(run, observed_raw: torch.Tensor, time_decimation: int = 1) -> torch.Tensor:
    """The run's normalised network input for raw gathers (B, S, T', R) decimated in time by ``time_decimation``:
    full-rate gathers are decimated like its training data, gathers at its decimation are taken as they are."""
    k = run.time_decimation
    if time_decimation == k:
        raw = observed_raw
    elif time_decimation == 1:
        raw = decimate_time(observed_raw, k)
    else:
        raise ValueError(f"the network of {getattr(run, 'name', 'the run')} needs the observed data at full rate or "
                         f"decimated like its training data ({k}), got time decimation {time_decimation}")
    return run.normalizer.gathers(raw)


@torch.no_grad()
def network_start(run, observed_raw: torch.Tensor, vmin: float = 1400.0, time_decimation: int = 1
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prediction of a loaded run for raw gathers (B, S, T', R) decimated by ``time_decimation`` (`network_inputs`):
    velocity (m/s, clamped into [vmin, survey.max_velocity]), salt probability and salt logits, each (B, nz, nx) on
    the CPU."""
    out = run.predict(network_inputs(run, observed_raw.float(), time_decimation))
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
    if split not in read_info(data).sizes:
        raise ValueError(f"{data} has no {split!r} split for the 1D trend")
    v = load_velocity_file(data, split=split)[0].astype(np.float64)  # (N, nz, nx), checked as every model file
    trend = v.mean(axis=(0, 2))
    nx = v.shape[-1]
    return torch.from_numpy(np.repeat(trend[None, :, None], nx, axis=2).repeat(n, 0)).float()


@dataclass
class Start:
    """Starting models of a refinement and, from a run, the run and its salt head."""

    velocity: torch.Tensor  # (B, nz, nx) m/s
    run: Any = None  # the `fwi.run.LoadedRun` of run:RUNDIR
    salt_prob: torch.Tensor | None = None  # (B, nz, nx)
    salt_logits: torch.Tensor | None = None  # (B, nz, nx)


@dataclass
class StartContext:
    """What the start kinds read from: the dataset, the chosen samples (raw, `fwi.invert.dataset.Samples`)."""

    data: Path
    split: str
    samples: Any
    time_decimation: int
    key: str | None = None  # dataset inside a plain HDF5 / .mat model file
    device: torch.device = torch.device("cpu")


def _run_start(arg: str, ctx: StartContext) -> Start:
    from fwi.run import load_run

    run = load_run(arg, ctx.device)
    v, prob, logits = network_start(run, ctx.samples.gathers, time_decimation=ctx.time_decimation)
    return Start(v, run, prob, logits)


def _file_start(arg: str, ctx: StartContext) -> Start:
    models, _ = load_velocity_file(arg, key=ctx.key, split=ctx.split)  # unit-checked (fwi.io.velocity_files)
    n = len(ctx.samples.velocity)
    if len(models) not in (1, n):
        raise ValueError(f"{arg} holds {len(models)} models, expected 1 or {n} (one per index)")
    return Start(torch.from_numpy(np.array(np.broadcast_to(models, (n, *models.shape[1:])))))  # a writable copy


#: ``--start KIND:ARG`` -> starting models (`fwi.invert.parsing.parse_start` checks the spec first).
STARTS: Registry[Callable[[Any, StartContext], Start]] = Registry("starting model")
STARTS.register("run", _run_start)
STARTS.register("smooth", lambda sigma, ctx: Start(smooth_start(ctx.samples.velocity, sigma)))
STARTS.register("file", _file_start)
STARTS.register("trend", lambda _, ctx: Start(trend_start(ctx.data, len(ctx.samples.velocity))))


def load_start(spec: str, ctx: StartContext) -> Start:
    """The starting models of ``--start`` ``spec`` (run:RUNDIR, smooth:SIGMA, file:PATH or trend)."""
    kind, arg = parse_start(spec)
    return STARTS.get(kind)(arg, ctx)
