"""Evaluation of a run on one split of an fwi dataset (`evaluate_split`)."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Subset

from fwi.data.dataset import FWIDataset
from fwi.evaluation.inference import progress_bar, resolve_batch_size, score_network, scoring_batch
from fwi.evaluation.results import Evaluation
from fwi.run import LoadedRun


def dataset_path(run: LoadedRun, data: str | os.PathLike | None = None) -> Path:
    """The dataset to evaluate on: ``data``, else the one recorded in the run's checkpoint; it must exist."""
    path = Path(data or run.data)
    if not str(path) or not path.exists():
        hint = "" if data else " (the path recorded in the checkpoint); pass --data PATH"
        raise FileNotFoundError(f"dataset {path} does not exist{hint}")
    return path


def evaluate_split(run: LoadedRun, split: str = "test", data: str | os.PathLike | None = None,
                   batch_size: int | None = None, misfit: bool = True, samples: Sequence[int] | None = None,
                   progress: bool | None = None) -> Evaluation:
    """Per-sample metrics of the run on one split of an fwi dataset (default: the dataset it was trained on).

    ``samples``: dataset indices to evaluate (default all). ``misfit``: also re-model every prediction for the data
    misfit (one forward modelling per sample).
    """
    path = dataset_path(run, data)
    batch_size = resolve_batch_size(run, batch_size)
    raw_set = FWIDataset(path, split, normalize=False, time_decimation=run.time_decimation)
    shape = tuple(raw_set.survey.data_shape)
    shape = (shape[0], math.ceil(shape[1] / run.time_decimation), shape[2])
    if shape != run.data_shape or raw_set.survey.shape != run.grid:
        raise ValueError(f"{path} ({split}) holds gathers {shape} on a {raw_set.survey.shape} grid after time "
                         f"decimation {run.time_decimation}, but {run.name} was trained on {run.data_shape} on "
                         f"{run.grid}")
    if raw_set.survey != run.survey:
        warnings.warn(f"{path} was modelled with another survey than {run.name}'s training data; predictions are "
                      "re-modelled with the dataset's survey", stacklevel=2)
    indices = list(range(len(raw_set))) if samples is None else [int(i) for i in samples]
    bad = [i for i in indices if not 0 <= i < len(raw_set)]
    if bad:
        raise ValueError(f"sample indices {bad[:5]} are outside the {split} split (0 .. {len(raw_set) - 1})")
    normalizer = run.normalizer
    loader = DataLoader(Subset(raw_set, indices), batch_size=batch_size)

    def batches() -> Iterator[dict[str, Any]]:
        for b in progress_bar(loader, len(loader), f"{run.name} {split}", progress):
            yield scoring_batch(b["index"].numpy(), b["gathers"], b["velocity"][:, 0], b["salt_mask"][:, 0], normalizer)

    result = score_network(run, batches(), raw_set.survey, misfit)

    def observed(positions: Sequence[int]) -> torch.Tensor:
        return torch.stack([raw_set[int(result["index"][p])]["gathers"] for p in positions])

    def inputs(positions: Sequence[int]) -> torch.Tensor:
        return normalizer.gathers(observed(positions))

    return Evaluation(name=split, run=run, survey=raw_set.survey, index=result["index"], metrics=result["metrics"],
                      true_velocity=result["true_v"], pred_velocity=result["pred_v"], true_mask=result["true_m"],
                      pred_mask=result["pred_m"], inputs=inputs, observed=observed,
                      meta={"split": split, "dataset": str(path.resolve()), "misfit": misfit})
