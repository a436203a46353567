"""Input adapter: shot gathers (B, S, T, R) -> image-like features (B, C, nz, nx) on the model grid.

Shots are treated as input channels. A few temporal convolutions (kernel along T only, stride 2 in T, receivers
untouched) compress the time axis until it is about ``nz`` samples long; the number of such layers is computed
from ``T`` and ``nz`` (``round(log2(T / nz))``, at least 0). A bilinear resize then maps the (T', R) map exactly
onto the (nz, nx) grid, so any survey (S, T, R) works with any grid.

Shapes, e.g. salt70 (S=5, T=1000, R=70, grid 70 x 70, C=32):
    (B, 5, 1000, 70) -> conv s2 -> (B, 32, 500, 70) -> ... 4 layers ... -> (B, 32, 63, 70) -> resize -> (B, 32, 70, 70)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fwi.models.layers import ConvNormAct

#: Length of the temporal kernels (odd; along T only).
KERNEL_T = 7


def n_temporal_layers(nt: int, nz: int) -> int:
    """Stride-2 temporal layers that bring ``nt`` samples closest to ``nz`` (in log scale), never negative."""
    if nt <= nz:
        return 0
    return max(0, round(math.log2(nt / nz)))


class GatherAdapter(nn.Module):
    """(B, S, T, R) gathers -> (B, ``out_channels``, nz, nx) features.

    Args:
        in_shots: S, number of shots (input channels).
        nt: T, time samples per trace.
        nrec: R, receivers per shot (only recorded for the docstring / repr; any R works at run time).
        grid: (nz, nx) output size.
        out_channels: C, feature width.
        norm, act: names from `fwi.models.layers.NORMS` / `ACTS`.

    Every temporal conv has a ``KERNEL_T`` x 1 kernel.
    """

    def __init__(self, in_shots: int, nt: int, nrec: int, grid: tuple[int, int], out_channels: int = 32,
                 norm: str = "batch", act: str = "relu"):
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.nt, self.nrec = nt, nrec
        n = n_temporal_layers(nt, self.grid[0])
        layers: list[nn.Module] = []
        cin = in_shots
        for _ in range(n):
            layers.append(ConvNormAct(cin, out_channels, (KERNEL_T, 1), stride=(2, 1), norm=norm, act=act))
            cin = out_channels
        # Without any temporal layer (T already short) a single stride-1 temporal conv still mixes the shots.
        if n == 0:
            layers.append(ConvNormAct(cin, out_channels, (KERNEL_T, 1), stride=1, norm=norm, act=act))
        self.temporal = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, gathers: torch.Tensor) -> torch.Tensor:
        if gathers.ndim != 4:
            raise ValueError(f"expected gathers (B, S, T, R), got shape {tuple(gathers.shape)}")
        x = self.temporal(gathers)
        if tuple(x.shape[-2:]) != self.grid:
            x = F.interpolate(x, size=self.grid, mode="bilinear", align_corners=False)
        return x
