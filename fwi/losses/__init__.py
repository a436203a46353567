"""Training losses (`FWILoss`: supervised velocity, salt mask, physics-informed data misfit) and their config.

``fwi.losses.config`` (`LossConfig`) imports no torch; the loss terms (``fwi.losses.terms``) are imported on first
use of their names (PEP 562), so that reading a config file does not load torch and deepwave.
"""

from __future__ import annotations

import importlib
from typing import Any

_TERMS = ("DICE_SMOOTH", "FWILoss", "bce_dice_loss")

__all__ = ["LossConfig", *_TERMS]


def __getattr__(name: str) -> Any:
    if name == "LossConfig":
        from fwi.losses.config import LossConfig
        return LossConfig
    module = importlib.import_module("fwi.losses.terms")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
