"""Concurrent spatial and channel squeeze & excitation (scSE).

A. G. Roy, N. Navab, C. Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully
Convolutional Networks", MICCAI 2018; extended in "Recalibrating Fully Convolutional Networks With Spatial
and Channel 'Squeeze and Excitation' Blocks", IEEE Transactions on Medical Imaging 38(2), 2019.
"""

from __future__ import annotations

import torch
from torch import nn

from fwi.models.attention.registry import register_attn
from fwi.models.attention.se import ChannelAttn
from fwi.models.legacy_keys import rename_on_load


@register_attn("scse")
class SCSE(nn.Module):
    """``x * cSE(x) + x * sSE(x)``: the MICCAI paper's element-wise addition of the two recalibrations.

    cSE: ``sigmoid(W2 relu(W1 GAP(x)))`` per channel, (B, C, 1, 1): a `ChannelAttn` held as ``channel``
    (checkpoints that stored its layers as ``fc1`` / ``fc2`` load, renamed at load); the paper's W1 halves the
    channels, so the default reduction is 2.
    sSE: ``sigmoid(conv1x1(x))`` per pixel, (B, 1, H, W).
    ``mode="max"`` gives the TMI paper's max-out aggregation ``max(x * cSE, x * sSE)`` instead.

    Args:
        channels: C.
        reduction: cSE ratio (paper: 2).
        min_hidden: floor on the cSE width.
        mode: "add" (default) or "max".

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 2, min_hidden: int = 8, mode: str = "add") -> None:
        if mode not in ("add", "max"):
            raise ValueError(f"mode must be 'add' or 'max', got {mode!r}")
        super().__init__()
        self.mode = mode
        self.channel = ChannelAttn(channels, reduction, min_hidden, pools=("avg",))
        self.spatial = nn.Conv2d(channels, 1, 1)
        rename_on_load(self, {"fc1.": "channel.fc1.", "fc2.": "channel.fc2."})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_c = self.channel(x)
        x_s = x * torch.sigmoid(self.spatial(x))
        return x_c + x_s if self.mode == "add" else torch.maximum(x_c, x_s)
