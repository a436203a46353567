"""Configurable attention U-Net: gathers (B, S, T, R) -> {"velocity": (B,1,nz,nx) in [-1,1], "salt_logits": (B,1,nz,nx)}.

Layout for ``depth=4``, ``base_channels=32`` on a 70 x 70 grid (maxpool with ceil mode, so odd sizes round up):

    adapter   (B,S,T,R) -> (B,32,70,70)
    enc0      DoubleConv -> 32 @ 70x70        [encoder attn]  -> skip0 [skip attn] [gate]
    enc1      down, DoubleConv -> 64 @ 35x35  [encoder attn]  -> skip1 ...
    enc2      down, DoubleConv -> 128 @ 18x18 ...
    enc3      down, DoubleConv -> 256 @ 9x9   ...
    bottleneck down, DoubleConv -> 512 @ 5x5  [bottleneck attn]
    decoder   "unet": up-conv, pad/crop to the skip's size, concat, DoubleConv [decoder attn], x4
              "mix":  U-MixFormer mix-attention decoder (`fwi.models.mix_decoder`)
    heads     1x1 conv -> tanh (velocity), 1x1 conv (salt logits)

Attention blocks and gates are built by name through the registry (`fwi.models.attention`); which places get a
block is chosen by the flags, never by the block's name.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from fwi.models.adapter import GatherAdapter
from fwi.models.attention import ATTN, create_attn, create_gate
from fwi.models.layers import ConvNormAct, DoubleConv, match_size
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


class UNetDecoder(nn.Module):
    """Classic U-Net decoder: at each level up-convolve, match the skip's size exactly, gate the skip (optional),
    concatenate, DoubleConv, then an optional attention block."""

    def __init__(self, widths: list[int], norm: str = "batch", act: str = "relu", attn: str = "none",
                 attn_kwargs: dict | None = None, decoder_attn: bool = False, skip_gate: str = "none",
                 gate_kwargs: dict | None = None):
        super().__init__()
        depth = len(widths) - 1
        self.ups, self.convs, self.post_attn, self.gates = (nn.ModuleList() for _ in range(4))
        self.gated = skip_gate != "none"
        cin = widths[depth]
        for level in reversed(range(depth)):
            w = widths[level]
            self.ups.append(nn.ConvTranspose2d(cin, w, kernel_size=2, stride=2))
            # Gating signal: the coarser decoder feature coming up (before the up-conv), as in Oktay et al.
            self.gates.append(create_gate(skip_gate, w, cin, **(gate_kwargs or {})) if self.gated else nn.Identity())
            self.convs.append(DoubleConv(2 * w, w, norm=norm, act=act))
            self.post_attn.append(create_attn(attn if decoder_attn else "none", w, **(attn_kwargs or {})))
            cin = w
        self.out_channels = widths[0]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: the encoder skips finest first, then the bottleneck."""
        x = features[-1]
        skips = features[-2::-1]  # coarse -> fine
        for up, gate, conv, post, skip in zip(self.ups, self.gates, self.convs, self.post_attn, skips):
            if self.gated:
                skip = gate(skip, x)
            x = match_size(up(x), tuple(skip.shape[-2:]))
            x = post(conv(torch.cat([skip, x], dim=1)))
        return x


#: Decoders over the encoder stages: ``factory(widths, opts)``, ``widths`` finest first (then the bottleneck),
#: ``opts`` the AttentionUNet options (norm, act, attn, attn_kwargs, decoder_attn, skip_gate, gate_kwargs, mix_*).
DECODERS: Registry[Callable[[list[int], dict], nn.Module]] = Registry("decoder")


@DECODERS.register("unet")
def _unet_decoder(widths, opts) -> nn.Module:
    return UNetDecoder(widths, norm=opts["norm"], act=opts["act"], attn=opts["attn"], attn_kwargs=opts["attn_kwargs"],
                       decoder_attn=opts["decoder_attn"], skip_gate=opts["skip_gate"], gate_kwargs=opts["gate_kwargs"])


@DECODERS.register("mix")
def _mix_decoder(widths, opts) -> nn.Module:
    return MixAttentionDecoder(widths, dim=opts["mix_dim"], heads=opts["mix_heads"], mlp_ratio=opts["mix_mlp_ratio"],
                               norm=opts["norm"], act=opts["act"], attn=opts["attn"], attn_kwargs=opts["attn_kwargs"],
                               decoder_attn=opts["decoder_attn"], skip_gate=opts["skip_gate"],
                               gate_kwargs=opts["gate_kwargs"])


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
        mix_dim, mix_heads, mix_mlp_ratio: mix decoder width, heads, Mix-FFN ratio.
        downsample: "maxpool" or "conv" (stride 2).
    """

    def __init__(self, in_shots: int, nt: int, nrec: int, grid: tuple[int, int] = (70, 70), depth: int = 4,
                 base_channels: int = 32, max_channels: int = 512, norm: str = "batch", act: str = "relu",
                 attn: str = "none", attn_kwargs: dict | None = None, encoder_attn: bool = False,
                 skip_attn: bool = False, bottleneck_attn: bool = False, decoder_attn: bool = False,
                 skip_gate: str = "none", gate_kwargs: dict | None = None, decoder: str = "unet",
                 mix_dim: int = 64, mix_heads: int = 4, mix_mlp_ratio: float = 4.0, downsample: str = "maxpool"):
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
        opts = dict(norm=norm, act=act, attn=attn, attn_kwargs=attn_kwargs, decoder_attn=decoder_attn,
                    skip_gate=skip_gate, gate_kwargs=dict(gate_kwargs or {}), mix_dim=mix_dim, mix_heads=mix_heads,
                    mix_mlp_ratio=mix_mlp_ratio)
        self.decoder = make_decoder(widths, opts)
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
