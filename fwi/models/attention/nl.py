"""Non-local block / multi-head self-attention over pixels, with optional spatial-reduction attention.

X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks", CVPR 2018.
A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
W. Wang et al., "Pyramid Vision Transformer: A Versatile Backbone for Dense Prediction without Convolutions",
ICCV 2021 (spatial reduction of keys/values); "PVT v2: Improved Baselines with Pyramid Vision Transformer",
Computational Visual Media 2022 (pooling-based reduction, depthwise-conv positions).
X. Chu et al., "Conditional Positional Encodings for Vision Transformers" (CPVT), ICLR 2023 (positional
encoding generator: a depthwise 3x3 conv, valid at any H, W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fwi.models.attention.common import hidden_channels, multi_head_attention, resolve_heads
from fwi.models.attention.registry import register_attn


@register_attn("nl")
class NonLocalAttention(nn.Module):
    """``y = x' + proj(MHSA(LN(x')))`` with ``x' = x + dwconv3x3(x)`` (conditional positional encoding).

    Queries come from every pixel; keys/values from every pixel, or, with ``sr_ratio > 1``, from the map
    average-pooled to ``ceil(H / sr) x ceil(W / sr)`` followed by a 1x1 conv and LayerNorm (works for maps
    smaller than sr). The inner width is ``max(C // reduction, min_hidden)`` (non-local paper: C / 2); the output
    projection is initialised small (std 0.02, zero bias) so the block starts close to identity.

    Args:
        channels: C.
        heads: number of heads; None adapts to about inner // head_dim, a divisor of the inner width.
        head_dim: target head width when ``heads`` is None.
        reduction: C / inner ratio (default 2).
        min_hidden: floor on the inner width.
        sr_ratio: spatial reduction of keys/values (PVT), 1 = none.
        pos_enc: add the depthwise-conv positional encoding.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        heads: int | None = None,
        head_dim: int = 32,
        reduction: int = 2,
        min_hidden: int = 8,
        sr_ratio: int = 1,
        pos_enc: bool = True,
    ) -> None:
        super().__init__()
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1, got {sr_ratio}")
        inner = hidden_channels(channels, reduction, min_hidden)
        self.heads = resolve_heads(inner, heads, head_dim)
        self.sr_ratio = sr_ratio
        self.pos = nn.Conv2d(channels, channels, 3, padding=1, groups=channels) if pos_enc else None
        self.norm = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, inner)
        self.kv = nn.Linear(channels, 2 * inner)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(channels, channels, 1)
            self.sr_norm = nn.LayerNorm(channels)
        self.proj = nn.Linear(inner, channels)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pos is not None:
            x = x + self.pos(x)
        tokens = self.norm(rearrange(x, "b c h w -> b (h w) c"))
        if self.sr_ratio > 1:
            pooled = F.adaptive_avg_pool2d(x, (math.ceil(h / self.sr_ratio), math.ceil(w / self.sr_ratio)))
            kv_src = self.sr_norm(rearrange(self.sr(pooled), "b c h w -> b (h w) c"))
        else:
            kv_src = tokens
        k, v = self.kv(kv_src).chunk(2, dim=-1)
        out = self.proj(multi_head_attention(self.q(tokens), k, v, self.heads))  # (B, N, C)
        return x + rearrange(out, "b (h w) c -> b c h w", h=h)
