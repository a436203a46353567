"""The refinement loop: ``refine(...) -> RefineResult``, one `run_stage` per frequency stage, one `iteration` per
optimiser step.

``refine(run_or_survey, observed_raw (B, S, T', R), start_velocity (B, nz, nx) m/s, salt_prob (B, nz, nx) | None,
config)`` runs FWI from the starting models, batched (all B x S shots in one deepwave call per evaluation), in
frequency stages (``config.schedule``), and returns the refined models with per-iteration records, data misfits and,
when ``truth`` is given, MAE / SSIM / IoU before and after. Settings and result: `fwi.invert.config`; input checks:
`fwi.invert.checks`; the resumable state: `fwi.invert.state`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from fwi.data.dataset import SALT_THRESHOLD
from fwi.data.transforms import Normalizer, decimate_time
from fwi.invert import best
from fwi.invert.checks import check_inputs
from fwi.invert.config import RefineConfig, RefineResult
from fwi.invert.filters import lowpass, time_gain
from fwi.invert.misfits import get_misfit
from fwi.invert.optimize import make_optimizer, total_variation
from fwi.invert.params import PARAMETERISATIONS, Parameterisation
from fwi.invert.precondition import Preconditioner, source_illumination
from fwi.invert.starts import network_inputs
from fwi.invert.state import RefineState
from fwi.metrics import data_misfit
from fwi.physics import Survey, forward_model
from fwi.scoring import velocity_scores

#: The per-model metrics of a refinement (before / after; MAE, SSIM and IoU also per iteration).
SCORES = ("mae_ms", "rmse_ms", "ssim", "iou", "dice")


@torch.no_grad()
def score(velocity: torch.Tensor, truth: torch.Tensor, truth_mask: torch.Tensor | None, normalizer: Normalizer | None,
          salt_logits: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per-model (B,) `SCORES` of (B, nz, nx) velocities in m/s (`fwi.scoring.velocity_scores`).

    Defaults: the salt mask ``salt_logits > 0`` (a network's head) else ``velocity >= SALT_THRESHOLD``; the true mask
    ``truth >= SALT_THRESHOLD``; the normaliser spanning the true velocities.
    """
    truth = truth.to(velocity)
    if normalizer is None:
        normalizer = Normalizer(float(truth.min()), float(truth.max()) + 1e-3, 0.0, 1.0)
    mask = (truth >= SALT_THRESHOLD).float() if truth_mask is None else truth_mask.to(velocity)
    logits = velocity - SALT_THRESHOLD if salt_logits is None else salt_logits.to(velocity)
    scores = velocity_scores(velocity, truth, mask, logits, normalizer)
    return {k: scores[k].cpu().double().numpy() for k in SCORES}


def salt_logits(param: Parameterisation) -> torch.Tensor | None:
    """Salt logits of a parameterisation that holds a salt variable (its mask scores the IoU), else None."""
    p = param.salt_probability()
    return None if p is None else torch.logit(p.clamp(1e-6, 1 - 1e-6))


def build_param(config: RefineConfig, start: torch.Tensor, salt_prob: torch.Tensor | None, vmax: float,
                run: Any = None, net_inputs: torch.Tensor | None = None) -> Parameterisation:
    """The parameterisation ``config.param`` of the starting models (B, nz, nx) m/s."""
    if config.param == "network":
        from fwi.invert.network_prior import NetworkPrior

        if run is None or net_inputs is None:
            raise ValueError("param 'network' needs a trained run (start from run:RUNDIR)")
        return NetworkPrior(run.model, net_inputs, run.normalizer, config.vmin, vmax)
    return PARAMETERISATIONS.get(config.param)(start, config.vmin, vmax, salt_prob=salt_prob,
                                           confidence=config.salt_confidence, salt_velocity=config.salt_velocity,
                                           learn_salt_velocity=config.learn_salt_velocity)


