"""Additive attention gate for U-Net skip connections.

O. Oktay, J. Schlemper, L. Le Folgoc, M. Lee, M. Heinrich, K. Misawa, K. Mori, S. McDonagh, N. Y. Hammerla,
B. Kainz, B. Glocker, D. Rueckert, "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi.models.attention.registry import register_gate


@register_gate("gate")
class AttentionGate(nn.Module):
    """``skip * alpha``, ``alpha = sigmoid(psi(relu(W_x skip + W_g g + b_g)) + b_psi)`` (paper eq. 1-2).

    W_x: 1x1 conv (stride 1, no bias) on the skip; W_g: 1x1 conv (bias b_g) on the gating signal, whose map is
    bilinearly resized (align_corners=False) to the skip's H, W when they differ (the 1x1 conv is applied
    before the resize: a 1x1 conv commutes with bilinear interpolation, and the coarse map is cheaper);
    psi: 1x1 conv to one channel (bias b_psi). alpha has shape (B, 1, H, W).

    Args:
        skip_channels: C_x of the skip (encoder) features.
        gating_channels: C_g of the gating (decoder) signal.
        inter_channels: F_int, default ``max(skip_channels // 2, 1)``.

    Shapes: skip (B, C_x, H, W), gating (B, C_g, H', W') -> (B, C_x, H, W).
    """

    def __init__(self, skip_channels: int, gating_channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = max(skip_channels // 2, 1) if inter_channels is None else inter_channels
        self.theta_x = nn.Conv2d(skip_channels, inter, 1, bias=False)
        self.phi_g = nn.Conv2d(gating_channels, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def attention_map(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """Coefficients alpha in (0, 1): (B, 1, H, W) at the skip's resolution."""
        g = self.phi_g(gating)
        if g.shape[-2:] != skip.shape[-2:]:
            g = F.interpolate(g, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.psi(F.relu(self.theta_x(skip) + g)))

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return skip * self.attention_map(skip, gating)
