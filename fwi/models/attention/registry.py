"""The registries of attention blocks (``ATTN``) and skip-connection gates (``GATES``), timm's ``create_attn`` idea.

A block is ``cls(channels, **options)`` mapping (B, C, H, W) -> (B, C, H, W); ``"none"`` (listed first)
gives ``nn.Identity`` (whatever the options: no block, nothing to configure). A gate is
``cls(skip_channels, gating_channels, **options)`` with ``forward(skip, gating)`` -> skip-shaped. Options are
passed through: one a block does not take is a ValueError naming the block and the option.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from fwi.registry import Registry

# Sorted: the blocks register in import order (bam imports se...), the listing should not depend on it.
ATTN: Registry[Callable[..., nn.Module]] = Registry("attention block", sort=True, first=("none",))
GATES: Registry[Callable[..., nn.Module]] = Registry("gate", sort=True)


@ATTN.register("none")
def _no_attention(channels: int, **options) -> nn.Module:
    return nn.Identity()


def register_attn(name: str) -> Callable:
    """Class decorator: register attention block ``name``."""
    return ATTN.register(name)


def register_gate(name: str) -> Callable:
    """Class decorator: register gate ``name``."""
    return GATES.register(name)


def list_attn() -> list[str]:
    """Names accepted by `create_attn`: ``"none"``, then the blocks alphabetically."""
    return ATTN.names()


def list_gates() -> list[str]:
    """Names accepted by `create_gate` (``"none"`` is not a gate: the networks skip the gate instead)."""
    return GATES.names()


def create_attn(name: str, channels: int, **options) -> nn.Module:
    """Build attention block ``name`` for ``channels`` channels; ``"none"`` gives ``nn.Identity``."""
    return ATTN.build(name, channels, **options)


def create_gate(name: str, skip_channels: int, gating_channels: int, **options) -> nn.Module:
    """Build gate ``name`` for skips of ``skip_channels`` gated by a ``gating_channels`` signal."""
    return GATES.build(name, skip_channels, gating_channels, **options)
