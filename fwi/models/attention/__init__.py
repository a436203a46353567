"""Attention blocks, built by name: ``create_attn(name, channels, **kw)``; gates: ``create_gate``."""

from fwi.models.attention.registry import create_attn, create_gate, list_attn, list_gates, register_attn, register_gate

# Importing the block modules registers them.
from fwi.models.attention import blocks as _blocks  # noqa: F401,E402

__all__ = ["create_attn", "create_gate", "list_attn", "list_gates", "register_attn", "register_gate"]
