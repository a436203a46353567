"""fwi: attention U-Nets for data-driven full-waveform inversion of salt bodies."""

__version__ = "0.1.0"
