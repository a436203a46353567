"""Optimisers for FWI, by name: ``adam`` (Kingma & Ba, 2015), ``lbfgs`` (L-BFGS with a strong-Wolfe line search,
Nocedal & Wright, 2006, alg. 7.5 / 3.5, as torch.optim.LBFGS implements it) and ``sgd`` (gradient descent with
momentum 0.9 on the normalised gradient, the scheme of deepwave's FWI examples).

One call of ``step(closure)`` is one FWI iteration. Adam costs exactly one forward + backward per iteration and works
with random shot subsets; L-BFGS evaluates the closure once per line-search trial (typically 1-3), needs the same
objective at each trial (all shots) and couples the models of a batch through one shared step length.
The default (`RefineConfig.optimizer`: SGD on the gradient normalised by its 98th percentile) is justified by the
measurement in experiments/fwi_refine/README.md (equal-cost comparison).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from fwi.registry import Registry

OPTIMIZERS: Registry[Callable[[list[dict[str, Any]], float, int], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam", lambda groups, lr, history: torch.optim.Adam(groups, lr=lr))
# lr = 1 is L-BFGS's natural unit step; the group lrs scale it per parameter group.
OPTIMIZERS.register("lbfgs", lambda groups, lr, history: torch.optim.LBFGS(
    [{**g, "lr": g["lr"] / lr} for g in groups] if len(groups) > 1 else [{**groups[0], "lr": 1.0}],
    lr=1.0, max_iter=1, history_size=history, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
    tolerance_change=1e-14))
# Gradient descent with heavy-ball momentum: the step keeps the gradient's spatial shape (Adam rescales every cell
# to a step of ~lr, so that a cell the data hardly constrain moves as far as a well-illuminated one); use it with
# the preconditioner's gradient normalisation (RefineConfig.grad_quantile), which makes lr the largest step in km/s.
OPTIMIZERS.register("sgd", lambda groups, lr, history: torch.optim.SGD(groups, lr=lr, momentum=0.9))
#: Optimisers whose objective must be deterministic between closure calls (no random shot subsets).
NEEDS_FULL_OBJECTIVE = {"lbfgs"}


def make_optimizer(name: str, groups: list[dict[str, Any]], lr: float, history: int = 10) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(groups, lr, history)


def total_variation(v_kms: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(B,) isotropic total variation mean_cells sqrt(dz^2 + dx^2 + eps^2) of (B, nz, nx) fields (Rudin et al.,
    1992); favours blocky models such as salt bodies in sediments."""
    dz = v_kms[:, 1:, :-1] - v_kms[:, :-1, :-1]
    dx = v_kms[:, :-1, 1:] - v_kms[:, :-1, :-1]
    return (dz.pow(2) + dx.pow(2) + eps * eps).sqrt().flatten(1).mean(1)
