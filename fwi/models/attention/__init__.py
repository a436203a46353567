"""Attention blocks, built by name: ``create_attn(name, channels, **kw)``; gates: ``create_gate``.

One module per block, named as the block's registry name (``ca.py`` is ``--attn ca``); shared pieces in
``common.py`` (widths, divisors, multi-head attention) and ``se.py`` (`ChannelAttn`, the squeeze MLP).
"""

from fwi.models.attention.registry import (
    ATTN,
    GATES,
    create_attn,
    create_gate,
    list_attn,
    list_gates,
    register_attn,
    register_gate,
)

# Importing the block modules registers them.
from fwi.models.attention import blocks as _blocks  # noqa: F401,E402

__all__ = ["ATTN", "GATES", "create_attn", "create_gate", "list_attn", "list_gates", "register_attn",
           "register_gate"]
