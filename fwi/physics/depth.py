"""Depth weighting of velocity gradients: the surface data's gradient fades with depth (geometric spreading, weaker
illumination), so FWI codes scale it by a power of depth to let the deep model move at all."""

from __future__ import annotations

import torch


def depth_weights(nz: int, power: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(nz, 1) weights (z / z_max)^power with z = 1..nz cells: 1 at the bottom row, (1/nz)^power at the top."""
    z = (torch.arange(nz, dtype=dtype, device=device) + 1) / nz
    return z.pow(power)[:, None]


def scale_gradient(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged in the forward pass; the gradient flowing back through it is multiplied by ``weight``
    (broadcast to ``x``). Works with ``backward`` and ``torch.autograd.grad`` alike (no hook)."""
    weight = weight.to(x)
    return x.detach() + weight * (x - x.detach())
