"""Evaluation of a run on external velocity models: model files loaded and checked, forward-modelled with the
run's survey, inverted and scored (`evaluate_models`)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from fwi.data.dataset import SALT_THRESHOLD
from fwi.evaluation.inference import progress_bar, resolve_batch_size, score_network, scoring_batch
from fwi.evaluation.results import Evaluation
from fwi.io.velocity_files import load_velocity_file, resample_models
from fwi.run import LoadedRun


def check_models(velocity: np.ndarray, run: LoadedRun, source: str = "the models") -> None:
    """Raise ValueError (`fwi.physics.SurveyError`) for (N, nz, nx) models that do not fit the run's grid or cannot
    be propagated by its survey (`Survey.check_velocity`)."""
    if velocity.ndim != 3:
        raise ValueError(f"{source}: expected (N, nz, nx) velocity models, got shape {velocity.shape}")
    run.survey.check_velocity(velocity, name=source, shape_hint="; pass --resample to resample them bilinearly")


def prepare_external(path: str | os.PathLike, run: LoadedRun, key: str | None = None, split: str = "test",
                     resample: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Load, (optionally) resample and check the models of one file; returns them and a description for the report."""
    path = Path(path)
    velocity, dx = load_velocity_file(path, key, split)
    meta: dict[str, Any] = {"source": str(path.resolve()), "original_shape": list(velocity.shape[1:])}
    if resample:  # before resampling, which would smear a NaN; the grid is checked after it
        run.survey.check_velocity(velocity, name=str(path), check_shape=False)
    if dx is not None and not math.isclose(dx, run.survey.dx, rel_tol=1e-6):
        meta["file_dx"] = dx
        print(f"note: {path} has {dx:g} m cells, the run's survey {run.survey.dx:g} m; the model is used on the run's "
              "grid" + (" after resampling" if resample else " cell for cell"), file=sys.stderr)
    if resample and tuple(velocity.shape[1:]) != run.grid:
        velocity = resample_models(velocity, run.grid)
        meta["resampled_to"] = list(run.grid)
    check_models(velocity, run, str(path))
    lo, hi = float(velocity.min()), float(velocity.max())
    if lo < run.normalizer.v_min - 1 or hi > run.normalizer.v_max + 1:
        print(f"note: {path} spans {lo:.0f}-{hi:.0f} m/s, outside the training range {run.normalizer.v_min:.0f}-"
              f"{run.normalizer.v_max:.0f} m/s that the network can predict", file=sys.stderr)
    return velocity, meta


def evaluate_models(run: LoadedRun, velocity: np.ndarray | torch.Tensor, name: str = "external",
                    batch_size: int | None = None, misfit: bool = True, salt_threshold: float = SALT_THRESHOLD,
                    progress: bool | None = None, meta: dict[str, Any] | None = None) -> Evaluation:
    """Forward-model velocities (N, nz, nx) in m/s on the run's grid with its survey, invert them and score.

    The pipeline is the training one: `forward_model` -> `decimate_time` -> the run's normaliser -> the network.
    The salt mask of a model is ``velocity >= salt_threshold``.
    """
    v = torch.as_tensor(np.asarray(velocity, dtype=np.float32))
    check_models(v.numpy(), run, name)
    batch_size = resolve_batch_size(run, batch_size)
    normalizer = run.normalizer
    starts = range(0, len(v), batch_size)

    def batches() -> Iterator[dict[str, Any]]:
        for start in progress_bar(starts, len(starts), f"{run.name} {name}", progress):
            chunk = v[start:start + batch_size]
            raw = run.model_data(chunk).cpu()
            yield scoring_batch(np.arange(start, start + len(chunk)), raw, chunk, (chunk >= salt_threshold).float(),
                         normalizer)

    result = score_network(run, batches(), run.survey, misfit)

    def observed(positions: Sequence[int]) -> torch.Tensor:
        return run.model_data(v[list(positions)]).cpu()

    def inputs(positions: Sequence[int]) -> torch.Tensor:
        return normalizer.gathers(observed(positions))

    return Evaluation(name=name, run=run, survey=run.survey, index=result["index"], metrics=result["metrics"],
                      true_velocity=result["true_v"], pred_velocity=result["pred_v"], true_mask=result["true_m"],
                      pred_mask=result["pred_m"], inputs=inputs, observed=observed,
                      meta={**(meta or {}), "misfit": misfit, "salt_threshold": salt_threshold})
