"""Data misfits, each (B, S, T, R) modelled and observed gathers -> (B,) per-model misfit, in a registry.

* ``l2``: relative least squares ||m - o||^2 / ||o||^2 (Tarantola, 1984).
* ``correlation``: trace-normalised zero-lag correlation, mean over traces of 1 - <m, o> / (|m| |o|)
  (the "global correlation" norm of Choi & Alkhalifah, 2012): blind to amplitudes, kinematics only.
* ``envelope``: relative L2 of the Hilbert envelopes (Bozdag et al., 2011; Wu, Luo & Wu, 2014): the envelope carries
  lower frequencies than the data, so it is less prone to cycle skipping.
"""

from __future__ import annotations

from typing import Callable

import torch

from fwi.registry import Registry

Misfit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MISFITS: Registry[Misfit] = Registry("misfit")
register = MISFITS.register
_EPS = 1e-12


def get_misfit(name: str) -> Misfit:
    """The misfit registered as ``name`` (ValueError naming the valid ones otherwise)."""
    return MISFITS.get(name)


def _check(modelled: torch.Tensor, observed: torch.Tensor) -> None:
    if modelled.shape != observed.shape or modelled.ndim != 4:
        raise ValueError(f"modelled {tuple(modelled.shape)} and observed {tuple(observed.shape)} gathers must both be "
                         "(B, S, T, R)")


@register("l2")
def l2(modelled: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    _check(modelled, observed)
    scale = observed.flatten(1).pow(2).sum(1).clamp_min(_EPS)
    return (modelled - observed).flatten(1).pow(2).sum(1) / scale


@register("correlation")
def correlation(modelled: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    _check(modelled, observed)
    m, o = modelled.transpose(-1, -2), observed.transpose(-1, -2)  # (B, S, R, T): one row per trace
    o_norm = o.norm(dim=-1)
    live = (o_norm > _EPS * o_norm.amax(dim=(-1, -2), keepdim=True).clamp_min(_EPS)).to(m.dtype)
    m_hat = m / (m.pow(2).sum(-1, keepdim=True) + _EPS).sqrt()
    o_hat = o / o_norm[..., None].clamp_min(_EPS)
    per_trace = (1.0 - (m_hat * o_hat).sum(-1)) * live
    return per_trace.flatten(1).sum(1) / live.flatten(1).sum(1).clamp_min(1.0)


def envelope_of(x: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Instantaneous amplitude |x + i H(x)| along ``dim`` (analytic signal by FFT), smooth at zero."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    spectrum = torch.fft.fft(x, dim=-1)
    h = torch.zeros(n, dtype=x.dtype, device=x.device)
    h[0] = 1
    if n % 2 == 0:
        h[n // 2] = 1
        h[1:n // 2] = 2
    else:
        h[1:(n + 1) // 2] = 2
    analytic = torch.fft.ifft(spectrum * h, dim=-1)
    env = (analytic.real.pow(2) + analytic.imag.pow(2) + _EPS * x.detach().abs().amax().pow(2) + 1e-30).sqrt()
    return env.movedim(-1, dim)


@register("envelope")
def envelope(modelled: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    _check(modelled, observed)
    em, eo = envelope_of(modelled), envelope_of(observed)
    return (em - eo).flatten(1).pow(2).sum(1) / eo.flatten(1).pow(2).sum(1).clamp_min(_EPS)
