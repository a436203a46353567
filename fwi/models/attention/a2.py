"""Double attention (A^2-Nets).

Y. Chen, Y. Kalantidis, J. Li, S. Yan, J. Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from fwi.models.attention.common import hidden_channels
from fwi.models.attention.registry import register_attn


@register_attn("a2")
class DoubleAttention(nn.Module):
    """Gather global descriptors, distribute them back to every position; residual (paper eq. 4-7).

    ``A = conv_a(x)`` (B, c_m, N), ``B = softmax_N(conv_b(x))`` (B, c_n, N) attention maps over positions,
    ``V = softmax_{c_n}(conv_v(x))`` (B, c_n, N) attention vectors over descriptors;
    gather ``G = A B^T`` (B, c_m, c_n); distribute ``Z = G V`` (B, c_m, N); ``y = x + conv_out(Z)``.
    c_m = c_n = ``max(C // reduction, min_hidden)``; reduction 4 is our choice (the paper varies c_m, c_n).

    Args:
        channels: C.
        reduction: C / c_m ratio (default 4).
        min_hidden: floor on c_m = c_n.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8) -> None:
        super().__init__()
        c = hidden_channels(channels, reduction, min_hidden)
        self.conv_a = nn.Conv2d(channels, c, 1)
        self.conv_b = nn.Conv2d(channels, c, 1)
        self.conv_v = nn.Conv2d(channels, c, 1)
        self.conv_out = nn.Conv2d(c, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2]
        a = rearrange(self.conv_a(x), "b m h w -> b m (h w)")
        maps = torch.softmax(rearrange(self.conv_b(x), "b n h w -> b n (h w)"), dim=-1)
        vecs = torch.softmax(rearrange(self.conv_v(x), "b n h w -> b n (h w)"), dim=1)
        g = a @ maps.transpose(1, 2)  # gather: (B, c_m, c_n)
        z = g @ vecs  # distribute: (B, c_m, N)
        return x + self.conv_out(rearrange(z, "b m (h w) -> b m h w", h=h))
