"""Settings of an FWI refinement (``--refine-*``): the `RefineConfig` and the samples, checked against the dataset
before anything runs."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

from fwi.evaluation.split import dataset_path
from fwi.invert import RefineConfig
from fwi.invert.dataset import dataset_config
from fwi.invert.filters import FrequencyError
from fwi.invert.parsing import parse_indices, parse_schedule
from fwi.invert.params import PARAMETERISATIONS
from fwi.run import LoadedRun


#: Parameterisations ``--refine-method`` accepts (`fwi.invert.params`, and the network as a prior).
REFINE_METHODS = (*PARAMETERISATIONS, "network")


def refine_config(iterations: int | None = None, schedule: Sequence[float | None] | None = None,
                  method: str | None = None, lr: float | None = None, depth_power: float | None = None,
                  mute_cells: int | None = None, keep_best: bool | None = None) -> RefineConfig:
    """`fwi.invert.RefineConfig` (its defaults are the method as measured best) with only the given settings changed."""
    if iterations is not None and iterations < 1:
        raise ValueError(f"--refine-iterations must be >= 1, got {iterations}")
    if method is not None and method not in REFINE_METHODS:
        raise ValueError(f"--refine-method {method!r}: choose one of {', '.join(REFINE_METHODS)}")
    if lr is not None and not lr > 0:
        raise ValueError(f"--refine-lr must be a positive step in km/s, got {lr}")
    if mute_cells is not None and mute_cells < 0:
        raise ValueError(f"--refine-mute-cells must be >= 0, got {mute_cells}")
    changes = {"iterations": iterations, "schedule": None if schedule is None else tuple(schedule), "param": method,
               "lr": lr, "depth_power": depth_power, "mute_cells": mute_cells, "keep_best": keep_best}
    return replace(RefineConfig(), **{k: v for k, v in changes.items() if v is not None})


def parse_refine_schedule(text: str) -> tuple[float | None, ...]:
    """``4,8,12,full`` -> (4.0, 8.0, 12.0, None): the stages' low-pass cut-offs in Hz, ``full`` = full band."""
    try:
        return parse_schedule(text)
    except ValueError:
        raise ValueError(f"--refine-schedule {text!r}: give low-pass cut-offs in Hz and 'full' separated by commas, "
                         "e.g. 4,8,12,full") from None


def parse_refine_indices(text: str, n: int, split: str = "test") -> list[int]:
    """``0:24`` or ``0,3,7`` -> dataset indices of a split of ``n`` samples (duplicates dropped, order kept)."""
    try:
        indices = parse_indices(text, n)
    except ValueError:
        indices = []
    if not indices:
        raise ValueError(f"--refine-indices {text!r} selects nothing or leaves the {split} split (0 .. {n - 1}); "
                         "use e.g. 0:24 or 0,3,7")
    return list(dict.fromkeys(indices))


def prepare_refinement(run: LoadedRun, split: str = "test", data: str | os.PathLike | None = None,
                       config: RefineConfig | None = None, indices: str | None = None
                       ) -> tuple[RefineConfig, list[int] | None]:
    """Check a refinement against the dataset before anything runs: the checked config and the dataset indices to
    refine (None: every sample of the split); ``indices`` as ``--refine-indices`` takes them."""
    path = dataset_path(run, data)
    try:
        config, info = dataset_config(config or RefineConfig(), path)  # observed as the dataset stores them
    except FrequencyError as exc:
        raise FrequencyError(f"--refine-schedule: {exc}") from None
    if split not in info.sizes:
        raise ValueError(f"{path} has no {split!r} split (it has {', '.join(info.sizes) or 'none'})")
    chosen = None if indices is None else parse_refine_indices(indices, info.sizes[split], split)
    if config.param == "network" and info.survey != run.survey:
        raise ValueError(f"--refine-method network re-runs {run.name}'s network, but {path} was modelled with another "
                         "survey than its training data; choose another method")
    return config, chosen
