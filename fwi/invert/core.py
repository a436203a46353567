"""The refinement loop: `RefineConfig`, `refine(...) -> RefineResult`.

``refine(run_or_survey, observed_raw (B, S, T', R), start_velocity (B, nz, nx) m/s, salt_prob (B, nz, nx) | None,
config)`` runs FWI from the starting models, batched (all B x S shots in one deepwave call per evaluation), in
frequency stages (``config.schedule``), and returns the refined models with per-iteration records, data misfits and,
when ``truth`` is given, MAE / SSIM / IoU before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fwi.atomic import atomic_path
from fwi.data.dataset import SALT_THRESHOLD
from fwi.data.transforms import Normalizer, decimate_time
from fwi.invert.filters import check_cutoff, lowpass, time_gain
from fwi.invert.misfits import get_misfit
from fwi.invert.optimize import NEEDS_FULL_OBJECTIVE, make_optimizer, total_variation
from fwi.invert.params import NEEDS_SALT, PARAMETERISATIONS, Parameterisation
from fwi.invert.precondition import Preconditioner, source_illumination
from fwi.metrics import data_misfit, salt_metrics, velocity_metrics
from fwi.physics import Survey, SurveyError, forward_model

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
    gradient_sampling: int = 1
    checkpoint_segments: int | None = None
    lbfgs_history: int = 10
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
        if self.gradient_sampling < 1 or survey.nt % self.gradient_sampling:
            raise ValueError(f"gradient_sampling must be >= 1 and divide nt = {survey.nt}, got {self.gradient_sampling}")
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
        """Hash of the settings that change the result (not ``save_every``)."""
        d = {k: v for k, v in self.to_dict().items() if k != "save_every"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


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


# ---------------------------------------------------------------------------------------------------- checks
def check_inputs(survey: Survey, observed: torch.Tensor, start: torch.Tensor, salt_prob: torch.Tensor | None,
                 config: RefineConfig) -> None:
    """Raise ValueError / SurveyError for inputs the refinement cannot use (one readable line each)."""
    config.validate(survey)
    if start.ndim != 3 or tuple(start.shape[1:]) != survey.shape:
        raise SurveyError(f"starting models must be (B, {survey.nz}, {survey.nx}) for this survey, got "
                          f"{tuple(start.shape)}")
    if not torch.isfinite(start).all():
        raise ValueError("the starting model contains NaN or inf values")
    lo, hi = float(start.min()), float(start.max())
    if lo <= 0 or hi > survey.max_velocity:
        raise ValueError(f"the starting model spans {lo:g} .. {hi:g} m/s; it must be positive and at most the "
                         f"survey's max_velocity {survey.max_velocity:g} m/s")
    t = -(-survey.nt // config.time_decimation)
    expected = (start.shape[0], survey.n_sources, t, survey.n_receivers)
    if tuple(observed.shape) != expected:
        raise ValueError(f"observed gathers {tuple(observed.shape)} do not match the survey: expected (B, S, T, R) = "
                         f"{expected} (time decimation {config.time_decimation})")
    if not torch.isfinite(observed).all():
        raise ValueError("the observed gathers contain NaN or inf values")
    if not observed.abs().flatten(1).amax(1).gt(0).all():
        raise ValueError("observed gathers of some model are all zero")
    if config.param in NEEDS_SALT:
        if salt_prob is None:
            raise ValueError(f"param {config.param!r} needs the network's salt probability (start from run:RUNDIR)")
        if tuple(salt_prob.shape) != tuple(start.shape):
            raise ValueError(f"salt probability {tuple(salt_prob.shape)} does not match the models {tuple(start.shape)}")
        if not torch.isfinite(salt_prob).all() or salt_prob.min() < 0 or salt_prob.max() > 1:
            raise ValueError("salt probability must lie in [0, 1]")


# ---------------------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def score(velocity: torch.Tensor, truth: torch.Tensor, truth_mask: torch.Tensor | None, normalizer: Normalizer | None,
          salt_logits: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per-model (B,) MAE / RMSE (m/s), SSIM and salt IoU / Dice (fwi.metrics) of (B, nz, nx) velocities.

    The salt mask is ``salt_logits > 0`` when given (a network's head), else ``velocity >= SALT_THRESHOLD``.
    """
    truth = truth.to(velocity)
    if normalizer is None:
        normalizer = Normalizer(float(truth.min()), float(truth.max()) + 1e-3, 0.0, 1.0)
    vm = velocity_metrics(normalizer.velocity(velocity[:, None]), normalizer.velocity(truth[:, None]), normalizer,
                          reduction="none")
    mask = (truth >= SALT_THRESHOLD).float() if truth_mask is None else truth_mask.to(velocity)
    logits = velocity - SALT_THRESHOLD if salt_logits is None else salt_logits.to(velocity)
    sm = salt_metrics(logits[:, None], mask[:, None], reduction="none")
    out = {"mae_ms": vm["mae_ms"], "rmse_ms": vm["rmse_ms"], "ssim": vm["ssim"], **sm}
    return {k: v.cpu().double().numpy() for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------- state
def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, key: str, batch: int) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged state file is a user-facing condition
        raise ValueError(f"{path} is not a readable refinement state ({type(exc).__name__}); delete it to start "
                         "anew") from None
    if state.get("key") != key or state.get("batch") != batch:
        raise ValueError(f"{path} was written by another configuration or batch; delete it (or use a new --out / "
                         "--overwrite) to start anew")
    return state