@dataclass
class Problem:
    """What every iteration of one `refine` call uses; tensors on the refinement's device."""

    survey: Survey
    config: RefineConfig
    param: Parameterisation
    precond: Preconditioner
    start: torch.Tensor  # (B, nz, nx) m/s
    observed: torch.Tensor  # (B, S, T', R) raw gathers at config.time_decimation
    truth: torch.Tensor | None = None  # (B, nz, nx) m/s
    truth_mask: torch.Tensor | None = None  # (B, nz, nx) in {0, 1}
    normalizer: Normalizer | None = None

    def filtered(self, gathers: torch.Tensor, cutoff: float | None) -> torch.Tensor:
        """The stage's view of (B, S, T', R) gathers at the data's rate: low-passed below ``cutoff``, time-gained."""
        c = self.config
        return time_gain(lowpass(gathers, cutoff, self.survey.dt * c.time_decimation, c.filter_order), c.time_gain)

    def modelled(self, velocity: torch.Tensor, shots: torch.Tensor | None, cutoff: float | None) -> torch.Tensor:
        """Gathers (B, S', T', R) of (B, nz, nx) velocities, decimated and filtered like the observed ones."""
        c = self.config
        data = forward_model(velocity, self.survey, shots=shots, check=False, storage_mode=c.storage_mode,
                             storage_compression=c.storage_compression,
                             gradient_sampling_interval=c.gradient_sampling or self.survey.lossless_gradient_sampling(),
                             checkpoint_segments=c.checkpoint_segments)
        return self.filtered(decimate_time(data, c.time_decimation), cutoff)

    def scores(self, velocity: torch.Tensor, logits: torch.Tensor | None) -> dict[str, np.ndarray] | None:
        """`score` against the truth (None without one)."""
        return None if self.truth is None else score(velocity, self.truth, self.truth_mask, self.normalizer, logits)

    def misfit(self, velocity: torch.Tensor) -> np.ndarray:
        """(B,) relative full-band data misfit (`fwi.metrics.data_misfit`)."""
        return data_misfit(velocity, self.observed, self.survey, self.config.time_decimation).cpu().numpy()


def setup(run: Any, observed_raw: Any, start_velocity: Any, salt_prob: Any, config: RefineConfig, *, truth: Any,
          truth_mask: Any, normalizer: Normalizer | None, device: str | torch.device | None) -> Problem:
    """Check the inputs and build the `Problem`: parameterisation, preconditioner, tensors on ``device``."""
    survey: Survey = run if isinstance(run, Survey) else run.survey
    net_run = None if isinstance(run, Survey) else run
    if normalizer is None and net_run is not None:
        normalizer = net_run.normalizer
    device = torch.device(device) if device is not None else start_velocity.device

    def tensor(x: Any) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(x, dtype=torch.float32).to(device)

    observed, start, prob = tensor(observed_raw), tensor(start_velocity), tensor(salt_prob)
    check_inputs(survey, observed, start, prob, config)
    vmax = config.upper(survey)
    net_inputs = None
    if config.param == "network" and net_run is not None:
        net_inputs = network_inputs(net_run, observed, config.time_decimation).to(device)
        net_run.model.to(device)
    param = build_param(config, start, prob, vmax, net_run, net_inputs)
    illumination = source_illumination(start.clamp(config.vmin, vmax), survey) if config.illumination else None
    precond = Preconditioner(config.smooth_sigma, config.depth_power, config.mute_cells, illumination,
                             quantile=config.grad_quantile)
    return Problem(survey, config, param, precond, start, observed, tensor(truth), tensor(truth_mask), normalizer)


