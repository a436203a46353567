"""Dual attention: position attention module (PAM) + channel attention module (CAM).

J. Fu, J. Liu, H. Tian, Y. Li, Y. Bao, Z. Fang, H. Lu, "Dual Attention Network for Scene Segmentation",
CVPR 2019.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from fwi.models.attention.registry import register_attn


@register_attn("da")
class DualAttention(nn.Module):
    """``y = x + gamma_p * PAM(x) + gamma_c * CAM(x)``, gammas initialised to 0 (the block starts as identity).

    The paper's two modules each return ``x + gamma * attended``; their sum would be ``2x + ...``, so the
    shared residual is counted once here.

    PAM (paper eq. 1-2): query/key 1x1 convs to ``max(C // qk_reduction, 1)`` channels, value 1x1 conv to C;
    ``s = softmax_over_keys(q_n . k_m)`` (B, N, N), ``out_n = sum_m s_nm v_m``; N = H*W, so memory grows as
    (H W)^2: meant for coarse maps.
    CAM (paper eq. 3-4): ``s = softmax_over_j(A_i . A_j)`` (B, C, C) on the raw features, ``out_i = sum_j s_ij A_j``.
    The paper's softmax is used as written; the authors' code feeds ``max(energy) - energy`` instead.

    Args:
        channels: C.
        qk_reduction: query/key channel ratio (paper: 8).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, qk_reduction: int = 8) -> None:
        super().__init__()
        qk = max(channels // qk_reduction, 1)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma_pos = nn.Parameter(torch.zeros(1))
        self.gamma_chan = nn.Parameter(torch.zeros(1))

    def position_attention(self, x: torch.Tensor) -> torch.Tensor:
        """PAM term before gamma: (B, C, H, W) -> (B, C, H, W)."""
        h = x.shape[-2]
        q = rearrange(self.query(x), "b c h w -> b (h w) c")
        k = rearrange(self.key(x), "b c h w -> b c (h w)")
        v = rearrange(self.value(x), "b c h w -> b (h w) c")
        attn = torch.softmax(q @ k, dim=-1)  # (B, N, N): row n = weights of position n over keys m
        return rearrange(attn @ v, "b (h w) c -> b c h w", h=h)

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """CAM term before gamma: (B, C, H, W) -> (B, C, H, W)."""
        h = x.shape[-2]
        a = rearrange(x, "b c h w -> b c (h w)")
        attn = torch.softmax(a @ a.transpose(1, 2), dim=-1)  # (B, C, C)
        return rearrange(attn @ a, "b c (h w) -> b c h w", h=h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma_pos * self.position_attention(x) + self.gamma_chan * self.channel_attention(x)