# ---------------------------------------------------------------------------------------------------- refine
def _logits(param: Parameterisation) -> torch.Tensor | None:
    """Salt logits of a parameterisation that holds a salt variable (its mask scores the IoU), else None."""
    p = param.salt_probability()
    return None if p is None else torch.logit(p.clamp(1e-6, 1 - 1e-6))


def build_param(config: RefineConfig, start: torch.Tensor, salt_prob: torch.Tensor | None, vmax: float,
                run: Any = None, net_inputs: torch.Tensor | None = None) -> Parameterisation:
    if config.param == "network":
        from fwi.invert.network_prior import NetworkPrior

        if run is None or net_inputs is None:
            raise ValueError("param 'network' needs a trained run (start from run:RUNDIR)")
        return NetworkPrior(run.model, net_inputs, run.normalizer, config.vmin, vmax)
    return PARAMETERISATIONS.get(config.param)(start, config.vmin, vmax, salt_prob=salt_prob,
                                           confidence=config.salt_confidence, salt_velocity=config.salt_velocity,
                                           learn_salt_velocity=config.learn_salt_velocity)


def _network_inputs(run: Any, observed: torch.Tensor, config: RefineConfig) -> torch.Tensor:
    k = run.time_decimation
    if config.time_decimation == k:
        raw = observed
    elif config.time_decimation == 1:
        raw = decimate_time(observed, k)
    else:
        raise ValueError(f"param 'network' needs the observed data at full rate or decimated like the run's "
                         f"training data ({k}), got time_decimation {config.time_decimation}")
    return run.normalizer.gathers(raw)


