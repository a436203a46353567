"""Efficient Channel Attention.

Q. Wang, B. Wu, P. Zhu, P. Li, W. Zuo, Q. Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.registry import register_attn


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """Adaptive kernel ``k = |log2(C) / gamma + b / gamma|_odd`` (paper eq. 12).

    ``t = int(|(log2 C + b) / gamma|)``, bumped to ``t + 1`` when even: the odd number nearest to the real
    value (odd integers stay, even integers go up). gamma=2, b=1: C=16 -> 3, 64 -> 3, 256 -> 5, 512 -> 5.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return max(t if t % 2 else t + 1, 1)


@register_attn("eca")
class ECA(nn.Module):
    """Channel gating by a bias-free 1D convolution of size k across the channels of the GAP vector.

    Args:
        channels: C.
        gamma, b: constants of the adaptive kernel size (paper: 2, 1).
        kernel_size: overrides the adaptive size (must be odd).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, gamma: float = 2.0, b: float = 1.0, kernel_size: int | None = None) -> None:
        super().__init__()
        k = eca_kernel_size(channels, gamma, b) if kernel_size is None else kernel_size
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA kernel size must be odd and positive, got {k}")
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = reduce(x, "b c h w -> b 1 c", "mean")  # channels as a 1D sequence: (B, 1, C)
        a = torch.sigmoid(self.conv(s))  # (B, 1, C)
        return x * rearrange(a, "b 1 c -> b c 1 1")
