"""Look inside a trained network: spatial maps of what its attention blocks do (forward hooks, no model changes).

An *attention module* is any module whose class is defined in `fwi.models.attention` (the registered blocks and
the skip gates); only the outermost ones are listed (a block's own sub-modules, e.g. CBAM's channel and spatial
parts, are not listed separately). Names are ``model.named_modules()`` names such as ``skip_attn.0`` or
``decoder.blocks.1.gate``.

What a map is (``mode``):

* ``"gain"`` (default): ``sum_c |y_c| / sum_c |x_c|`` at each pixel, with x the block's input (the skip for a
  gate) and y its output -- the factor by which the block rescales the feature magnitude at that location
  (1 = passed unchanged, < 1 suppressed, > 1 amplified). For a block that multiplies its input by one spatial map
  (an attention gate ``y = x * alpha``) this is exactly that map; for a channel block (SE, ECA) it is the
  |x|-weighted mean of the channel weights, so its spatial structure comes from which channels are active where.
  Blocks whose output differs in shape from the input fall back to ``"output"``.
* ``"output"``: the channel mean of the block's output features.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

ATTENTION_PACKAGE = "fwi.models.attention"
MapMode = Literal["gain", "output"]


def _is_attention(module: nn.Module) -> bool:
    return type(module).__module__.startswith(ATTENTION_PACKAGE)


def list_attention_modules(model: nn.Module) -> list[str]:
    """Names of the outermost attention modules of ``model``, in ``named_modules`` order (encoder to decoder)."""
    names: list[str] = []
    for name, module in model.named_modules():
        if _is_attention(module) and not any(name.startswith(parent + ".") for parent in names):
            names.append(name)
    return names


def _first_tensor(value) -> torch.Tensor | None:
    if torch.is_tensor(value):
        return value
    if isinstance(value, (tuple, list)) and value and torch.is_tensor(value[0]):
        return value[0]
    if isinstance(value, dict):
        return next((v for v in value.values() if torch.is_tensor(v)), None)
    return None


def attention_map(x: torch.Tensor, y: torch.Tensor, mode: MapMode = "gain", eps: float = 1e-8) -> torch.Tensor:
    """(B, H, W) map of a block with input ``x`` and output ``y`` (B, C, H, W); see the module docstring."""
    if mode not in ("gain", "output"):
        raise ValueError(f"mode must be 'gain' or 'output', got {mode!r}")
    y = y.detach().float()
    if mode == "gain" and x is not None and x.shape == y.shape:
        x = x.detach().float()
        return y.abs().sum(1) / x.abs().sum(1).clamp_min(eps)
    return y.mean(1)


@torch.no_grad()
def capture_attention(model: nn.Module, gathers: torch.Tensor, block_names: Sequence[str] | None = None,
                      mode: MapMode = "gain") -> dict[str, torch.Tensor]:
    """Run ``model`` on normalised ``gathers`` (B, S, T, R) and return {module name: (B, H, W) map} on the CPU.

    ``block_names``: a subset of `list_attention_modules(model)` (default all). The model runs in eval mode (its
    mode is restored afterwards) and no gradient is kept. A model without attention modules gives an empty dict.
    """
    available = list_attention_modules(model)
    names = available if block_names is None else list(block_names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"no attention module(s) {unknown} in the model; available: {', '.join(available) or 'none'}")
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output) -> None:
            x, y = _first_tensor(inputs), _first_tensor(output)
            if y is not None and y.ndim == 4:
                maps[name] = attention_map(x, y, mode).cpu()
        return record

    was_training = model.training
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(name)))
        model.eval()
        device = next(model.parameters()).device
        model(gathers.to(device, torch.float32))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: maps[name] for name in names if name in maps}
