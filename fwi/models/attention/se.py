"""Squeeze-and-Excitation block.

J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention._utils import hidden_channels
from fwi.models.attention.registry import register_attn


@register_attn("se")
class SqueezeExcite(nn.Module):
    """Channel gating ``x * sigmoid(W2 relu(W1 GAP(x) + b1) + b2)``.

    Args:
        channels: C.
        reduction: ratio r of the bottleneck (paper: 16).
        min_hidden: floor on the bottleneck width ``max(C // r, min_hidden)``.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = hidden_channels(channels, reduction, min_hidden)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = reduce(x, "b c h w -> b c", "mean")  # squeeze: (B, C)
        a = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))  # excitation: (B, C)
        return x * rearrange(a, "b c -> b c 1 1")
