"""U-MixFormer-style mix-attention decoder.

After Yeom & von Klitzing, "U-MixFormer: UNet-like Transformer with Mix-Attention for Efficient Semantic
Segmentation" (2023). Written from the paper's description:

* The decoder runs coarse -> fine over the N feature stages handed to it (here: the U-Net encoder stages and the
  bottleneck). At decoder step j the **query** is the lateral encoder feature of stage ``N-1-j`` (a lateral
  connection, not a skip concatenation).
* **Keys and values** come from a *mix* of all N stages: for the stages already decoded their decoder outputs,
  the encoder features otherwise. Each is adaptive-average-pooled to the coarsest stage's size (h_c, w_c) and
  linearly projected to the common width ``dim``; the N maps are concatenated along channels (N*dim) and
  projected to keys and values. So there are h_c*w_c kv tokens of N*dim channels each, whatever the stage.
* Each step is a pre-norm transformer block: ``x = x + MHA(LN(x), LN(kv))``, ``x = x + MixFFN(LN(x))`` with
  Mix-FFN = Linear -> 3x3 depthwise conv -> GELU -> Linear (SegFormer's positional-encoding-free FFN).
  As in the paper, a decoder stage works at the width of its lateral feature (the query is the lateral itself),
  here capped at ``dim`` so the wide coarse stages stay light: stage width ``min(dim, C_stage)``; a linear
  query projection is used only where the lateral is wider than that.
* A fusion head resizes every decoder output to the finest stage, concatenates them and fuses with a 1x1 conv
  to ``fuse_dim`` channels (default ``dim``), then norm + activation. U-MixFormer fuses at 1/4 of the input
  resolution; here the finest stage is the full grid, where a fused width of ``dim`` is the largest cost of a CPU
  step on a large grid (fieldsalt, 101 x 151, dim 64), so ``fuse_dim`` can match the plain U-Net decoder's
  full-resolution width instead. It is computed in the equivalent cheaper order: each stage's slice of
  the 1x1 conv is applied at the stage's own resolution, then the results are resized and summed (a 1x1 conv
  commutes with bilinear resizing, whose weights sum to one), which avoids the wide full-resolution concatenation.

All token reshuffles use einops; any stage sizes work (odd, non-square), since pooling is adaptive and the
fusion resize is to an explicit size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fwi.models.attention.registry import create_attn, create_gate
from fwi.models.attention.common import largest_divisor_at_most, multi_head_attention
from fwi.models.layers import make_act, make_norm


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv -> GELU -> Linear on tokens (B, H*W, dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = self.fc1(x)
        x = rearrange(x, "b (h w) c -> b c h w", h=hw[0], w=hw[1])
        x = self.dwconv(x)
        x = rearrange(x, "b c h w -> b (h w) c")
        return self.fc2(self.act(x))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: ``q`` (B, Nq, dim) attends over ``kv`` (B, Nkv, kv_dim) -> (B, Nq, dim).

    Linear q (dim -> dim) and kv (kv_dim -> 2 dim, split into keys then values) projections, the shared
    `multi_head_attention` (scale 1/sqrt(dim / heads)), linear output projection.
    """

    def __init__(self, dim: int, kv_dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"mix decoder width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(kv).chunk(2, dim=-1)
        return self.proj(multi_head_attention(self.q(q), k, v, self.heads))


class MixAttentionBlock(nn.Module):
    """One decoder step: lateral query + pooled multi-stage mix -> decoded stage feature (B, width, H, W).

    ``width``: the stage's working width (queries, outputs); ``mix_dim``: the common width every pooled stage is
    projected to before the channel concatenation (kv tokens of ``len(mix_channels) * mix_dim`` channels).
    """

    def __init__(self, query_channels: int, mix_channels: list[int], width: int, mix_dim: int, heads: int,
                 mlp_ratio: float):
        super().__init__()
        self.query_proj = nn.Identity() if query_channels == width else nn.Linear(query_channels, width)
        # One projection per mixed stage (their widths differ: encoder widths, or stage widths once decoded).
        self.mix_proj = nn.ModuleList(nn.Linear(c, mix_dim) for c in mix_channels)
        self.kv_dim = mix_dim * len(mix_channels)
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(self.kv_dim)
        # heads lowered to the largest divisor of the stage width when it does not divide it
        self.attn = CrossAttention(width, self.kv_dim, largest_divisor_at_most(width, heads))
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn = MixFFN(width, int(width * mlp_ratio))

    def mix(self, sources: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Pool every source to ``size``, project each to ``mix_dim``, concatenate along channels -> kv tokens."""
        parts = []
        for proj, src in zip(self.mix_proj, sources):
            pooled = F.adaptive_avg_pool2d(src, size)
            parts.append(proj(rearrange(pooled, "b c h w -> b (h w) c")))
        return torch.cat(parts, dim=-1)  # (B, h_c*w_c, N*mix_dim)

    def forward(self, query: torch.Tensor, sources: list[torch.Tensor], pool_size: tuple[int, int]) -> torch.Tensor:
        h, w = query.shape[-2:]
        x = self.query_proj(rearrange(query, "b c h w -> b (h w) c"))
        kv = self.norm_kv(self.mix(sources, pool_size))
        x = x + self.attn(self.norm_q(x), kv)
        x = x + self.ffn(self.norm_ffn(x), (h, w))
        return rearrange(x, "b (h w) c -> b c h w", h=h, w=w)


class MixAttentionDecoder(nn.Module):
    """Mix-attention decoder over N stages.

    Args:
        stage_channels: channel widths of the N stages, finest first (encoder stages, then the bottleneck).
        dim: common width of the pooled kv projections and of the fused output; also the cap on each decoder
            stage's width (``min(dim, stage_channels[i])``).
        heads: attention heads (lowered to a divisor of a stage's width where needed).
        mlp_ratio: Mix-FFN hidden width factor.
        fuse_dim: width of the fused full-resolution output (None: ``dim``).
        attn, attn_kwargs, decoder_attn: attention block (registry name) applied after each decoder step.
        skip_gate, gate_kwargs: gate (registry name or "none") applied to each lateral query except the coarsest,
            gated by the previous (coarser) decoder output.

    forward(features) takes the N stage tensors finest first and returns (B, fuse_dim, H0, W0) at the finest size.
    """

    def __init__(self, stage_channels: list[int], dim: int = 64, heads: int = 4, mlp_ratio: float = 4.0,
                 fuse_dim: int | None = None, norm: str = "batch", act: str = "relu", attn: str = "none",
                 attn_kwargs: dict | None = None, decoder_attn: bool = False, skip_gate: str = "none",
                 gate_kwargs: dict | None = None):
        super().__init__()
        n = len(stage_channels)
        if n < 1:
            raise ValueError("the mix decoder needs at least one stage")
        if heads < 1:
            raise ValueError(f"the mix decoder needs at least one attention head, got {heads}")
        self.n_stages = n
        fuse = dim if fuse_dim is None else fuse_dim
        if fuse < 1:
            raise ValueError(f"the mix decoder's fused width must be >= 1, got {fuse}")
        self.out_channels = fuse
        self.stage_dims = widths = [min(dim, c) for c in stage_channels]
        blocks, post_attn, gates = [], [], []
        decoded: set[int] = set()
        for j in range(n):
            stage = n - 1 - j
            mix_channels = [widths[i] if i in decoded else stage_channels[i] for i in range(n)]
            blocks.append(MixAttentionBlock(stage_channels[stage], mix_channels, widths[stage], dim, heads, mlp_ratio))
            post_attn.append(create_attn(attn if decoder_attn else "none", widths[stage], **(attn_kwargs or {})))
            use_gate = skip_gate != "none" and j > 0
            # Gating signal: the previous (coarser) decoder output.
            gates.append(create_gate(skip_gate, stage_channels[stage], widths[stage + 1], **(gate_kwargs or {}))
                         if use_gate else None)
            decoded.add(stage)
        self.blocks = nn.ModuleList(blocks)
        self.post_attn = nn.ModuleList(post_attn)
        self.gates = nn.ModuleList(g if g is not None else nn.Identity() for g in gates)
        self._gated = [g is not None for g in gates]
        # Fusion = one 1x1 conv over the concatenation of all stage outputs, split into per-stage slices
        # (the bias lives in the finest stage's slice), followed by norm + activation.
        self.fuse_proj = nn.ModuleList(nn.Conv2d(widths[i], fuse, 1, bias=(i == 0)) for i in range(n))
        self.fuse_norm = make_norm(norm, fuse)
        self.fuse_act = make_act(act)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != self.n_stages:
            raise ValueError(f"expected {self.n_stages} stage features, got {len(features)}")
        n = self.n_stages
        pool_size = tuple(features[-1].shape[-2:])
        current = list(features)  # encoder features, replaced by decoder outputs as they are computed
        outputs: list[torch.Tensor] = []
        for j, (block, post, gate) in enumerate(zip(self.blocks, self.post_attn, self.gates)):
            stage = n - 1 - j
            query = features[stage]
            if self._gated[j]:
                query = gate(query, outputs[-1])
            out = post(block(query, current, pool_size))
            current[stage] = out
            outputs.append(out)
        size = tuple(features[0].shape[-2:])
        fused = None
        for stage, out in zip(range(n - 1, -1, -1), outputs):
            y = self.fuse_proj[stage](out)
            if tuple(y.shape[-2:]) != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y
        return self.fuse_act(self.fuse_norm(fused))
