"""Name -> constructor registries for attention blocks and skip-connection gates (timm's ``create_attn`` idea)."""

from __future__ import annotations

from typing import Callable

from torch import nn

_ATTN: dict[str, Callable[..., nn.Module]] = {}
_GATES: dict[str, Callable[..., nn.Module]] = {}


def register_attn(name: str) -> Callable:
    """Class decorator: register a block ``cls(channels, **kw)`` mapping (B, C, H, W) -> (B, C, H, W)."""
    def wrap(cls):
        if name in _ATTN:
            raise KeyError(f"attention block {name!r} registered twice")
        _ATTN[name] = cls
        return cls
    return wrap


def register_gate(name: str) -> Callable:
    """Class decorator: register a gate ``cls(skip_channels, gating_channels, **kw)``; forward(skip, gating) -> skip-shaped."""
    def wrap(cls):
        if name in _GATES:
            raise KeyError(f"gate {name!r} registered twice")
        _GATES[name] = cls
        return cls
    return wrap


def list_attn() -> list[str]:
    """Names accepted by `create_attn`, ``"none"`` first."""
    return ["none"] + sorted(_ATTN)


def list_gates() -> list[str]:
    return sorted(_GATES)


def attn_class(name: str) -> Callable[..., nn.Module] | None:
    """The registered constructor of block ``name`` (None for ``"none"`` or an unknown name)."""
    return _ATTN.get(name)


def gate_class(name: str) -> Callable[..., nn.Module] | None:
    """The registered constructor of gate ``name`` (None if unknown)."""
    return _GATES.get(name)


def create_attn(name: str, channels: int, **kwargs) -> nn.Module:
    """Build attention block ``name`` for ``channels`` channels; ``"none"`` gives ``nn.Identity``."""
    if name == "none":
        return nn.Identity()
    if name not in _ATTN:
        raise ValueError(f"unknown attention block {name!r}; valid names: {', '.join(list_attn())}")
    return _ATTN[name](channels, **kwargs)


def create_gate(name: str, skip_channels: int, gating_channels: int, **kwargs) -> nn.Module:
    if name not in _GATES:
        raise ValueError(f"unknown gate {name!r}; valid names: {', '.join(list_gates())}")
    return _GATES[name](skip_channels, gating_channels, **kwargs)
