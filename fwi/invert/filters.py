"""Differentiable zero-phase low-pass filter for multiscale frequency continuation (Bunks et al., 1995).

Observed and modelled gathers are filtered with the same filter, so early stages fit only the low frequencies,
where the starting model is within half a period of the data (less cycle skipping), and later stages add the rest.
"""

from __future__ import annotations

import math

import torch


class FrequencyError(ValueError):
    """A cut-off frequency the data cannot represent."""


def nyquist(dt: float) -> float:
    """Nyquist frequency (Hz) of data sampled every ``dt`` seconds."""
    return 0.5 / dt


def check_cutoff(cutoff: float | None, dt: float) -> None:
    """Raise `FrequencyError` unless ``cutoff`` is None (full band) or in (0, Nyquist)."""
    if cutoff is None:
        return
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise FrequencyError(f"low-pass cut-off must be a positive frequency in Hz, got {cutoff}")
    if cutoff >= nyquist(dt):
        raise FrequencyError(f"low-pass cut-off {cutoff:g} Hz is at or above the Nyquist frequency "
                             f"{nyquist(dt):g} Hz of the data (dt = {dt:g} s)")


def butterworth_response(freqs: torch.Tensor, cutoff: float, order: int = 4) -> torch.Tensor:
    """Zero-phase (forward-backward) Butterworth magnitude 1 / (1 + (f / fc)^(2 order)); 0.5 at the cut-off."""
    return 1.0 / (1.0 + (freqs.abs() / cutoff) ** (2 * order))


def lowpass(x: torch.Tensor, cutoff: float | None, dt: float, order: int = 4, dim: int = -2) -> torch.Tensor:
    """Low-pass ``x`` along ``dim`` (default the T axis of (..., T, R) gathers); ``cutoff=None`` returns ``x``.

    Zero-phase Butterworth response applied in the frequency domain after zero-padding to twice the length (no
    wrap-around); a linear operator, so it is differentiable and its adjoint is itself.
    """
    check_cutoff(cutoff, dt)
    if cutoff is None:
        return x
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    n_fft = 2 * n
    spectrum = torch.fft.rfft(x, n=n_fft, dim=-1)
    freqs = torch.fft.rfftfreq(n_fft, d=dt, device=x.device)
    response = butterworth_response(freqs, cutoff, order).to(spectrum.real.dtype)
    y = torch.fft.irfft(spectrum * response, n=n_fft, dim=-1)[..., :n]
    return y.movedim(-1, dim)


def time_gain(x: torch.Tensor, power: float, dim: int = -2) -> torch.Tensor:
    """``x`` times ``(t / T)^power`` along ``dim`` (the T axis of (..., T, R) gathers): the classic t^p gain that
    offsets geometric spreading, so that late (deep) reflections weigh in a misfit as much as the early arrivals
    (``power = 0`` returns ``x``). Linear and diagonal: differentiable, its own adjoint."""
    if power == 0:
        return x
    n = x.shape[dim]
    shape = [1] * x.ndim
    shape[dim] = n
    t = (torch.arange(1, n + 1, dtype=x.dtype, device=x.device) / n).pow(power)
    return x * t.view(shape)
