"""Configurable attention U-Net: gathers (B, S, T, R) -> {"velocity": (B,1,nz,nx) in [-1,1],
"salt_logits": (B,1,nz,nx)}.

Layout for ``depth=4``, ``base_channels=32`` on a 70 x 70 grid (maxpool with ceil mode, so odd sizes round up):

    adapter   (B,S,T,R) -> (B,32,70,70)
    enc0      DoubleConv -> 32 @ 70x70        [encoder attn]  -> skip0 [skip attn] [gate]
    enc1      down, DoubleConv -> 64 @ 35x35  [encoder attn]  -> skip1 ...
    enc2      down, DoubleConv -> 128 @ 18x18 ...
    enc3      down, DoubleConv -> 256 @ 9x9   ...
    bottleneck down, DoubleConv -> 512 @ 5x5  [bottleneck attn]
    decoder   "unet": a DecoderBlock per level: up-conv, pad/crop to the skip's size, [gate], concat,
              DoubleConv [decoder attn], x4
              "mix":  U-MixFormer mix-attention decoder (`fwi.models.mix_decoder`)
    heads     1x1 conv -> tanh (velocity), 1x1 conv (salt logits)

Attention blocks and gates are built by name through the registry (`fwi.models.attention`); which places get a
block is chosen by the flags, never by the block's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from fwi.models.adapter import GatherAdapter
from fwi.models.attention.registry import ATTN, create_attn, create_gate
from fwi.models.layers import ConvNormAct, DoubleConv, match_size
from fwi.models.legacy_keys import rename_on_load
from fwi.models.mix_decoder import MixAttentionDecoder
from fwi.registry import Registry

#: Downsampling between encoder stages: ``factory(channels, norm, act)``.
DOWNSAMPLERS: Registry[Callable[[int, str, str], nn.Module]] = Registry("downsampling")
DOWNSAMPLERS.register("maxpool", lambda channels, norm, act: nn.MaxPool2d(2, ceil_mode=True))
DOWNSAMPLERS.register("conv", lambda channels, norm, act: ConvNormAct(channels, channels, 3, stride=2, norm=norm,
                                                                      act=act))


def stage_widths(depth: int, base_channels: int, max_channels: int = 512) -> list[int]:
    """Widths of the ``depth`` encoder stages followed by the bottleneck: base * 2**i, capped."""
    return [min(base_channels * 2 ** i, max_channels) for i in range(depth + 1)]


class Downsample(nn.Module):
    """Halve the spatial size, rounding up (70 -> 35 -> 18 -> 9 -> 5)."""

    def __init__(self, channels: int, mode: str = "maxpool", norm: str = "batch", act: str = "relu"):
        super().__init__()
        self.op = DOWNSAMPLERS.get(mode)(channels, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DecoderBlock(nn.Module):
    """One level of the U-Net decoder (smp's ``DecoderBlock``): up-convolve the coarser feature, match the skip's
    size exactly, gate the skip (optional), concatenate ``[skip, up]``, DoubleConv, attention block (optional).

    Args:
        in_channels: width of the coarser feature coming up (also the gating signal, before the up-conv, as in
            Oktay et al.).
        skip_channels: width of the skip, and of the output.
        attn, attn_kwargs: attention block after the DoubleConv ("none": identity).
        gate, gate_kwargs: gate on the skip ("none": no gate).

    forward(x (B, in_channels, h, w), skip (B, skip_channels, H, W)) -> (B, skip_channels, H, W).
    """

    def __init__(self, in_channels: int, skip_channels: int, norm: str = "batch", act: str = "relu",
                 attn: str = "none", attn_kwargs: dict | None = None, gate: str = "none",
                 gate_kwargs: dict | None = None):
        super().__init__()
        # Created in this order: the seeded initialisation of the layers depends on it.
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.gate = create_gate(gate, skip_channels, in_channels, **(gate_kwargs or {})) if gate != "none" else None
        self.conv = DoubleConv(2 * skip_channels, skip_channels, norm=norm, act=act)
        self.attn = create_attn(attn, skip_channels, **(attn_kwargs or {}))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        x = match_size(self.up(x), tuple(skip.shape[-2:]))
        return self.attn(self.conv(torch.cat([skip, x], dim=1)))


class UNetDecoder(nn.Module):
    """Classic U-Net decoder: one `DecoderBlock` per level, coarse -> fine.

    ``widths``: the encoder stage widths finest first, then the bottleneck's; ``attn`` goes after each block when
    ``decoder_attn``; ``skip_gate`` (or "none") gates every skip. Checkpoints written when the levels' layers were
    four parallel lists (``ups``, ``convs``, ``post_attn``, ``gates``) load, renamed at load.
    forward(features finest first, then the bottleneck) -> (B, widths[0], H0, W0).
    """

    def __init__(self, widths: list[int], norm: str = "batch", act: str = "relu", attn: str = "none",
                 attn_kwargs: dict | None = None, decoder_attn: bool = False, skip_gate: str = "none",
                 gate_kwargs: dict | None = None):
        super().__init__()
        depth = len(widths) - 1
        self.blocks = nn.ModuleList(
            DecoderBlock(widths[level + 1], widths[level], norm, act, attn if decoder_attn else "none", attn_kwargs,
                         skip_gate, gate_kwargs)
            for level in reversed(range(depth)))
        self.out_channels = widths[0]
        rename_on_load(self, {f"{old}.{j}.": f"blocks.{j}.{new}." for j in range(depth) for old, new in
                              (("ups", "up"), ("convs", "conv"), ("post_attn", "attn"), ("gates", "gate"))})

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: the encoder skips finest first, then the bottleneck."""
        x = features[-1]
        for block, skip in zip(self.blocks, features[-2::-1]):  # skips coarse -> fine
            x = block(x, skip)
        return x


@dataclass(frozen=True)
class DecoderSpec:
    """What a decoder is built from besides the stage widths (the `AttentionUNet` options that concern it)."""

    norm: str = "batch"
    act: str = "relu"
    attn: str = "none"  # block after each decoder stage when ``decoder_attn``
    attn_kwargs: dict = field(default_factory=dict)
    decoder_attn: bool = False
    skip_gate: str = "none"
    gate_kwargs: dict = field(default_factory=dict)
    mix_dim: int = 64  # mix decoder only: token width (at most) per stage
    mix_heads: int = 4  # mix decoder only: attention heads
    mix_mlp_ratio: float = 4.0  # mix decoder only: Mix-FFN hidden width factor
    mix_fuse_dim: int | None = None  # mix decoder only: fused output width (None: mix_dim)


#: Decoders over the encoder stages: ``factory(widths, spec)``, ``widths`` finest first (then the bottleneck).
DECODERS: Registry[Callable[[list[int], DecoderSpec], nn.Module]] = Registry("decoder")


@DECODERS.register("unet")
def _unet_decoder(widths: list[int], spec: DecoderSpec) -> nn.Module:
    return UNetDecoder(widths, norm=spec.norm, act=spec.act, attn=spec.attn, attn_kwargs=spec.attn_kwargs,
                       decoder_attn=spec.decoder_attn, skip_gate=spec.skip_gate, gate_kwargs=spec.gate_kwargs)


@DECODERS.register("mix")
def _mix_decoder(widths: list[int], spec: DecoderSpec) -> nn.Module:
    return MixAttentionDecoder(widths, dim=spec.mix_dim, heads=spec.mix_heads, mlp_ratio=spec.mix_mlp_ratio,
                               fuse_dim=spec.mix_fuse_dim, norm=spec.norm, act=spec.act, attn=spec.attn,
                               attn_kwargs=spec.attn_kwargs, decoder_attn=spec.decoder_attn, skip_gate=spec.skip_gate,
                               gate_kwargs=spec.gate_kwargs)


class AttentionUNet(nn.Module):
    """Attention U-Net for gathers -> velocity + salt mask.

    Args:
        in_shots, nt, nrec: survey size S, T, R of the input gathers (B, S, T, R).
        grid: (nz, nx) output grid; any size (odd, non-square).
        depth: number of downsamplings (encoder stages before the bottleneck).
        base_channels: width of the first stage; stage i has base * 2**i channels, capped at ``max_channels``.
        norm, act: names from `fwi.models.layers.NORMS` / `ACTS`.
        attn: attention block name (`fwi.models.attention.list_attn()`), ``attn_kwargs`` its options.
        encoder_attn / skip_attn / bottleneck_attn / decoder_attn: where ``attn`` is inserted.
        skip_gate: gate name (`list_gates()`) applied to the skips, or "none".
        decoder: "unet" (concatenating decoder) or "mix" (U-MixFormer mix-attention decoder).
        mix_dim, mix_heads, mix_mlp_ratio, mix_fuse_dim: mix decoder width, heads, Mix-FFN ratio, fused output
            width (None: ``mix_dim``).
        downsample: "maxpool" or "conv" (stride 2).
    """

    def __init__(self, in_shots: int, nt: int, nrec: int, grid: tuple[int, int] = (70, 70), depth: int = 4,
                 base_channels: int = 32, max_channels: int = 512, norm: str = "batch", act: str = "relu",
                 attn: str = "none", attn_kwargs: dict | None = None, encoder_attn: bool = False,
                 skip_attn: bool = False, bottleneck_attn: bool = False, decoder_attn: bool = False,
                 skip_gate: str = "none", gate_kwargs: dict | None = None, decoder: str = "unet",
                 mix_dim: int = 64, mix_heads: int = 4, mix_mlp_ratio: float = 4.0, mix_fuse_dim: int | None = None,
                 downsample: str = "maxpool"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        make_decoder = DECODERS.get(decoder)
        attn_kwargs = dict(attn_kwargs or {})
        ATTN.check_kwargs(attn, attn_kwargs)  # a mistyped option fails even where no place selects the block
        self.grid = (int(grid[0]), int(grid[1]))
        self.widths = widths = stage_widths(depth, base_channels, max_channels)

        def place(flag: bool, channels: int) -> nn.Module:
            return create_attn(attn if flag else "none", channels, **attn_kwargs)

        self.adapter = GatherAdapter(in_shots, nt, nrec, self.grid, out_channels=base_channels, norm=norm, act=act)
        self.downs = nn.ModuleList(Downsample(widths[i], downsample, norm, act) for i in range(depth))
        self.encoders = nn.ModuleList(
            DoubleConv(base_channels if i == 0 else widths[i - 1], widths[i], norm=norm, act=act) for i in range(depth))
        self.encoder_attn = nn.ModuleList(place(encoder_attn, widths[i]) for i in range(depth))
        self.skip_attn = nn.ModuleList(place(skip_attn, widths[i]) for i in range(depth))
        self.bottleneck = DoubleConv(widths[depth - 1], widths[depth], norm=norm, act=act)
        self.bottleneck_attn = place(bottleneck_attn, widths[depth])
        spec = DecoderSpec(norm=norm, act=act, attn=attn, attn_kwargs=attn_kwargs, decoder_attn=decoder_attn,
                           skip_gate=skip_gate, gate_kwargs=dict(gate_kwargs or {}), mix_dim=mix_dim,
                           mix_heads=mix_heads, mix_mlp_ratio=mix_mlp_ratio, mix_fuse_dim=mix_fuse_dim)
        self.decoder = make_decoder(widths, spec)
        head_in = self.decoder.out_channels
        self.velocity_head = nn.Sequential(nn.Conv2d(head_in, 1, 1), nn.Tanh())
        self.salt_head = nn.Conv2d(head_in, 1, 1)

    def forward(self, gathers: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.adapter(gathers)
        skips = []
        for i, (enc, eattn, sattn) in enumerate(zip(self.encoders, self.encoder_attn, self.skip_attn)):
            if i > 0:
                x = self.downs[i - 1](x)
            x = eattn(enc(x))
            skips.append(sattn(x))
        x = self.bottleneck_attn(self.bottleneck(self.downs[-1](x)))
        feat = self.decoder(skips + [x])
        if tuple(feat.shape[-2:]) != self.grid:  # cannot happen with the built-in decoders; kept as a guard
            feat = match_size(feat, self.grid)
        return {"velocity": self.velocity_head(feat), "salt_logits": self.salt_head(feat)}
