"""Coordinate Attention.

Q. Hou, D. Zhou, J. Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.registry import register_attn


@register_attn("ca")
class CoordAttention(nn.Module):
    """Direction-aware gating ``y = x * a_h * a_w`` (paper eq. 4-9).

    Average-pool along W -> (B, C, H, 1) and along H -> (B, C, 1, W); both laid along one axis and
    concatenated to (B, C, H + W, 1); shared 1x1 conv to ``mip = max(min_hidden, C // reduction)`` channels,
    BatchNorm, h-swish; split back into H and W parts; 1x1 convs to C channels and sigmoids give
    a_h (B, C, H, 1) and a_w (B, C, 1, W).

    Args:
        channels: C.
        reduction: ratio r (paper: 32).
        min_hidden: floor on mip (paper: 8).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 32, min_hidden: int = 8) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        mip = max(min_hidden, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x_h = reduce(x, "b c h w -> b c h 1", "mean")  # (B, C, H, 1)
        x_w = reduce(x, "b c h w -> b c w 1", "mean")  # (B, C, W, 1)
        f = self.act(self.bn(self.conv1(torch.cat([x_h, x_w], dim=2))))  # (B, mip, H + W, 1)
        f_h, f_w = torch.split(f, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(f_h))  # (B, C, H, 1)
        a_w = torch.sigmoid(self.conv_w(rearrange(f_w, "b c w 1 -> b c 1 w")))  # (B, C, 1, W)
        return x * a_h * a_w
