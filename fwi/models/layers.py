"""Small shared pieces: conv-norm-act blocks with norm / activation chosen by name, exact-size resampling helpers.

Norms and activations are picked from the registries `NORMS` and `ACTS` (`fwi.registry.Registry`, name ->
constructor), so the networks never branch on their names.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fwi.registry import Registry

NORMS: Registry[Callable[[int], nn.Module]] = Registry("norm")
ACTS: Registry[Callable[[], nn.Module]] = Registry("activation")


def _group_norm(channels: int) -> nn.Module:
    # Up to 8 groups, always a divisor of the channel count (1 group for odd widths).
    return nn.GroupNorm(math.gcd(8, channels), channels)


NORMS.register("batch", nn.BatchNorm2d)
NORMS.register("instance", lambda c: nn.InstanceNorm2d(c, affine=True))
NORMS.register("group", _group_norm)
NORMS.register("none", lambda c: nn.Identity())

ACTS.register("relu", lambda: nn.ReLU(inplace=True))
ACTS.register("leaky_relu", lambda: nn.LeakyReLU(0.2, inplace=True))
ACTS.register("gelu", nn.GELU)
ACTS.register("silu", lambda: nn.SiLU(inplace=True))


def list_norms() -> list[str]:
    return NORMS.names()


def list_acts() -> list[str]:
    return ACTS.names()


def make_norm(name: str, channels: int) -> nn.Module:
    """Norm ``name`` over ``channels`` channels of (B, C, H, W) maps."""
    return NORMS.get(name)(channels)


def make_act(name: str) -> nn.Module:
    return ACTS.get(name)()


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation. ``padding=None`` gives 'same' padding for odd kernels (per axis)."""

    def __init__(self, cin: int, cout: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | None = None,
                 norm: str = "batch", act: str = "relu"):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if padding is None:
            padding = (ks[0] // 2, ks[1] // 2)
        # A bias right before a (batch/instance/group) norm is redundant.
        conv = nn.Conv2d(cin, cout, ks, stride=stride, padding=padding, bias=(norm == "none"))
        super().__init__(conv, make_norm(norm, cout), make_act(act))


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-norm-act layers (the U-Net stage)."""

    def __init__(self, cin: int, cout: int, norm: str = "batch", act: str = "relu"):
        super().__init__(ConvNormAct(cin, cout, 3, norm=norm, act=act), ConvNormAct(cout, cout, 3, norm=norm, act=act))


def match_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Center-crop or zero-pad the last two axes of ``x`` to ``size`` (exact, no interpolation)."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    # Negative padding crops; the odd element goes to the bottom / right.
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Center crop of the last two axes to ``size`` (each must be <= the current size)."""
    h, w = x.shape[-2:]
    if size[0] > h or size[1] > w:
        raise ValueError(f"cannot crop {(h, w)} to {tuple(size)}")
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]
