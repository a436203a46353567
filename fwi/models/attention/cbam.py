"""Convolutional Block Attention Module.

S. Woo, J. Park, J.-Y. Lee, I. S. Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018.
"""

from __future__ import annotations

import torch
from einops import reduce
from torch import nn

from fwi.models.attention.registry import register_attn
from fwi.models.attention.se import ChannelAttn
from fwi.models.legacy_keys import rename_on_load


@register_attn("cbam")
class CBAM(nn.Module):
    """Channel attention then spatial attention, applied in sequence (paper eq. 1-3).

    Channel: ``Mc = sigmoid(MLP(avgpool x) + MLP(maxpool x))`` with one shared MLP (C -> C/r -> C, ReLU): a
    `ChannelAttn` with both poolings held as ``channel`` (as timm composes its CBAM; checkpoints that stored its
    layers as ``fc1`` / ``fc2`` load, renamed at load).
    Spatial: ``Ms = sigmoid(conv7x7([mean_c x'; max_c x']))`` (2 -> 1 channels, padding 3, with bias; the
    authors' code adds a BatchNorm after this conv, the paper's equation does not, so neither do we).

    Args:
        channels: C.
        reduction: MLP ratio r (paper: 16).
        min_hidden: floor on the MLP width.
        kernel_size: spatial conv size (paper: 7), odd.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, kernel_size: int = 7) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__()
        self.channel = ChannelAttn(channels, reduction, min_hidden, pools=("avg", "max"))
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        rename_on_load(self, {"fc1.": "channel.fc1.", "fc2.": "channel.fc2."})

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> Ms (B, 1, H, W)."""
        desc = torch.cat([reduce(x, "b c h w -> b 1 h w", "mean"), reduce(x, "b c h w -> b 1 h w", "max")], dim=1)
        return torch.sigmoid(self.spatial(desc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel(x)
        return x * self.spatial_map(x)
