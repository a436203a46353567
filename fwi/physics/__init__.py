"""Acquisition geometry, source wavelet and the deepwave acoustic propagator."""

from fwi.physics.survey import Survey, SurveyError
from fwi.physics.wavelet import ricker
from fwi.physics.forward import forward_model

__all__ = ["Survey", "SurveyError", "ricker", "forward_model"]
