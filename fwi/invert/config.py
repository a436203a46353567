"""The settings and the result of an FWI refinement: `RefineConfig` (every switch of the method, checked against a
survey) and `RefineResult` (refined models, per-iteration records, misfits and metrics before / after)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fwi.invert.filters import check_cutoff
from fwi.invert.misfits import get_misfit
from fwi.invert.optimize import NEEDS_FULL_OBJECTIVE, make_optimizer
from fwi.invert.params import PARAMETERISATIONS
from fwi.physics import Survey

STORAGE_MODES = (None, "device", "cpu", "disk")


@dataclass
class RefineConfig:
    """Every switch of the method. Velocities in m/s, frequencies in Hz, ``lr`` in km/s per step.

    The defaults are the scheme that measured best on validation models from a trained network's start
    (experiments/fwi_refine/README.md): gradient descent with momentum on the gradient normalised by its 98th
    percentile (a step of at most 50 m/s that keeps the gradient's spatial shape; Adam's per-cell normalisation fits
    the data but moved poorly constrained cells as far as well-constrained ones and raised the model error), 8 -> 12 Hz
    -> full band, one cell of gradient smoothing and the top two rows muted.
    """

    iterations: int = 30  # total, split evenly over the stages of ``schedule``
    schedule: tuple[float | None, ...] = (8.0, 12.0, None)  # low-pass cut-offs; None = full band
    misfit: str = "l2"  # l2 | correlation | envelope
    optimizer: str = "sgd"  # sgd | adam | lbfgs
    lr: float = 0.05  # km/s: sgd moves the cells at the gradient's 98th percentile by lr; Adam moves every cell ~lr
    network_lr: float = 1e-4  # Adam step on the network weights (param = "network")
    param: str = "velocity"  # velocity | salt_pin | salt_soft | network
    smooth_sigma: float = 1.0  # Gaussian smoothing of the gradient (cells)
    depth_power: float = 0.0  # gradient x (z / z_max)^p
    mute_cells: int = 2  # zero the gradient in the top rows (sources / receivers)
    illumination: bool = False  # divide the gradient by the source pseudo-Hessian
    grad_quantile: float = 0.98  # > 0: normalise each model's gradient by this quantile of |g|, clipped to [-1, 1]
    tv_weight: float = 0.0  # total-variation regularisation weight (on km/s)
    time_gain: float = 0.0  # weigh the data by (t / T)^p in the misfit (late, deep reflections count more)
    vmin: float = 1400.0
    vmax: float | None = None  # default: the survey's max_velocity (never above it)
    salt_confidence: float = 0.9  # salt_pin: pin cells with salt probability above this
    salt_velocity: float = 4500.0  # initial salt velocity (fwi.data.geology: 4400-4600 m/s)
    learn_salt_velocity: bool = True
    shots_per_iter: int = 0  # random shots per model and iteration (0 = all); not with lbfgs
    time_decimation: int = 1  # the observed data are decimated by this factor (fwi.data.transforms.decimate_time)
    filter_order: int = 4
    storage_mode: str | None = None  # forward_model memory options
    storage_compression: bool = False
    gradient_sampling: int = 0  # store every k-th step for the gradient; 0 = Survey.lossless_gradient_sampling()
    checkpoint_segments: int | None = None
    lbfgs_history: int = 10
    keep_best: bool = False  # leave each stage at each model's iterate of lowest stage misfit (fwi.invert.best)
    seed: int = 0
    save_every: int = 5  # write the resumable state every this many iterations

    def validate(self, survey: Survey) -> "RefineConfig":
        if self.iterations <= 0:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.schedule:
            raise ValueError("the frequency schedule is empty; use 'full' for a single full-band stage")
        if self.time_decimation < 1:
            raise ValueError(f"time_decimation must be >= 1, got {self.time_decimation}")
        for c in self.schedule:
            check_cutoff(c, survey.dt * self.time_decimation)
        get_misfit(self.misfit)
        if self.param not in PARAMETERISATIONS and self.param != "network":
            raise ValueError(f"unknown parameterisation {self.param!r}; choose one of "
                             f"{', '.join([*PARAMETERISATIONS, 'network'])}")
        make_optimizer(self.optimizer, [{"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0}], 1.0)
        if self.optimizer in NEEDS_FULL_OBJECTIVE and self.shots_per_iter not in (0, survey.n_sources):
            raise ValueError(f"{self.optimizer} needs the same objective at every line-search trial: use all shots "
                             "(shots_per_iter 0)")
        if not 0 <= self.shots_per_iter <= survey.n_sources:
            raise ValueError(f"shots_per_iter must lie in 0 .. {survey.n_sources}, got {self.shots_per_iter}")
        for name in ("lr", "network_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.grad_quantile < 1:
            raise ValueError(f"grad_quantile must lie in [0, 1) (0 = off), got {self.grad_quantile}")
        if self.optimizer == "sgd" and self.grad_quantile == 0 and self.param != "network":
            raise ValueError("optimizer sgd steps on the normalised gradient: give grad_quantile > 0 (e.g. 0.98), or "
                             "use adam / lbfgs")
        for name in ("smooth_sigma", "tv_weight", "mute_cells", "time_gain"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mute_cells >= survey.nz:
            raise ValueError(f"mute_cells {self.mute_cells} mutes the whole {survey.nz}-row grid")
        vmax = self.upper(survey)
        if not 0 < self.vmin < vmax:
            raise ValueError(f"velocity bounds must satisfy 0 < vmin < vmax <= survey.max_velocity "
                             f"({survey.max_velocity:g}), got {self.vmin:g} .. {vmax:g}")
        if not 0 < self.salt_confidence < 1:
            raise ValueError(f"salt_confidence is a probability in (0, 1), got {self.salt_confidence}")
        if self.storage_mode not in STORAGE_MODES:
            raise ValueError(f"storage_mode must be one of {STORAGE_MODES}, got {self.storage_mode!r}")
        if self.gradient_sampling < 0 or (self.gradient_sampling and survey.nt % self.gradient_sampling):
            raise ValueError(f"gradient_sampling must be 0 (auto) or divide nt = {survey.nt}, got "
                             f"{self.gradient_sampling}")
        if self.keep_best and self.shots_per_iter not in (0, survey.n_sources):
            raise ValueError("keep_best compares the misfits of a stage's iterates: they must see the same shots "
                             "(shots_per_iter 0)")
        if self.save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {self.save_every}")
        return self

    def upper(self, survey: Survey) -> float:
        return min(self.vmax if self.vmax is not None else survey.max_velocity, survey.max_velocity)

    def stages(self) -> list[tuple[float | None, int]]:
        """(cut-off, iterations) per stage with at least one iteration; later stages get the remainder."""
        n = len(self.schedule)
        sizes = [self.iterations // n + (1 if i >= n - self.iterations % n else 0) for i in range(n)]
        return [(c, k) for c, k in zip(self.schedule, sizes) if k > 0]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schedule"] = list(self.schedule)
        return d

    def key(self) -> str:
        """Hash of the settings that change the result: not those in ``NOT_IN_KEY``, and those in ``ADDED_LATER``
        only when off their default, so the states and records written before a field existed keep their keys."""
        defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(self)}
        d = {k: v for k, v in self.to_dict().items()
             if k not in NOT_IN_KEY and not (k in ADDED_LATER and v == defaults[k])}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


#: Fields that do not change the result (how often the state is saved).
NOT_IN_KEY = frozenset({"save_every"})
#: Fields added after keys were recorded: a field added later enters the key only when set off its default. Add
#: every new result-changing field here (``tests/invert/test_keep_best.py`` pins keys recorded before ``keep_best``).
ADDED_LATER = frozenset({"keep_best"})


@dataclass
class RefineResult:
    """Refined models and their records. Arrays are numpy, indexed like the input batch."""

    velocity: np.ndarray  # (B, nz, nx) m/s
    start: np.ndarray  # (B, nz, nx) m/s, the starting models as given
    history: list[dict[str, Any]]  # one record per iteration: loss (B,), stage, cut-off, seconds, metrics
    misfit_before: np.ndarray  # (B,) relative full-band L2 data misfit ||d(v) - d_obs|| / ||d_obs||
    misfit_after: np.ndarray
    seconds: float  # wall time of the iterations (all models)
    n_evals: int  # forward + backward evaluations (each of all models of a call; refine_batches sums its chunks')
    iterations: int  # iterations done so far
    complete: bool
    config: dict[str, Any]
    salt_prob: np.ndarray | None = None  # (B, nz, nx) salt probability of salt / network parameterisations
    metrics_before: dict[str, np.ndarray] | None = None  # when the truth is known: mae_ms, rmse_ms, ssim, iou, dice
    metrics_after: dict[str, np.ndarray] | None = None

    @property
    def seconds_per_model(self) -> float:
        return self.seconds / max(1, len(self.velocity))

    def summary(self) -> dict[str, Any]:
        """Batch means and per-model values (JSON-ready)."""
        out: dict[str, Any] = {"n": len(self.velocity), "iterations": self.iterations, "complete": self.complete,
                               "n_evals": self.n_evals, "seconds": self.seconds,
                               "seconds_per_model": self.seconds_per_model,
                               "misfit_before": float(self.misfit_before.mean()),
                               "misfit_after": float(self.misfit_after.mean())}
        for tag, m in (("before", self.metrics_before), ("after", self.metrics_after)):
            for k, v in (m or {}).items():
                out[f"{k}_{tag}"] = float(np.mean(v))
        out["per_model"] = {"misfit_before": self.misfit_before.tolist(), "misfit_after": self.misfit_after.tolist(),
                            **{f"{k}_{tag}": np.asarray(v).tolist()
                               for tag, m in (("before", self.metrics_before), ("after", self.metrics_after))
                               for k, v in (m or {}).items()}}
        out["config"] = self.config
        return out
