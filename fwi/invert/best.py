"""Keep each model's best iterate of a frequency stage (``RefineConfig.keep_best``).

A stage may end with a higher data misfit than it started with: an optimiser whose step does not shrink with the
gradient (Adam; the network prior above all) keeps walking along directions the data barely constrain once the fit
is good, and the model error climbs at a flat misfit (experiments/fwi_refine_field/README.md, model 29). The guard
uses the data alone: every iteration already measures the stage's misfit (B,) of the iterate it starts from; the
stage's best iterate per model is kept (a copy of its variables), the stage's last iterate is measured once more
(one forward, no gradient), and each model leaves the stage at whichever of the two fits its stage data better.
So no stage ends above the misfit it started at. The record is a plain dict (resumable with ``weights_only``):
``misfit`` (B,), ``iteration`` (B,) the number of steps taken to reach the kept iterate, ``param`` the variables.
"""

from __future__ import annotations

import torch

from fwi.invert.params import Parameterisation

Best = dict  # {"misfit": (B,) float, "iteration": (B,) long, "param": Parameterisation.snapshot()}


def to_cpu(best: Best | None) -> Best | None:
    """The record with its variables on the CPU, to be saved (they are kept where they live while running)."""
    if best is None:
        return None
    return {**best, "param": {k: v.cpu() for k, v in best["param"].items()}}


def track(best: Best | None, param: Parameterisation, snapshot: dict[str, torch.Tensor], misfit: torch.Tensor,
          steps: int) -> Best:
    """The stage's best after an iterate (``snapshot``, reached after ``steps`` steps) measured ``misfit`` (B,)."""
    misfit = misfit.detach().cpu().double()
    if best is None:
        return {"misfit": misfit, "iteration": torch.full(misfit.shape, steps, dtype=torch.long), "param": snapshot}
    better = misfit < best["misfit"]
    if not bool(better.any()):
        return best
    return {"misfit": torch.where(better, misfit, best["misfit"]),
            "iteration": torch.where(better, torch.tensor(steps), best["iteration"]),
            "param": param.merge(best["param"], snapshot, better)}


def settle(best: Best, param: Parameterisation, misfit_now: torch.Tensor, steps: int) -> torch.Tensor:
    """End the stage: restore the best iterate of each model whose stage misfit it beats the last iterate's
    (``misfit_now`` (B,), reached after ``steps`` steps); returns (B,) the steps of the iterate each model keeps."""
    worse = best["misfit"] < misfit_now.detach().cpu().double()
    if bool(worse.any()):
        param.load_state_dict(param.merge(param.snapshot(), best["param"], worse))
    return torch.where(worse, best["iteration"], torch.tensor(steps))
