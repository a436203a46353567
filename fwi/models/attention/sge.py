"""Spatial Group-wise Enhance.

X. Li, X. Hu, J. Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional
Networks", arXiv:1905.09646, 2019.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.common import largest_divisor_at_most
from fwi.models.attention.registry import register_attn


@register_attn("sge")
class SpatialGroupEnhance(nn.Module):
    """Per group: similarity of each position to the group's mean vector, normalised over space, gated.

    For each of G channel groups: ``g = GAP(x_g)``; ``c_i = <g, x_{g,i}>`` at every position i;
    ``c_hat = (c - mean(c)) / sqrt(var(c) + eps)`` over the H*W positions (population variance; eps inside the
    root keeps 1x1 maps finite, paper: ``/(std + eps)``); ``a = sigmoid(gamma_g * c_hat + beta_g)``;
    output ``x_g * a``. gamma starts at 0 and beta at 1 (as in the authors' code).

    Args:
        channels: C.
        groups: G (paper: 64 for ResNets; 8 here), lowered to the largest divisor of C not above it.
        eps: normaliser epsilon.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, groups: int = 8, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups = largest_divisor_at_most(channels, groups)
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(1, self.groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, self.groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xg = rearrange(x, "b (g c) h w -> b g c h w", g=self.groups)
        g = reduce(xg, "b g c h w -> b g c 1 1", "mean")
        c = (xg * g).sum(dim=2)  # (B, G, H, W)
        mean = c.mean(dim=(-2, -1), keepdim=True)
        var = c.var(dim=(-2, -1), keepdim=True, correction=0)
        c_hat = (c - mean) * torch.rsqrt(var + self.eps)
        a = torch.sigmoid(self.weight * c_hat + self.bias)  # (B, G, H, W)
        return rearrange(xg * rearrange(a, "b g h w -> b g 1 h w"), "b g c h w -> b (g c) h w")
