"""`build_model`: the network a `ModelConfig` describes, from the registry of network families (``BUILDERS``)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from fwi.models.config import ModelConfig
from fwi.models.inversionnet import InversionNet
from fwi.models.unet import AttentionUNet
from fwi.registry import Registry

#: Network families: ``builder(cfg, data_shape, grid)``.
BUILDERS: Registry[Callable[[ModelConfig, tuple, tuple], nn.Module]] = Registry("network family")


@BUILDERS.register("unet")
def _build_unet(cfg: ModelConfig, data_shape: tuple[int, int, int], grid: tuple[int, int]) -> nn.Module:
    s, t, r = data_shape
    attn_kwargs = {} if cfg.attn_reduction is None else {"reduction": cfg.attn_reduction}
    return AttentionUNet(s, t, r, grid=grid, depth=cfg.depth, base_channels=cfg.base_channels, norm=cfg.norm,
                         act=cfg.act, attn=cfg.attn, attn_kwargs=attn_kwargs,
                         encoder_attn=cfg.encoder_attn, skip_attn=cfg.skip_attn, bottleneck_attn=cfg.bottleneck_attn,
                         decoder_attn=cfg.decoder_attn, skip_gate=cfg.skip_gate, decoder=cfg.decoder,
                         mix_dim=cfg.mix_dim, mix_heads=cfg.mix_heads, mix_mlp_ratio=cfg.mix_mlp_ratio,
                         mix_fuse_dim=cfg.mix_fuse_dim, downsample=cfg.downsample)


@BUILDERS.register("inversionnet")
def _build_inversionnet(cfg: ModelConfig, data_shape: tuple[int, int, int], grid: tuple[int, int]) -> nn.Module:
    s, t, r = data_shape
    return InversionNet(s, t, r, grid=grid)


def build_model(cfg: ModelConfig, data_shape: tuple[int, int, int], grid: tuple[int, int]) -> nn.Module:
    """Validate ``cfg``; the network for gathers of shape ``data_shape`` = (S, T, R) onto ``grid`` = (nz, nx)."""
    cfg.validate()
    return BUILDERS.get(cfg.arch)(cfg, tuple(data_shape), tuple(grid))
