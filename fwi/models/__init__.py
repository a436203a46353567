"""Networks: attention blocks, the configurable attention U-Net, the mix-attention decoder, InversionNet.

Names are imported on first use (PEP 562), so that ``fwi.models.config`` (the torch-free `ModelConfig`) can be read
without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "fwi.models.config",
    "PLACE_FLAGS": "fwi.models.config",
    "build_model": "fwi.models.build",
    "count_flops": "fwi.models.complexity",
    "count_params": "fwi.models.complexity",
    "create_attn": "fwi.models.attention",
    "create_gate": "fwi.models.attention",
    "list_attn": "fwi.models.attention",
    "list_gates": "fwi.models.attention",
    "InversionNet": "fwi.models.inversionnet",
    "MixAttentionDecoder": "fwi.models.mix_decoder",
    "AttentionUNet": "fwi.models.unet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    try:  # a submodule (``from fwi.models import summary``)
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return __all__
