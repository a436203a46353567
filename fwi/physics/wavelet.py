"""Source wavelets (thin wrapper over deepwave's)."""

from __future__ import annotations

import deepwave
import torch


def ricker(freq: float, nt: int, dt: float, peak_time: float | None = None) -> torch.Tensor:
    """Ricker wavelet (nt,) with centre frequency ``freq`` peaking at ``peak_time`` (default 1.5 / freq)."""
    if peak_time is None:
        peak_time = 1.5 / freq
    return deepwave.wavelets.ricker(freq, nt, dt, peak_time)
