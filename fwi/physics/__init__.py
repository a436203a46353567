"""Acquisition geometry, source wavelet and the deepwave acoustic propagator."""

from fwi.physics.survey import Survey, SurveyError
from fwi.physics.wavelet import ricker
from fwi.physics.forward import PHYSICS_MIN_VELOCITY, clamp_velocity, forward_model

__all__ = ["Survey", "SurveyError", "ricker", "forward_model", "clamp_velocity", "PHYSICS_MIN_VELOCITY"]
