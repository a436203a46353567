"""The observed data of a refinement from an fwi dataset, read through the one decoding path of every gathers reader
(`fwi.data.dataset.FWIDataset` with ``normalize=False``): full-rate, compact (float16 / int16) and time-decimated
files alike.

`dataset_config` fits a `RefineConfig` to the file (a compact file stored at decimation k is observed at k, so the
survey's data step is k * dt); `read_samples` returns the raw gathers, velocities and masks of chosen samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from fwi.data.codec import check_time_decimation
from fwi.data.dataset import FWIDataset
from fwi.data.store import DatasetInfo, read_info
from fwi.invert.config import RefineConfig


def observed_decimation(info: DatasetInfo, requested: int | None = None) -> int:
    """The time decimation of the observed gathers: ``requested`` (None: as the file stores them). A file stored at
    decimation k > 1 holds no other rate: anything but k is refused (`fwi.data.codec.check_time_decimation`, the
    rule every reader applies)."""
    if requested is None:
        return info.storage.time_decimation
    check_time_decimation(info.storage, requested, info.path)
    return requested


def dataset_config(config: RefineConfig, path: str | os.PathLike, time_decimation: int | None = None
                   ) -> tuple[RefineConfig, DatasetInfo]:
    """``config`` observing the dataset's gathers at ``time_decimation`` (None: as stored, `observed_decimation`),
    checked against the dataset's survey (cut-offs below the data's Nyquist, ...); and the dataset's `DatasetInfo`."""
    info = read_info(path)
    config = replace(config, time_decimation=observed_decimation(info, time_decimation))
    config.validate(info.survey)
    return config, info


@dataclass
class Samples:
    """Chosen samples of one split, raw (not normalised)."""

    gathers: torch.Tensor  # (B, S, ceil(nt / k), R) decoded float32 amplitudes at time decimation k
    velocity: torch.Tensor  # (B, nz, nx) m/s
    salt_mask: torch.Tensor  # (B, nz, nx) float in {0, 1}


def read_samples(path: str | os.PathLike, split: str, indices: Sequence[int], time_decimation: int) -> Samples:
    """The samples ``indices`` of ``split`` through `FWIDataset` (decoded, decimated by ``time_decimation`` when the
    file is at full rate, checked finite)."""
    raw = FWIDataset(path, split, normalize=False, time_decimation=time_decimation)
    items = [raw[int(i)] for i in indices]
    return Samples(gathers=torch.stack([s["gathers"] for s in items]),
                   velocity=torch.stack([s["velocity"][0] for s in items]),
                   salt_mask=torch.stack([s["salt_mask"][0] for s in items]))
