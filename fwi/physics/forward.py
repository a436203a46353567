"""Differentiable acoustic forward modelling with deepwave's scalar propagator."""

from __future__ import annotations

from typing import Literal, Sequence

import deepwave
import torch
from einops import rearrange, repeat

from fwi.physics.survey import Survey, SurveyError

#: Lower clamp (m/s) of predicted velocities before forward modelling; see `clamp_velocity`.
PHYSICS_MIN_VELOCITY = 1000.0


def clamp_velocity(velocity_ms: torch.Tensor, survey: Survey) -> torch.Tensor:
    """Clamp velocities (m/s) into [PHYSICS_MIN_VELOCITY, survey.max_velocity] before forward modelling.

    Why: a network's output is unconstrained physics-wise (a de-normalised prediction can leave the training range).
    Above ``survey.max_velocity`` the time step deepwave derives from that value is no longer CFL-stable (the
    propagation would blow up; `Survey.check_velocity` rejects it). Near or below zero the wave equation is
    meaningless, and very low velocities give wavelengths of a few cells (strong numerical dispersion, huge and noisy
    gradients). 1000 m/s is below water (~1480 m/s) and every sedimentary rock, so a sensible prediction is never
    touched. Clamped cells get no gradient through the propagator.
    """
    if PHYSICS_MIN_VELOCITY >= survey.max_velocity:
        raise ValueError(f"survey.max_velocity ({survey.max_velocity:g} m/s) must exceed the physics lower clamp "
                         f"{PHYSICS_MIN_VELOCITY:g} m/s")
    return velocity_ms.clamp(PHYSICS_MIN_VELOCITY, survey.max_velocity)


def forward_model(
    velocity: torch.Tensor,
    survey: Survey,
    *,
    shots: Sequence[int] | torch.Tensor | None = None,
    storage_mode: Literal["device", "cpu", "disk", "none"] | None = None,
    storage_compression: bool = False,
    gradient_sampling_interval: int = 1,
    checkpoint_segments: int | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Model shot gathers for a batch of velocity models.

    velocity: (B, nz, nx) in m/s (a (nz, nx) model is treated as B = 1).
    shots: indices of the shots to model (default all S); a (B, k) tensor picks k shots per model.
    Returns gathers (B, S', T, R), differentiable with respect to ``velocity``.

    All B x S' shots go to deepwave in one call with a batched model (each shot sees its own model).
    Memory: ``storage_mode`` ("cpu"/"disk" move the wavefield history off the device), ``storage_compression``
    (lossy 8-bit history, ~4x smaller), ``gradient_sampling_interval`` (store every k-th step; must divide nt) and
    ``checkpoint_segments`` (recompute the forward pass in segments) bound what backpropagation keeps.
    """
    squeeze = velocity.ndim == 2
    if squeeze:
        velocity = velocity[None]
    if velocity.ndim != 3:
        raise SurveyError(f"velocity must be (B, nz, nx) or (nz, nx), got shape {tuple(velocity.shape)}")
    if check:
        survey.check_velocity(velocity.detach())
    batch, device, dtype = velocity.shape[0], velocity.device, velocity.dtype

    src_cells = survey.source_cells().to(device)  # (S, 1, 2)
    rec_cells = survey.receiver_cells().to(device)  # (S, R, 2)
    if shots is None:
        shot_idx = repeat(torch.arange(survey.n_sources, device=device), "k -> b k", b=batch)
    else:
        shot_idx = torch.as_tensor(shots, device=device, dtype=torch.long)
        if shot_idx.ndim == 1:
            shot_idx = repeat(shot_idx, "k -> b k", b=batch)
        if shot_idx.shape[0] != batch or shot_idx.ndim != 2:
            raise SurveyError(f"shots must be (k,) or ({batch}, k), got {tuple(shot_idx.shape)}")
        if shot_idx.numel() and (shot_idx.min() < 0 or shot_idx.max() >= survey.n_sources):
            raise SurveyError(f"shot indices must lie in 0 .. {survey.n_sources - 1}")
    n_shots = shot_idx.shape[1]
    flat = rearrange(shot_idx, "b k -> (b k)")

    models = repeat(velocity, "b z x -> (b k) z x", k=n_shots)
    amplitudes = repeat(survey.wavelet().to(device=device, dtype=dtype), "t -> n 1 t", n=flat.numel())
    out = deepwave.scalar(
        models,
        survey.dx,
        survey.dt,
        source_amplitudes=amplitudes,
        source_locations=src_cells[flat],
        receiver_locations=rec_cells[flat],
        accuracy=survey.accuracy,
        pml_width=survey.pml_width,
        pml_freq=survey.freq,
        max_vel=survey.max_velocity,
        model_gradient_sampling_interval=gradient_sampling_interval,
        checkpoint_segments=checkpoint_segments,
        storage_mode=storage_mode,
        storage_compression=storage_compression,
    )
    gathers = rearrange(out.receiver_amplitudes, "(b k) r t -> b k t r", b=batch)
    return gathers[0] if squeeze else gathers
