"""Small helpers shared by the attention blocks and the mix decoder: channel arithmetic (bottleneck widths, group
and head counts) and multi-head attention over tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def hidden_channels(channels: int, reduction: int, min_hidden: int) -> int:
    """Bottleneck width ``max(channels // reduction, min_hidden)`` used by every squeeze-style MLP."""
    if reduction < 1:
        raise ValueError(f"reduction must be >= 1, got {reduction}")
    if min_hidden < 1:
        raise ValueError(f"min_hidden must be >= 1, got {min_hidden}")
    return max(channels // reduction, min_hidden)


def largest_divisor_at_most(n: int, cap: int) -> int:
    """Largest ``g <= cap`` with ``n % g == 0`` (at least 1): clamps a group or head count to a divisor of ``n``.

    The one place this is computed: SGE and SK groups, PSA per-scale groups, shuffle attention groups (of C / 2),
    adaptive head counts (`resolve_heads`) and the mix decoder's heads.
    """
    for g in range(max(min(cap, n), 1), 0, -1):
        if n % g == 0:
            return g
    return 1


def resolve_heads(inner: int, heads: int | None, head_dim: int) -> int:
    """Number of heads for an ``inner``-wide attention.

    ``heads=None`` adapts: about ``inner // head_dim`` heads, lowered to the nearest divisor of ``inner``
    (at least 1). An explicit ``heads`` must divide ``inner``.
    """
    if heads is None:
        return largest_divisor_at_most(inner, max(inner // max(head_dim, 1), 1))
    if heads < 1 or inner % heads:
        raise ValueError(f"heads={heads} must be a positive divisor of the inner dimension {inner}")
    return heads


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Scaled dot-product attention (Vaswani et al., 2017) split into ``heads`` heads.

    q: (B, Nq, D), k and v: (B, Nk, D) -> (B, Nq, D); softmax over the Nk keys, scale 1/sqrt(D / heads).
    """
    q, k, v = (rearrange(t, "b n (m d) -> b m n d", m=heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return rearrange(out, "b m n d -> b n (m d)")
