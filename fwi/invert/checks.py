"""Input checks of a refinement: `check_inputs` raises one readable line for anything `refine` cannot use, before
anything runs or is written."""

from __future__ import annotations

import torch

from fwi.invert.config import RefineConfig
from fwi.invert.params import NEEDS_SALT
from fwi.physics import Survey, SurveyError


def check_inputs(survey: Survey, observed: torch.Tensor, start: torch.Tensor, salt_prob: torch.Tensor | None,
                 config: RefineConfig) -> None:
    """Raise ValueError / SurveyError for inputs the refinement cannot use (one readable line each)."""
    config.validate(survey)
    if start.ndim != 3 or tuple(start.shape[1:]) != survey.shape:
        raise SurveyError(f"starting models must be (B, {survey.nz}, {survey.nx}) for this survey, got "
                          f"{tuple(start.shape)}")
    if not torch.isfinite(start).all():
        raise ValueError("the starting model contains NaN or inf values")
    lo, hi = float(start.min()), float(start.max())
    if lo <= 0 or hi > survey.max_velocity:
        raise ValueError(f"the starting model spans {lo:g} .. {hi:g} m/s; it must be positive and at most the "
                         f"survey's max_velocity {survey.max_velocity:g} m/s")
    t = -(-survey.nt // config.time_decimation)
    expected = (start.shape[0], survey.n_sources, t, survey.n_receivers)
    if tuple(observed.shape) != expected:
        raise ValueError(f"observed gathers {tuple(observed.shape)} do not match the survey: expected (B, S, T, R) = "
                         f"{expected} (time decimation {config.time_decimation})")
    if not torch.isfinite(observed).all():
        raise ValueError("the observed gathers contain NaN or inf values")
    if not observed.abs().flatten(1).amax(1).gt(0).all():
        raise ValueError("observed gathers of some model are all zero")
    if config.param in NEEDS_SALT:
        if salt_prob is None:
            raise ValueError(f"param {config.param!r} needs the network's salt probability (start from run:RUNDIR)")
        if tuple(salt_prob.shape) != tuple(start.shape):
            raise ValueError(f"salt probability {tuple(salt_prob.shape)} does not match the models "
                             f"{tuple(start.shape)}")
        if not torch.isfinite(salt_prob).all() or salt_prob.min() < 0 or salt_prob.max() > 1:
            raise ValueError("salt probability must lie in [0, 1]")