def iteration(problem: Problem, optimizer: torch.optim.Optimizer, observed: torch.Tensor, cutoff: float | None,
              generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """One optimiser step against the stage's ``observed`` (B, S, T', R) (random shots per model when
    ``shots_per_iter`` asks): the (B,) misfit at the iterate before the step and the number of forward + backward
    evaluations it took (L-BFGS's line search may take several)."""
    config, param, precond = problem.config, problem.param, problem.precond
    batch, n_sources = observed.shape[:2]
    shots = None
    if config.shots_per_iter not in (0, n_sources):
        shots = torch.rand(batch, n_sources, generator=generator).argsort(1)[:, :config.shots_per_iter]
        observed = observed[torch.arange(batch)[:, None], shots.to(observed.device)]
    misfits: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        v = param.velocity()
        if precond.active and v.requires_grad:
            v.register_hook(precond)
        per_model = get_misfit(config.misfit)(problem.modelled(v, shots, cutoff), observed)
        loss = per_model.sum()
        if config.tv_weight > 0:
            loss = loss + config.tv_weight * total_variation(v / 1000.0).sum()
        loss.backward()
        misfits.append(per_model.detach())
        return loss

    optimizer.step(closure)
    param.project()
    return misfits[0], len(misfits)


def settle_stage(problem: Problem, state: RefineState, observed: torch.Tensor, cutoff: float | None) -> list[int]:
    """``keep_best`` at the stage's end: measure the last iterate's stage misfit (one forward, no gradient), leave
    each model at its best iterate of the stage (`fwi.invert.best`); the steps of the iterate each model keeps."""
    with torch.no_grad():
        now = get_misfit(problem.config.misfit)(problem.modelled(problem.param.velocity(), None, cutoff), observed)
    kept = best.settle(state.best, problem.param, now, state.done)
    state.best = None
    return kept.tolist()


def run_stage(problem: Problem, state: RefineState, stage: int, cutoff: float | None, first: int, stop: int,
              generator: torch.Generator, after_step: Callable[[torch.optim.Optimizer], None], end: int) -> None:
    """Iterations ``state.done`` .. ``stop`` of the stage that runs from iteration ``first`` to ``end``: a fresh
    optimiser (its saved state restored when resuming inside the stage), the observed data low-passed once, one
    `iteration` and one history record each, then ``after_step(optimizer)`` (progress, resumable state). With
    ``keep_best`` the stage's best iterate is tracked and restored at ``end`` (`settle_stage`; the record's
    ``kept_iteration``)."""
    config = problem.config
    lr = config.network_lr if config.param == "network" else config.lr
    optimizer = make_optimizer(config.optimizer, problem.param.groups(lr), config.lr, config.lbfgs_history)
    if state.optimizer is not None and state.done > first:  # resuming inside this stage
        optimizer.load_state_dict(state.optimizer)
    else:
        state.best = None
    observed = problem.filtered(problem.observed, cutoff)
    while state.done < stop:
        t0 = time.perf_counter()
        snapshot = problem.param.snapshot() if config.keep_best else None
        misfit, evaluations = iteration(problem, optimizer, observed, cutoff, generator)
        state.done, state.n_evals = state.done + 1, state.n_evals + evaluations
        entry: dict[str, Any] = {"iteration": state.done, "stage": stage, "cutoff": cutoff,
                                 "misfit": misfit.cpu().tolist(), "n_evals": state.n_evals}
        if snapshot is not None:
            state.best = best.track(state.best, problem.param, snapshot, misfit, state.done - 1)
            if state.done == end:
                entry["kept_iteration"] = settle_stage(problem, state, observed, cutoff)
        state.elapsed += time.perf_counter() - t0
        entry["seconds"] = state.elapsed
        with torch.no_grad():
            scores = problem.scores(problem.param.velocity().detach(), salt_logits(problem.param))
        entry.update({k: scores[k].tolist() for k in ("mae_ms", "ssim", "iou")} if scores else {})
        state.history.append(entry)
        after_step(optimizer)


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
    problem = setup(run, observed_raw, start_velocity, salt_prob, config, truth=truth, truth_mask=truth_mask,
                    normalizer=normalizer, device=device)
    batch, key = len(problem.start), config.key()
    generator = torch.Generator().manual_seed(config.seed)
    state = RefineState.load(state_path, key, batch) or RefineState()
    if state.param is not None:  # continue where the saved run stopped
        problem.param.load_state_dict(state.param)
        generator.set_state(state.rng)
    misfit_before, metrics_before = problem.misfit(problem.start), problem.scores(problem.start, start_salt_logits)
    total = sum(k for _, k in config.stages())
    budget = total if stop_after is None else min(total, state.done + int(stop_after))
    bar = tqdm(total=total, initial=state.done, desc=desc, disable=None if progress is None else not progress,
               dynamic_ncols=True, leave=False)

    def after_step(optimizer: torch.optim.Optimizer) -> None:
        entry = state.history[-1]
        bar.set_postfix({"misfit": f"{np.mean(entry['misfit']):.3g}",
                         **({"mae": f"{np.mean(entry['mae_ms']):.0f}"} if "mae_ms" in entry else {})}, refresh=False)
        bar.update(1)
        if state_path is not None and (state.done % config.save_every == 0 or state.done == total):
            state.param, state.optimizer = problem.param.state_dict(), optimizer.state_dict()
            state.rng = generator.get_state()
            state.save(Path(state_path), key, batch, config.to_dict())

    first = 0
    for stage, (cutoff, n_iter) in enumerate(config.stages()):
        last = first + n_iter
        if state.done < last:
            if state.done >= budget:
                break
            run_stage(problem, state, stage, cutoff, first, min(last, budget), generator, after_step, last)
        first = last
    bar.close()
    with torch.no_grad():
        v_final, prob_after = problem.param.velocity().detach(), problem.param.salt_probability()
    metrics_after = problem.scores(v_final, salt_logits(problem.param))
    return RefineResult(velocity=v_final.cpu().numpy(), start=problem.start.cpu().numpy(), history=state.history,
                        misfit_before=misfit_before, misfit_after=problem.misfit(v_final), seconds=state.elapsed,
                        n_evals=state.n_evals, iterations=state.done, complete=state.done >= total,
                        config=config.to_dict(), salt_prob=None if prob_after is None else prob_after.cpu().numpy(),
                        metrics_before=metrics_before, metrics_after=metrics_after)
