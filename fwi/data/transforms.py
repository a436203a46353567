"""OpenFWI normalisations and their inverses (Deng et al., OpenFWI, NeurIPS 2022 Datasets and Benchmarks).

gathers:  g -> sign(g) log1p(|g|) -> min-max to [-1, 1]
velocity: v -> min-max to [-1, 1]
Works on numpy arrays and torch tensors alike (the result has the input's type).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _lib(x):
    return torch if isinstance(x, torch.Tensor) else np


def signed_log1p(x: Array) -> Array:
    xp = _lib(x)
    return xp.sign(x) * xp.log1p(xp.abs(x))


def signed_expm1(y: Array) -> Array:
    xp = _lib(y)
    return xp.sign(y) * xp.expm1(xp.abs(y))


@dataclass(frozen=True)
class Normalizer:
    """Min-max bounds: velocity in m/s, gathers in the signed-log1p domain."""

    v_min: float
    v_max: float
    g_min: float
    g_max: float

    def __post_init__(self) -> None:
        if not (self.v_max > self.v_min and self.g_max > self.g_min):
            raise ValueError(f"normalisation bounds must satisfy min < max, got {self}")

    @classmethod
    def from_dict(cls, d: Mapping[str, float]) -> "Normalizer":
        return cls(**{k: float(d[k]) for k in ("v_min", "v_max", "g_min", "g_max")})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def velocity(self, v: Array) -> Array:
        """m/s -> [-1, 1]."""
        return 2 * (v - self.v_min) / (self.v_max - self.v_min) - 1

    def velocity_inverse(self, x: Array) -> Array:
        """[-1, 1] -> m/s."""
        return (x + 1) / 2 * (self.v_max - self.v_min) + self.v_min

    def gathers(self, g: Array) -> Array:
        """Receiver amplitudes -> [-1, 1] (signed log, then min-max)."""
        return 2 * (signed_log1p(g) - self.g_min) / (self.g_max - self.g_min) - 1

    def gathers_inverse(self, x: Array) -> Array:
        return signed_expm1((x + 1) / 2 * (self.g_max - self.g_min) + self.g_min)
