"""Bottleneck Attention Module.

J. Park, S. Woo, J.-Y. Lee, I. S. Kweon, "BAM: Bottleneck Attention Module", BMVC 2018.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from fwi.models.attention.common import hidden_channels
from fwi.models.attention.registry import register_attn
from fwi.models.attention.se import ChannelAttn
from fwi.models.legacy_keys import rename_on_load


@register_attn("bam")
class BAM(nn.Module):
    """Parallel channel and spatial branches combined as ``x * (1 + sigmoid(Mc + Ms))`` (paper eq. 1-2).

    Channel branch: ``Mc = BN(MLP(GAP x))``, MLP C -> C/r -> C with ReLU (the logits of a `ChannelAttn` held as
    ``channel``, with BN in place of its sigmoid; checkpoints that stored its layers as ``channel_fc1`` /
    ``channel_fc2`` load, renamed at load); Mc has shape (B, C, 1, 1).
    Spatial branch: ``Ms = BN(conv1x1(conv3x3_d(conv3x3_d(conv1x1(x)))))``: 1x1 reduce to C/r, ``num_dilated``
    3x3 convs with dilation d (each followed by BN + ReLU, as is the reduce conv), 1x1 to one channel and a
    final BN; Ms has shape (B, 1, H, W). ``Mc + Ms`` broadcasts to (B, C, H, W).

    Note: the BatchNorm1d of the channel branch normalises one value per channel and sample, so training
    mode needs batch size >= 2 (as in the paper); eval mode works at batch 1.

    Args:
        channels: C.
        reduction: ratio r of both branches (paper: 16).
        min_hidden: floor on the hidden width ``max(C // r, min_hidden)``.
        dilation: dilation d of the 3x3 convs (paper: 4).
        num_dilated: number of dilated 3x3 convs (paper: 2).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self, channels: int, reduction: int = 16, min_hidden: int = 8, dilation: int = 4, num_dilated: int = 2
    ) -> None:
        super().__init__()
        self.channel = ChannelAttn(channels, reduction, min_hidden, pools=("avg",))  # channel branch MLP
        hidden = hidden_channels(channels, reduction, min_hidden)
        self.channel_bn = nn.BatchNorm1d(channels)
        # spatial branch: conv -> BN -> ReLU stages, then 1x1 to one channel and BN
        stages = [nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))]
        for _ in range(num_dilated):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                    nn.BatchNorm2d(hidden),
                    nn.ReLU(inplace=True),
                )
            )
        self.spatial_stages = nn.ModuleList(stages)
        self.spatial_out = nn.Conv2d(hidden, 1, 1)
        self.spatial_bn = nn.BatchNorm2d(1)
        rename_on_load(self, {"channel_fc1.": "channel.fc1.", "channel_fc2.": "channel.fc2."})

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> Mc (B, C, 1, 1)."""
        return rearrange(self.channel_bn(self.channel.channel_logits(x)), "b c -> b c 1 1")

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> Ms (B, 1, H, W)."""
        for stage in self.spatial_stages:
            x = stage(x)
        return self.spatial_bn(self.spatial_out(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + torch.sigmoid(self.channel_map(x) + self.spatial_map(x)))
