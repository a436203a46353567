"""Pyramid Split Attention (EPSANet).

H. Zhang, K. Zu, J. Lu, Y. Zou, D. Meng, "EPSANet: An Efficient Pyramid Squeeze Attention Block on
Convolutional Neural Network", arXiv:2105.14447, 2021 (ACCV 2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.common import largest_divisor_at_most
from fwi.models.attention.registry import register_attn
from fwi.models.attention.se import ChannelAttn
from fwi.models.legacy_keys import rename_on_load


@register_attn("psa")
class PyramidSplitAttention(nn.Module):
    """Multi-scale split, per-scale SE weights, softmax across scales (paper eq. 1-8).

    SPC: S = len(kernels) convs of C -> C/S channels with kernels 3, 5, 7, 9 and group counts 1, 4, 8, 16
    (each lowered to the largest divisor of C/S not above it, so C=8 works: groups 1, 2, 2, 2).
    A shared SE weight module (GAP -> FC -> ReLU -> FC -> sigmoid, as in the authors' code; the MLP of a
    `ChannelAttn` held as ``se``, whose layers checkpoints stored as ``se_fc1`` / ``se_fc2``) gives Z_i (B, C/S)
    per scale; ``att = softmax(Z_i over the S scales)``; output ``concat_i(F_i * att_i)``. Not residual: like the
    paper, the block replaces a 3x3 conv. C must be divisible by S (ValueError otherwise).

    Args:
        channels: C.
        kernels: kernel size per scale (paper: 3, 5, 7, 9).
        conv_groups: requested group count per scale (paper: 1, 4, 8, 16).
        reduction: SE ratio (paper: 16).
        min_hidden: floor on the SE width.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        kernels: Sequence[int] = (3, 5, 7, 9),
        conv_groups: Sequence[int] = (1, 4, 8, 16),
        reduction: int = 16,
        min_hidden: int = 8,
    ) -> None:
        super().__init__()
        n = len(kernels)
        if len(conv_groups) != n:
            raise ValueError("kernels and conv_groups must have the same length")
        if channels % n:
            raise ValueError(f"channels={channels} must be divisible by the number of scales {n}")
        split = channels // n
        self.groups = [largest_divisor_at_most(split, g) for g in conv_groups]
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, split, k, padding=k // 2, groups=g, bias=False) for k, g in zip(kernels, self.groups)
        )
        self.se = ChannelAttn(split, reduction, min_hidden)  # after the convs (the seeded initialisation order)
        rename_on_load(self, {"se_fc1.": "se.fc1.", "se_fc2.": "se.fc2."})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([conv(x) for conv in self.convs], dim=1)  # (B, S, C/S, H, W)
        z = torch.sigmoid(self.se.mlp(reduce(feats, "b s c h w -> b s c", "mean")))
        att = torch.softmax(z, dim=1)  # across the S scales
        return rearrange(feats * rearrange(att, "b s c -> b s c 1 1"), "b s c h w -> b (s c) h w")
