"""DL-initialised full-waveform inversion: refine a network's (or any) starting model against the observed gathers.

``python -m fwi.invert --data FILE --split test --indices 0:24 --start run:RUNDIR --out DIR`` (see `fwi.invert.cli`);
library use: ``refine(run_or_survey, observed_raw, start_velocity, salt_prob, RefineConfig(...)) -> RefineResult``.
"""

from fwi.invert.core import RefineConfig, RefineResult, check_inputs, refine, score

__all__ = ["RefineConfig", "RefineResult", "check_inputs", "refine", "score"]
