"""Squeeze-and-Excitation, and the squeeze MLP every channel branch shares.

J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018.

`SqueezeMLP` holds the excitation MLP ``fc2(relu(fc1(s)))`` (C -> C/r -> C); `ChannelAttn` pools, applies it and
gates, ``x * sigmoid(sum_pool MLP(pool x))``. As in timm, where CBAM is built from one ``ChannelAttn``, the channel
branches of SE, CBAM, scSE and BAM are this `ChannelAttn` and PSA's per-scale SE weights are this `SqueezeMLP`.
The two linear layers are registered on the block itself under ``mlp_names`` (``fc1``/``fc2`` unless a block
renames them), so every block keeps the state-dict keys its checkpoints were written with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from fwi.models.attention.common import hidden_channels
from fwi.models.attention.registry import register_attn


class SqueezeMLP(nn.Module):
    """Owner of the squeeze MLP ``fc2(relu(fc1(s)))``: s (..., C) -> (..., C) through ``hidden`` units (with biases).

    Subclasses call `add_squeeze_mlp` where their constructor creates the layers (the creation order fixes the
    seeded initialisation) and `squeeze_mlp` in their forward.
    """

    mlp_names: tuple[str, str] = ("fc1", "fc2")

    def add_squeeze_mlp(self, channels: int, hidden: int) -> None:
        """Register ``Linear(channels, hidden)`` and ``Linear(hidden, channels)`` under ``mlp_names``."""
        first, second = self.mlp_names
        self.add_module(first, nn.Linear(channels, hidden))
        self.add_module(second, nn.Linear(hidden, channels))

    def squeeze_mlp(self, s: torch.Tensor) -> torch.Tensor:
        first, second = (getattr(self, n) for n in self.mlp_names)
        return second(F.relu(first(s)))


class ChannelAttn(SqueezeMLP):
    """Channel attention ``x * sigmoid(sum_p MLP(pool_p x))`` with one shared MLP over the pools ``pools``.

    ``pools=("avg",)`` is SE; ``("avg", "max")`` is CBAM's channel attention (Woo et al., 2018, eq. 2).

    Args:
        channels: C.
        reduction: ratio r of the bottleneck (SE paper: 16).
        min_hidden: floor on the bottleneck width ``max(C // r, min_hidden)``.
        pools: global poolings whose MLP outputs are summed ("avg", "max").

    Shapes: (B, C, H, W) -> (B, C, H, W); `channel_map`: (B, C, 1, 1).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, pools: tuple[str, ...] = ("avg",)
                 ) -> None:
        super().__init__()
        if not pools or any(p not in ("mean", "avg", "max") for p in pools):
            raise ValueError(f"pools must be a non-empty tuple of 'avg' / 'max', got {pools!r}")
        self.pools = tuple("mean" if p == "avg" else p for p in pools)
        self.add_squeeze_mlp(channels, hidden_channels(channels, reduction, min_hidden))

    def channel_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> ``sum_p MLP(pool_p x)`` (B, C), before the sigmoid."""
        out = None
        for pool in self.pools:
            y = self.squeeze_mlp(reduce(x, "b c h w -> b c", pool))
            out = y if out is None else out + y
        return out

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> channel weights in (0, 1), (B, C, 1, 1)."""
        return rearrange(torch.sigmoid(self.channel_logits(x)), "b c -> b c 1 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_map(x)


@register_attn("se")
class SqueezeExcite(ChannelAttn):
    """Channel gating ``x * sigmoid(W2 relu(W1 GAP(x) + b1) + b2)``.

    Args:
        channels: C.
        reduction: ratio r of the bottleneck (paper: 16).
        min_hidden: floor on the bottleneck width ``max(C // r, min_hidden)``.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__(channels, reduction, min_hidden, pools=("avg",))
