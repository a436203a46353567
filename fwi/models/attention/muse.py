"""MUSE: parallel multi-scale attention (self-attention + depthwise convolutions), here on 2D maps.

G. Zhao, X. Sun, J. Xu, Z. Zhang, L. Luo, "MUSE: Parallel Multi-Scale Attention for Sequence to Sequence
Learning", arXiv:1911.09483, 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from fwi.models.attention.common import hidden_channels, multi_head_attention, resolve_heads
from fwi.models.attention.registry import register_attn


@register_attn("muse")
class MUSE(nn.Module):
    """``y = x + W_o(MHSA(q, k, v) + sum_i softmax(alpha)_i DWConv_{k_i}(v))``.

    As in the paper, the convolutional branch shares the value projection with self-attention and mixes
    depthwise convolutions of widths 1, 3, 5 (here k x k in 2D) with softmax-normalised learned weights
    alpha (dynamic kernel selection, alpha starts uniform); the two branches are summed before the shared
    output projection (initialised small). Tokens are LayerNorm-ed pixels; widths ``max(C // reduction,
    min_hidden)``.

    Args:
        channels: C.
        heads: attention heads; None adapts to about inner // head_dim (a divisor of the inner width).
        head_dim: target head width when ``heads`` is None.
        reduction: C / inner ratio (default 1).
        min_hidden: floor on the inner width.
        kernels: depthwise kernel sizes (paper: 1, 3, 5), odd.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        heads: int | None = None,
        head_dim: int = 32,
        reduction: int = 1,
        min_hidden: int = 8,
        kernels: Sequence[int] = (1, 3, 5),
    ) -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"kernel sizes must be odd, got {tuple(kernels)}")
        inner = hidden_channels(channels, reduction, min_hidden)
        self.heads = resolve_heads(inner, heads, head_dim)
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * inner)
        self.convs = nn.ModuleList(nn.Conv2d(inner, inner, k, padding=k // 2, groups=inner) for k in kernels)
        self.alpha = nn.Parameter(torch.zeros(len(kernels)))
        self.proj = nn.Linear(inner, channels)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2]
        q, k, v = self.qkv(self.norm(rearrange(x, "b c h w -> b (h w) c"))).chunk(3, dim=-1)  # (B, N, d)
        attn = multi_head_attention(q, k, v, self.heads)
        v_map = rearrange(v, "b (h w) d -> b d h w", h=h)
        weights = torch.softmax(self.alpha, dim=0)
        conv = sum(wi * conv(v_map) for wi, conv in zip(weights, self.convs))
        out = attn + rearrange(conv, "b d h w -> b (h w) d")
        return x + rearrange(self.proj(out), "b (h w) c -> b c h w", h=h)
