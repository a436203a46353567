"""Selective Kernel convolution.

X. Li, W. Wang, X. Hu, J. Yang, "Selective Kernel Networks", CVPR 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.common import hidden_channels, largest_divisor_at_most
from fwi.models.attention.registry import register_attn


@register_attn("sk")
class SelectiveKernel(nn.Module):
    """Split / fuse / select over branches with different receptive fields (paper eq. 1-6).

    Split: one grouped 3x3 conv + BN + ReLU per dilation (dilation 2 stands in for the paper's 5x5);
    fuse: ``s = GAP(sum_m U_m)``, ``z = relu(BN(W s))`` with ``d = max(C // r, L)``; select: per-branch
    logits ``A_m z`` softmaxed across branches per channel, ``V = sum_m a_m * U_m``. Not residual: like the
    paper, the block replaces a 3x3 conv.

    The BatchNorm1d on z needs batch size >= 2 in training mode (eval mode works at batch 1).

    Args:
        channels: C.
        reduction: ratio r (paper: 16).
        min_hidden: L, the floor on d (paper: 32).
        groups: conv cardinality (paper: 32), lowered to the largest divisor of C not above it.
        dilations: one branch per entry (paper: two, "3x3" and "5x5").

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        min_hidden: int = 32,
        groups: int = 32,
        dilations: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        g = largest_divisor_at_most(channels, groups)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=d, dilation=d, groups=g, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for d in dilations
        )
        d = hidden_channels(channels, reduction, min_hidden)
        self.fc = nn.Linear(channels, d, bias=False)
        self.fc_bn = nn.BatchNorm1d(d)
        self.select = nn.ModuleList(nn.Linear(d, channels, bias=False) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)  # (B, M, C, H, W)
        s = reduce(feats.sum(dim=1), "b c h w -> b c", "mean")  # fuse: GAP of U = sum_m U_m
        z = F.relu(self.fc_bn(self.fc(s)))  # (B, d)
        a = torch.softmax(torch.stack([sel(z) for sel in self.select], dim=1), dim=1)  # (B, M, C)
        return (feats * rearrange(a, "b m c -> b m c 1 1")).sum(dim=1)