def refine(run: Any, observed_raw: torch.Tensor, start_velocity: torch.Tensor, salt_prob: torch.Tensor | None = None,
           config: RefineConfig | None = None, *, truth: torch.Tensor | None = None,
           truth_mask: torch.Tensor | None = None, normalizer: Normalizer | None = None,
           start_salt_logits: torch.Tensor | None = None, state_path: str | os.PathLike | None = None,
           stop_after: int | None = None, device: str | torch.device | None = None, progress: bool | None = None,
           desc: str = "fwi") -> RefineResult:
    """Refine starting models by FWI against observed gathers.

    run: a `fwi.run.LoadedRun` (its survey, normaliser and network; needed for ``param='network'``) or a `Survey`.
    observed_raw: (B, S, T', R) raw amplitudes, T' = ceil(nt / config.time_decimation).
    start_velocity: (B, nz, nx) m/s. salt_prob: (B, nz, nx) in [0, 1] (network salt head) or None.
    truth / truth_mask: (B, nz, nx) true velocity (m/s) / salt mask, to score before and after and per iteration.
    start_salt_logits: (B, nz, nx) salt logits of the start (network head) for the "before" IoU; default: the
    velocity threshold. state_path: resumable state (written atomically every ``config.save_every`` iterations; a
    rerun with the same configuration continues). stop_after: do at most this many iterations in this call.
    """
    config = config or RefineConfig()
    survey: Survey = run if isinstance(run, Survey) else run.survey
    net_run = None if isinstance(run, Survey) else run
    if normalizer is None and net_run is not None:
        normalizer = net_run.normalizer
    device = torch.device(device) if device is not None else start_velocity.device
    observed = torch.as_tensor(observed_raw, dtype=torch.float32).to(device)
    start = torch.as_tensor(start_velocity, dtype=torch.float32).to(device)
    prob = None if salt_prob is None else torch.as_tensor(salt_prob, dtype=torch.float32).to(device)
    check_inputs(survey, observed, start, prob, config)
    vmax = config.upper(survey)
    batch = start.shape[0]
    truth_t = None if truth is None else torch.as_tensor(truth, dtype=torch.float32).to(device)
    mask_t = None if truth_mask is None else torch.as_tensor(truth_mask, dtype=torch.float32).to(device)

    net_inputs = _network_inputs(net_run, observed, config).to(device) if config.param == "network" else None
    if config.param == "network" and net_run is not None:
        net_run.model.to(device)
    param = build_param(config, start, prob, vmax, net_run, net_inputs)
    precond = Preconditioner(config.smooth_sigma, config.depth_power, config.mute_cells,
                             source_illumination(start.clamp(config.vmin, vmax), survey) if config.illumination
                             else None, quantile=config.grad_quantile)
    misfit_fn = get_misfit(config.misfit)
    dt_data = survey.dt * config.time_decimation
    memory = dict(storage_mode=config.storage_mode, storage_compression=config.storage_compression,
                  gradient_sampling_interval=config.gradient_sampling,
                  checkpoint_segments=config.checkpoint_segments)
    stages = config.stages()
    total = sum(k for _, k in stages)
    generator = torch.Generator().manual_seed(config.seed)

    history: list[dict[str, Any]] = []
    done, elapsed, n_evals = 0, 0.0, 0
    opt_state = None
    key = config.key()
    path = Path(state_path) if state_path is not None else None
    if path is not None and (state := _load_state(path, key, batch)) is not None:
        param.load_state_dict(state["param"])
        history, done, elapsed, n_evals = state["history"], int(state["done"]), float(state["elapsed"]), \
            int(state["n_evals"])
        generator.set_state(state["rng"])
        opt_state = state.get("optimizer")
    misfit_before = data_misfit(start, observed, survey, config.time_decimation).cpu().numpy()
    metrics_before = None
    if truth_t is not None:
        metrics_before = score(start, truth_t, mask_t, normalizer, start_salt_logits)

    def save() -> None:
        if path is not None:
            _save_state(path, {"key": key, "batch": batch, "param": param.state_dict(), "history": history,
                               "done": done, "elapsed": elapsed, "n_evals": n_evals, "rng": generator.get_state(),
                               "optimizer": optimizer.state_dict() if optimizer is not None else None,
                               "config": json.dumps(config.to_dict())})

    bar = tqdm(total=total, initial=done, desc=desc, disable=None if progress is None else not progress,
               dynamic_ncols=True, leave=False)
    optimizer = None
    budget = total if stop_after is None else min(total, done + int(stop_after))
    first = 0
    for stage, (cutoff, n_iter) in enumerate(stages):
        last = first + n_iter
        if done >= last:
            first = last
            continue
        if done >= budget:
            break
        optimizer = make_optimizer(config.optimizer, param.groups(config.network_lr if config.param == "network"
                                                                   else config.lr), config.lr, config.lbfgs_history)
        if opt_state is not None and done > first:  # resuming inside this stage
            optimizer.load_state_dict(opt_state)
        opt_state = None
        obs_stage = time_gain(lowpass(observed, cutoff, dt_data, config.filter_order), config.time_gain)
        while done < min(last, budget):
            t0 = time.perf_counter()
            if config.shots_per_iter in (0, survey.n_sources):
                shots, obs = None, obs_stage
            else:
                shots = torch.rand(batch, survey.n_sources, generator=generator).argsort(1)[:, :config.shots_per_iter]
                obs = obs_stage[torch.arange(batch)[:, None], shots.to(device)]
            record: dict[str, torch.Tensor] = {}

            def closure() -> torch.Tensor:
                nonlocal n_evals
                optimizer.zero_grad()
                v = param.velocity()
                if precond.active and v.requires_grad:
                    v.register_hook(precond)
                modelled = forward_model(v, survey, shots=shots, check=False, **memory)
                modelled = time_gain(lowpass(decimate_time(modelled, config.time_decimation), cutoff, dt_data,
                                             config.filter_order), config.time_gain)
                per_model = misfit_fn(modelled, obs)
                loss = per_model.sum()
                if config.tv_weight > 0:
                    loss = loss + config.tv_weight * total_variation(v / 1000.0).sum()
                loss.backward()
                n_evals += 1
                record.setdefault("loss", per_model.detach())  # the misfit at the iterate before the step
                return loss

            optimizer.step(closure)
            param.project()
            done += 1
            elapsed += time.perf_counter() - t0
            entry: dict[str, Any] = {"iteration": done, "stage": stage, "cutoff": cutoff,
                                     "misfit": record["loss"].cpu().tolist(), "seconds": elapsed, "n_evals": n_evals}
            if truth_t is not None:
                with torch.no_grad():
                    m = score(param.velocity().detach(), truth_t, mask_t, normalizer, _logits(param))
                entry.update({k: v.tolist() for k, v in m.items() if k in ("mae_ms", "ssim", "iou")})
            history.append(entry)
            post = {"misfit": f"{float(record['loss'].mean()):.3g}"}
            if "mae_ms" in entry:
                post["mae"] = f"{np.mean(entry['mae_ms']):.0f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
            if done % config.save_every == 0 or done == total:
                save()
        first = last
    bar.close()
    with torch.no_grad():
        v_final = param.velocity().detach()
        prob_after = param.salt_probability()
    misfit_after = data_misfit(v_final, observed, survey, config.time_decimation).cpu().numpy()
    metrics_after = score(v_final, truth_t, mask_t, normalizer, _logits(param)) if truth_t is not None else None
    return RefineResult(velocity=v_final.cpu().numpy(), start=start.cpu().numpy(), history=history,
                        misfit_before=misfit_before, misfit_after=misfit_after, seconds=elapsed, n_evals=n_evals,
                        iterations=done, complete=done >= total, config=config.to_dict(),
                        salt_prob=None if prob_after is None else prob_after.cpu().numpy(),
                        metrics_before=metrics_before, metrics_after=metrics_after)
