"""Attention Free Transformer (AFT-full) over the pixels of a feature map.

S. Zhai, W. Talbott, N. Srivastava, C. Huang, H. Goh, R. Zhang, J. Susskind, "An Attention Free
Transformer", arXiv:2105.14103, 2021.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from fwi.models.attention.common import hidden_channels
from fwi.models.attention.registry import register_attn


@register_attn("aft")
class AFTFull(nn.Module):
    """``Y_t = sigmoid(Q_t) * sum_s exp(K_s + w_ts) V_s / sum_s exp(K_s + w_ts)`` (paper eq. 2); residual.

    T = H*W tokens (LayerNorm over channels, linear Q, K, V of width ``max(C // reduction, min_hidden)``,
    linear output projection initialised small). The pairwise bias ``w_ts`` is not a fixed (T, T) parameter:
    it is read from a learned table over relative offsets, ``w_ts = table[clamp(dy), clamp(dx)]`` with
    ``dy = y_t - y_s`` and ``dx = x_t - x_s`` clamped to [-max_offset, max_offset], so one block serves any map
    size (offsets beyond the table share its edge values). The table starts at 0 (plain softmax-over-keys
    pooling). Both exponentials are shifted by their maxima (which cancel in the ratio) for stability.
    Cost is O(T^2 d): meant for coarse maps.

    Args:
        channels: C.
        reduction: C / d ratio (paper: d = model width, so 1).
        min_hidden: floor on d.
        max_offset: largest relative offset with its own bias (default 8).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 1, min_hidden: int = 8, max_offset: int = 8) -> None:
        super().__init__()
        if max_offset < 0:
            raise ValueError(f"max_offset must be >= 0, got {max_offset}")
        inner = hidden_channels(channels, reduction, min_hidden)
        self.max_offset = max_offset
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * inner)
        self.pos_bias = nn.Parameter(torch.zeros(2 * max_offset + 1, 2 * max_offset + 1))
        self.proj = nn.Linear(inner, channels)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def position_bias(self, h: int, w: int) -> torch.Tensor:
        """Pairwise bias w (T, T) for an h x w map, T = h*w, tokens in row-major (h w) order."""
        dev = self.pos_bias.device
        ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        r = self.max_offset
        dy = (ys[:, None] - ys[None, :]).clamp(-r, r) + r
        dx = (xs[:, None] - xs[None, :]).clamp(-r, r) + r
        return self.pos_bias[dy, dx]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = self.qkv(self.norm(rearrange(x, "b c h w -> b (h w) c"))).chunk(3, dim=-1)  # (B, T, d)
        bias = self.position_bias(h, w)
        exp_w = torch.exp(bias - bias.amax(dim=-1, keepdim=True))  # (T, T)
        exp_k = torch.exp(k - k.amax(dim=1, keepdim=True))  # (B, T, d)
        num = exp_w @ (exp_k * v)
        den = (exp_w @ exp_k).clamp_min(torch.finfo(x.dtype).tiny)
        y = torch.sigmoid(q) * num / den
        return x + rearrange(self.proj(y), "b (h w) c -> b c h w", h=h)
