"""`ModelConfig`: which network to build (family, attention block and its places, decoder, widths).

Flat on purpose, so that the training config embeds it and exposes each field as a command-line flag. Imports no
torch: reading a config file stays cheap; `validate` looks the names up in the registries where they live (the
attention blocks and gates, norms and activations, decoders and downsamplings; they import torch) only when it is
called. None of those modules imports this one; `fwi.models.build` (the network families) does, so the family is
checked against `ARCHS`, which a test keeps equal to the families `build` registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

#: The places an attention block can go, and their command-line flags.
PLACE_FLAGS = {
    "encoder_attn": "--encoder-attn",
    "skip_attn": "--skip-attn",
    "bottleneck_attn": "--bottleneck-attn",
    "decoder_attn": "--decoder-attn",
}

Arch = Literal["unet", "inversionnet"]
#: The network families (``--arch``): the names `fwi.models.build.BUILDERS` registers.
ARCHS: tuple[str, ...] = get_args(Arch)


@dataclass
class ModelConfig:
    """The network: family (``arch``), attention block and its places, decoder, widths."""

    arch: Arch = "unet"  # network family (smp's name for it)
    attn: str = "none"  # attention block name from list_attn()
    encoder_attn: bool = False  # block after each encoder stage
    skip_attn: bool = False  # block on the skip features
    bottleneck_attn: bool = False  # block at the bottleneck
    decoder_attn: bool = False  # block after each decoder stage
    skip_gate: str = "none"  # gate on the skips (sees the decoder signal) from list_gates(), or "none"
    decoder: Literal["unet", "mix"] = "unet"  # plain U-Net decoder or U-MixFormer-style mix attention
    depth: int = 4  # number of downsamplings
    base_channels: int = 32  # width of the first stage (doubles per stage, capped at 512)
    norm: str = "batch"  # batch, instance, group or none
    act: str = "relu"  # relu, leaky_relu, gelu or silu
    attn_reduction: int | None = None  # channel reduction for blocks that take one; None: each block's paper value
    mix_dim: int = 64  # mix decoder: token width per stage (at most)
    mix_heads: int = 4  # mix decoder: attention heads
    mix_mlp_ratio: float = 4.0  # mix decoder: Mix-FFN hidden width / stage width (SegFormer, U-MixFormer: 4)
    mix_fuse_dim: int | None = None  # mix decoder: width of the fused full-resolution output (None: mix_dim)
    downsample: Literal["maxpool", "conv"] = "maxpool"  # between encoder stages: 2x2 maxpool or 3x3 stride-2 conv

    def places(self) -> list[str]:
        return [f for f in PLACE_FLAGS if getattr(self, f)]

    def validate(self) -> "ModelConfig":
        """Raise ValueError naming the valid choices / the flags to use; return self when consistent."""
        self._check_names()
        self._check_attention()
        if self.arch == "inversionnet" and (self.attn != "none" or self.skip_gate != "none" or self.decoder != "unet"):
            raise ValueError("InversionNet takes no --attn, --skip-gate or --decoder options; use --arch unet")
        self._check_sizes()
        return self

    def _check_names(self) -> None:
        """Every name is one its registry holds (the registries import torch: imported here, when validating)."""
        from fwi.models.attention.registry import list_attn, list_gates
        from fwi.models.layers import list_acts, list_norms
        from fwi.models.unet import DECODERS, DOWNSAMPLERS

        _choice("network family (--arch)", self.arch, list(ARCHS))
        _choice("attention block (--attn)", self.attn, list_attn())
        _choice("skip gate (--skip-gate)", self.skip_gate, ["none"] + list_gates())
        _choice("decoder (--decoder)", self.decoder, DECODERS.names())
        _choice("downsampling (--downsample)", self.downsample, DOWNSAMPLERS.names())
        _choice("norm (--norm)", self.norm, list_norms())
        _choice("activation (--act)", self.act, list_acts())

    def _check_attention(self) -> None:
        """A block has a place and a place has a block; ``attn_reduction`` only for a block that takes it."""
        from fwi.models.attention.registry import ATTN, list_attn

        flags = ", ".join(PLACE_FLAGS.values())
        if self.attn != "none" and not self.places():
            raise ValueError(f"--attn {self.attn} is selected but no place for it: add one or more of {flags}")
        if self.attn == "none" and self.places():
            chosen = ", ".join(PLACE_FLAGS[p] for p in self.places())
            raise ValueError(f"{chosen} given but --attn is 'none': choose a block with --attn "
                             f"(one of {', '.join(list_attn()[1:])}) or drop {chosen}")
        if self.attn_reduction is not None and self.attn != "none":
            options = ATTN.options(self.attn)
            if options is not None and "reduction" not in options:
                raise ValueError(f"--attn-reduction does not apply to attention block {self.attn!r} "
                                 f"(its options: {', '.join(options) or 'none'}); drop it")

    def _check_sizes(self) -> None:
        for field in ("depth", "base_channels", "attn_reduction", "mix_dim", "mix_heads", "mix_fuse_dim"):
            if getattr(self, field) is not None and getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not self.mix_mlp_ratio > 0:
            raise ValueError(f"mix_mlp_ratio must be > 0, got {self.mix_mlp_ratio}")
        if self.mix_dim % self.mix_heads:
            raise ValueError(f"mix_dim ({self.mix_dim}) must be divisible by mix_heads ({self.mix_heads})")


def _choice(what: str, value: str, valid: list[str]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
