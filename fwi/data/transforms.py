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


def decimate_time(x: Array, factor: int, axis: int = -2) -> Array:
    """Anti-aliased decimation along ``axis`` (default the T axis of (..., T, R) gathers).

    The signal is low-passed by zeroing FFT bins above 0.8 x the new Nyquist frequency, then every ``factor``-th
    sample is kept. The same function is applied to observed and modelled gathers, so they stay comparable.
    """
    if factor == 1:
        return x
    if factor < 1:
        raise ValueError(f"time decimation factor must be >= 1, got {factor}")
    is_numpy = not isinstance(x, torch.Tensor)
    t = torch.as_tensor(x)
    t = t.movedim(axis, -1)
    n = t.shape[-1]
    spectrum = torch.fft.rfft(t, dim=-1)
    keep = int(0.8 * (n // factor) / 2) + 1
    spectrum[..., keep:] = 0
    t = torch.fft.irfft(spectrum, n=n, dim=-1)[..., ::factor].movedim(-1, axis)
    return t.numpy() if is_numpy else t


def mirror_sample(gathers: Array, velocity: Array, *extra: Array) -> tuple:
    """Left-right mirror of one sample: gathers (S, T, R) reverse shots and receivers; grids (..., nz, nx) flip x.

    For a survey symmetric about the model's centre this is an exact symmetry of the wave equation.
    """
    def flip(a, dims):
        return torch.flip(a, dims) if isinstance(a, torch.Tensor) else np.ascontiguousarray(np.flip(a, dims))
    return (flip(gathers, (-3, -1)), flip(velocity, (-1,)), *(flip(e, (-1,)) for e in extra))
