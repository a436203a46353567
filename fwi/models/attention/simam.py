"""SimAM, a parameter-free attention module.

L. Yang, R.-Y. Zhang, L. Li, X. Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021.
"""

from __future__ import annotations

import torch
from torch import nn

from fwi.models.attention.registry import register_attn


@register_attn("simam")
class SimAM(nn.Module):
    """``y = x * sigmoid(1 / e*)`` with the minimal energy of each neuron (paper eq. 5).

    ``1 / e*_t = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2``, mu and sigma^2 over the H*W positions of the
    channel, sigma^2 divided by ``H*W - 1`` as in the authors' code (floored at 1 so 1x1 maps give
    ``x * sigmoid(1/2)``). No parameters; ``channels`` is accepted for the registry signature only.

    Args:
        channels: C (unused).
        e_lambda: lambda (paper: 1e-4).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(x.shape[-2] * x.shape[-1] - 1, 1)
        d = (x - x.mean(dim=(-2, -1), keepdim=True)).pow(2)
        var = d.sum(dim=(-2, -1), keepdim=True) / n
        return x * torch.sigmoid(d / (4 * (var + self.e_lambda)) + 0.5)

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"
