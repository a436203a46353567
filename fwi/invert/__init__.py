"""DL-initialised full-waveform inversion: refine a network's (or any) starting model against the observed gathers.

``python -m fwi.invert --data FILE --split test --indices 0:24 --start run:RUNDIR --out DIR`` (see `fwi.invert.cli`);
library use: ``refine(run_or_survey, observed_raw, start_velocity, salt_prob, RefineConfig(...)) -> RefineResult``,
or ``refine_batches(..., batch_size=k)`` to refine many models k at a time (bounded memory) into one result.

Modules: config (`RefineConfig`, `RefineResult`), checks (`check_inputs`), core (the loop: `refine`, `run_stage`,
`iteration`), state (`RefineState`, resume), batches (`refine_batches`), dataset (observed data from an fwi dataset),
starts, parsing (``--indices`` / ``--schedule`` / ``--start``), outputs (the --out folder), params, optimize,
precondition, filters, misfits, network_prior, best (``keep_best``), cli.
"""

from fwi.invert.batches import merge_history, merge_results, refine_batches
from fwi.invert.checks import check_inputs
from fwi.invert.config import RefineConfig, RefineResult
from fwi.invert.core import refine, score

__all__ = ["RefineConfig", "RefineResult", "check_inputs", "merge_history", "merge_results", "refine",
           "refine_batches", "score"]
