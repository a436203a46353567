"""Gradient preconditioning of the velocity gradient (B, nz, nx): muting, illumination and depth scaling, smoothing.

Applied as a hook on the velocity tensor, so it acts on dL/dv whatever the parameterisation behind it (velocity
cells, salt/sediment fields or network weights).

* muting: zero the gradient in the top ``mute_cells`` rows (sources/receivers lie there; the gradient has a
  singular footprint at the acquisition), with a cosine taper over as many rows below;
* illumination: divide by the source-side pseudo-Hessian diag(sum_t u^2) (Shin, Jang & Min, 2001), computed once
  from the starting model with a deepwave forward callback, stabilised by ``eps`` x its maximum;
* depth scaling: multiply by (z / z_max)^p, a cheap stand-in for the geometric spreading loss with depth;
* smoothing: a separable Gaussian of ``sigma`` cells (reflect padding), which removes the high-wavenumber
  acquisition footprint and favours the long-wavelength update FWI needs first;
* normalisation (``quantile`` q > 0): divide each model's gradient by its q-quantile of |g| and clip to [-1, 1] (per
  km/s of velocity), so that a gradient step of lr moves the best-constrained cells by lr km/s and keeps the
  gradient's shape (deepwave's examples clip at the 98th percentile); last, after every other option.
"""

from __future__ import annotations

from dataclasses import dataclass

import deepwave
import torch
import torch.nn.functional as F
from einops import repeat

from fwi.physics import Survey
from fwi.physics.depth import depth_weights


def gaussian_kernel(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1D Gaussian with radius ceil(3 sigma)."""
    radius = max(1, int(torch.ceil(torch.tensor(3.0 * sigma)).item()))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, nz, nx) fields with reflect padding; ``sigma`` in cells (0 = identity)."""
    if sigma <= 0:
        return field
    k = gaussian_kernel(sigma, field.dtype, field.device)
    r = (k.numel() - 1) // 2
    x = field[:, None]
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect" if x.shape[-2] > r else "replicate"), k.view(1, 1, -1, 1))
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect" if x.shape[-1] > r else "replicate"), k.view(1, 1, 1, -1))
    return x[:, 0]


def mute_taper(nz: int, mute_cells: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(nz, 1) weights: 0 in the top ``mute_cells`` rows, a cosine ramp to 1 over the next ``mute_cells`` rows."""
    w = torch.ones(nz, 1, dtype=dtype, device=device)
    if mute_cells <= 0:
        return w
    w[:mute_cells] = 0
    ramp = torch.arange(1, mute_cells + 1, dtype=dtype, device=device) / (mute_cells + 1)
    end = min(nz, 2 * mute_cells)
    w[mute_cells:end, 0] = (0.5 - 0.5 * torch.cos(torch.pi * ramp))[: end - mute_cells]
    return w


@torch.no_grad()
def source_illumination(velocity: torch.Tensor, survey: Survey, sample_every: int = 4) -> torch.Tensor:
    """(B, nz, nx) source-side illumination sum_shots sum_t u(x, t)^2 of velocity (B, nz, nx) m/s (one forward run)."""
    batch, n_src = velocity.shape[0], survey.n_sources
    device, dtype = velocity.device, velocity.dtype
    energy = torch.zeros(batch * n_src, survey.nz, survey.nx, dtype=dtype, device=device)

    def accumulate(state) -> None:
        u = state.get_wavefield("wavefield_0", view="inner", mode="read")
        energy.add_(u.reshape(energy.shape).to(dtype).pow(2))

    deepwave.scalar(
        repeat(velocity, "b z x -> (b k) z x", k=n_src), survey.dx, survey.dt,
        source_amplitudes=repeat(survey.wavelet().to(device=device, dtype=dtype), "t -> n 1 t", n=batch * n_src),
        source_locations=survey.source_cells().to(device).repeat(batch, 1, 1),
        accuracy=survey.accuracy, pml_width=survey.pml_width, pml_freq=survey.freq, max_vel=survey.max_velocity,
        forward_callback=accumulate, callback_frequency=sample_every)
    return energy.view(batch, n_src, survey.nz, survey.nx).sum(1)


@dataclass
class Preconditioner:
    """Callable (B, nz, nx) gradient -> preconditioned gradient; an identity when every option is off."""

    smooth_sigma: float = 0.0
    depth_power: float = 0.0
    mute_cells: int = 0
    illumination: torch.Tensor | None = None  # (B, nz, nx) pseudo-Hessian diagonal, or None
    illumination_eps: float = 0.01
    quantile: float = 0.0  # > 0: normalise each model's gradient by this quantile of |g| and clip to [-1, 1]

    @property
    def active(self) -> bool:
        return bool(self.smooth_sigma > 0 or self.depth_power or self.mute_cells > 0 or self.illumination is not None
                    or self.quantile > 0)

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        g = grad
        nz = g.shape[-2]
        if self.illumination is not None:
            h = self.illumination.to(g)
            h = h + self.illumination_eps * h.flatten(1).amax(1).view(-1, 1, 1)
            g = g / (h / h.flatten(1).amax(1).view(-1, 1, 1))
        if self.depth_power:
            g = g * depth_weights(nz, self.depth_power, g.dtype, g.device)
        if self.mute_cells > 0:
            g = g * mute_taper(nz, self.mute_cells, g.dtype, g.device)
        if self.smooth_sigma > 0:
            g = gaussian_smooth(g, self.smooth_sigma)
        if self.mute_cells > 0:  # smoothing must not leak the update back into the muted rows
            g = g * mute_taper(nz, self.mute_cells, g.dtype, g.device)
        if self.quantile > 0:
            scale = torch.quantile(g.abs().flatten(1).float(), self.quantile, dim=1).to(g.dtype)
            g = (g / scale.clamp_min(torch.finfo(g.dtype).tiny).view(-1, 1, 1)).clamp(-1.0, 1.0)
            g = g / 1000.0  # the velocity is in m/s, the parameterisations' variables in km/s: unit there
        return g
