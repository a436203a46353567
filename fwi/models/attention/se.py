"""Squeeze-and-Excitation, and `ChannelAttn`, the channel attention every channel branch is built from.

J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018.

`ChannelAttn` pools, applies the excitation MLP ``fc2(relu(fc1(s)))`` (C -> C/r -> C) and gates,
``x * sigmoid(sum_pool MLP(pool x))``. SE is `ChannelAttn` with average pooling. As timm's CBAM holds a
``ChannelAttn``, the blocks with a channel branch *hold* one as their ``channel`` child: CBAM (Woo et al., 2018),
BAM (Park et al., 2018) and scSE (Roy et al., 2018); PSA (Zhang et al., 2021) uses its MLP as per-scale SE weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.common import hidden_channels
from fwi.models.attention.registry import register_attn


class ChannelAttn(nn.Module):
    """Channel attention ``x * sigmoid(sum_p MLP(pool_p x))`` with one shared MLP over the pools ``pools``.

    ``pools=("avg",)`` is SE; ``("avg", "max")`` is CBAM's channel attention (Woo et al., 2018, eq. 2).

    Args:
        channels: C.
        reduction: ratio r of the bottleneck (SE paper: 16).
        min_hidden: floor on the bottleneck width ``max(C // r, min_hidden)``.
        pools: global poolings whose MLP outputs are summed ("avg", "max").

    Shapes: (B, C, H, W) -> (B, C, H, W); `channel_logits`: (B, C); `channel_map`: (B, C, 1, 1).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, pools: tuple[str, ...] = ("avg",)
                 ) -> None:
        super().__init__()
        if not pools or any(p not in ("mean", "avg", "max") for p in pools):
            raise ValueError(f"pools must be a non-empty tuple of 'avg' / 'max', got {pools!r}")
        self.pools = tuple("mean" if p == "avg" else p for p in pools)
        hidden = hidden_channels(channels, reduction, min_hidden)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def mlp(self, s: torch.Tensor) -> torch.Tensor:
        """The excitation MLP ``fc2(relu(fc1(s)))``: (..., C) -> (..., C)."""
        return self.fc2(F.relu(self.fc1(s)))

    def channel_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> ``sum_p MLP(pool_p x)`` (B, C), before the sigmoid."""
        out = None
        for pool in self.pools:
            y = self.mlp(reduce(x, "b c h w -> b c", pool))
            out = y if out is None else out + y
        return out

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> channel weights in (0, 1), (B, C, 1, 1)."""
        return rearrange(torch.sigmoid(self.channel_logits(x)), "b c -> b c 1 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_map(x)


@register_attn("se")
def squeeze_excite(channels: int, reduction: int = 16, min_hidden: int = 8) -> ChannelAttn:
    """SE: channel gating ``x * sigmoid(W2 relu(W1 GAP(x) + b1) + b2)``, a `ChannelAttn` with average pooling.

    Args:
        channels: C.
        reduction: ratio r of the bottleneck (paper: 16).
        min_hidden: floor on the bottleneck width ``max(C // r, min_hidden)``.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """
    return ChannelAttn(channels, reduction, min_hidden, pools=("avg",))
