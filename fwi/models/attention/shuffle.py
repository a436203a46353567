"""Shuffle Attention.

Q.-L. Zhang, Y.-B. Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", ICASSP 2021.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.common import largest_divisor_at_most
from fwi.models.attention.registry import register_attn


def shuffle_groups(channels: int, groups: int) -> int:
    """Largest ``g <= groups`` with ``channels % (2 g) == 0``; raises for odd ``channels`` (no valid split)."""
    if channels % 2:
        raise ValueError(f"shuffle attention needs an even channel count, got {channels}")
    return largest_divisor_at_most(channels // 2, groups)


@register_attn("shuffle")
class ShuffleAttention(nn.Module):
    """Group-wise channel + spatial gating followed by a channel shuffle (paper Fig. 2, eq. 1-4).

    Channels are split into G groups, each halved: the first half gets a channel gate
    ``sigmoid(w1 * GAP(x) + b1)``, the second a spatial gate ``sigmoid(w2 * GN(x) + b2)`` (GroupNorm with one
    channel per group); halves are concatenated, groups re-assembled and channels shuffled with 2 groups.
    w1, w2 start at 0 and b1, b2 at 1 (authors' code). When C is not divisible by 2 * groups, G is lowered
    to the largest count that divides (e.g. C=24, groups=8 -> G=6); odd C raises ValueError.

    Args:
        channels: C (even).
        groups: requested G (paper: 64 for ResNets; 8 here).
        eps: GroupNorm epsilon.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, groups: int = 8, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups = shuffle_groups(channels, groups)
        half = channels // (2 * self.groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        xg = rearrange(x, "b (g two c) h w -> (b g) two c h w", g=self.groups, two=2)
        x_c, x_s = xg[:, 0], xg[:, 1]  # (B*G, C/2G, H, W) each
        x_c = x_c * torch.sigmoid(self.cweight * reduce(x_c, "n c h w -> n c 1 1", "mean") + self.cbias)
        x_s = x_s * torch.sigmoid(self.sweight * self.gn(x_s) + self.sbias)
        out = rearrange(torch.stack([x_c, x_s], dim=1), "(b g) two c h w -> b (g two c) h w", b=b)
        return rearrange(out, "b (s c) h w -> b (c s) h w", s=2)  # channel shuffle, 2 groups
