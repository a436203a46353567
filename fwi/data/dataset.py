"""Torch datasets over the HDF5 layout (`fwi.data.store`) and over OpenFWI's ``.npy`` pairs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from fwi.data.cache import SampleCache
from fwi.data.codec import StorageError, check_decimation_bound, check_time_decimation
from fwi.data.store import DatasetError, read_info
from fwi.data.transforms import Normalizer, decimate_time, mirror_sample, signed_log1p
from fwi.physics import Survey

#: Velocity above which a cell counts as salt when a dataset has no masks of its own (m/s).
SALT_THRESHOLD = 4400.0


class SampleTransform:
    """Normalise, decimate and (optionally) mirror one sample; shared by both datasets.

    Mirroring is exact for a symmetric survey and accepted for one off by at most one cell (OpenFWI's geometry).
    """

    def __init__(self, normalizer: Normalizer | None, survey: Survey, time_decimation: int = 1,
                 mirror: bool = False) -> None:
        if mirror and survey.mirror_mismatch() > 1:
            raise ValueError("mirroring needs a survey (nearly) symmetric about the model's centre; this one is off "
                             f"by {survey.mirror_mismatch()} cells, so disable mirroring")
        self.normalizer, self.time_decimation, self.mirror = normalizer, time_decimation, mirror

    def prepare(self, gathers: np.ndarray, velocity: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The deterministic part: float32 tensors, time decimation, normalisation (what a cache may keep)."""
        g = torch.from_numpy(np.array(gathers, dtype=np.float32))
        v = torch.from_numpy(np.array(velocity, dtype=np.float32))
        m = torch.from_numpy(np.array(mask, dtype=np.float32))
        if self.time_decimation > 1:
            g = decimate_time(g, self.time_decimation)
        if self.normalizer is not None:
            g, v = self.normalizer.gathers(g), self.normalizer.velocity(v)
        return g.contiguous(), v.contiguous(), m.contiguous()

    def augment(self, g: torch.Tensor, v: torch.Tensor, m: torch.Tensor, index: int, coin: tuple[int, ...] = ()
                ) -> dict:
        """The random part: the mirror flip, seeded by ``coin`` + index (e.g. (seed, epoch)) so any worker agrees.

        Mirroring permutes traces and columns only, so it commutes with decimation and normalisation.
        """
        if self.mirror and np.random.default_rng([*coin, index]).random() < 0.5:
            g, v, m = (t.contiguous() for t in mirror_sample(g, v, m))
        return {"gathers": g, "velocity": v, "salt_mask": m, "index": index}

    def __call__(self, gathers: np.ndarray, velocity: np.ndarray, mask: np.ndarray, index: int,
                 coin: tuple[int, ...] = ()) -> dict:
        return self.augment(*self.prepare(gathers, velocity, mask), index, coin)


class FWIDataset(Dataset):
    """One split of an fwi HDF5 dataset.

    Each item is a dict: gathers (S, T / time_decimation, R), velocity (1, nz, nx), salt_mask (1, nz, nx) float,
    index. With ``normalize`` (default) gathers and velocity are in [-1, 1] (OpenFWI normalisation, bounds from the
    file's train split); ``mirror`` flips half of the samples left-right (augmentation), decided by
    (seed, epoch, index) so that the draw does not depend on workers or ranks (call `set_epoch` each epoch).
    The file is opened lazily in each process, so the dataset works with ``DataLoader(num_workers > 0)``.
    ``cache_gb`` > 0 keeps each prepared (decimated, normalised) sample in memory after its first read when the
    whole split fits in that many GiB: reading and decoding a gzip-compressed gather costs about as much as a
    training step on a small network. The cache lives in the process that reads (use it with num_workers=0).
    ``limit`` > 0 uses only the first ``limit`` samples of the split (sample i of a generated split does not depend
    on the split's size, so they are the samples a smaller generation would hold: learning curves);
    ``epoch_samples`` > 0 makes an epoch that many items, cycling over the samples (an epoch of a small subset then
    has as many optimiser steps as one of the full split: learning curves at a fixed number of steps).
    Every read checks that the sample's gathers and velocity are finite (a `DatasetError` naming file, split and
    index otherwise), so training needs no per-step check on the device.

    Compact files (`fwi.data.codec`): gathers are decoded to float32 here. A file stored at time decimation k > 1
    must be read with ``time_decimation == k`` (it is then not decimated again, and the network gets the same
    (S, ceil(nt / k), R) input as from the full-rate file); any other value is a `DatasetError`.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, normalize: bool = True,
                 time_decimation: int = 1, mirror: bool = False, normalizer: Normalizer | None = None,
                 seed: int = 0, cache_gb: float = 0.0, limit: int = 0, epoch_samples: int = 0) -> None:
        self.info = read_info(path)
        if split not in self.info.sizes:
            raise DatasetError(f"{path} has no {split!r} split (it has {', '.join(self.info.sizes) or 'none'})")
        if limit < 0 or limit > self.info.sizes[split]:
            raise DatasetError(f"{path}: cannot use the first {limit} samples of {split!r}, which has "
                               f"{self.info.sizes[split]} (0 = all)")
        if epoch_samples < 0:
            raise ValueError(f"epoch_samples must be >= 0 (0 = one pass over the samples), got {epoch_samples}")
        self.limit, self.epoch_samples = limit, epoch_samples
        self.path, self.split = Path(path), split
        self.survey = self.info.survey
        self.normalizer = normalizer or Normalizer.from_dict(self.info.normalisation)
        self.storage = self.info.storage
        try:
            remaining = check_time_decimation(self.storage, time_decimation, path)
            check_decimation_bound(self.survey, time_decimation)  # a record the decimation leaves usable
        except StorageError as exc:
            raise DatasetError(str(exc)) from None
        self.time_decimation = time_decimation
        self.transform = SampleTransform(self.normalizer if normalize else None, self.survey, remaining, mirror)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self.seed, self.epoch = seed, 0
        self.cache = SampleCache(self.n_samples) if self.cache_bytes() <= cache_gb * 2**30 else None

    @property
    def n_samples(self) -> int:
        """Distinct samples used (the first ``limit`` of the split, or all of it)."""
        return self.limit or self.info.sizes[self.split]

    def cache_bytes(self) -> int:
        """Memory the prepared samples take (float32 gathers after decimation, velocity and mask)."""
        s, t, r = self.survey.data_shape
        t = -(-t // self.time_decimation)
        return self.n_samples * 4 * (s * t * r + 2 * self.survey.nz * self.survey.nx)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.epoch_samples or self.n_samples

    def _group(self) -> h5py.Group:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.split]

    def __getitem__(self, position: int) -> dict:
        if not 0 <= position < len(self):
            raise IndexError(position)
        index = position % self.n_samples  # several passes per epoch with epoch_samples > n_samples
        cached = self.cache.get(index) if self.cache is not None else None
        if cached is None:
            g = self._group()
            try:
                gathers, velocity, mask = g["gathers"][index], g["velocity"][index], g["salt_mask"][index]
                codec = self.storage.codec
                gathers = codec.decode(gathers, g["gathers_scale"][index] if codec.scaled else None)
            except OSError as exc:
                raise DatasetError(f"{self.path}: sample {index} of {self.split!r} cannot be read: the file is damaged "
                                   f"there ({exc}); `python -m fwi.data.generate verify {self.path}` lists every "
                                   "damaged sample") from None
            bad = [name for name, a in (("gathers", gathers), ("velocity", velocity)) if not np.isfinite(a).all()]
            if bad:  # checked once per read (a cached sample was checked when it was read), never on the device
                raise DatasetError(f"{self.path}: the {' and '.join(bad)} of {self.split} sample {index} contain "
                                   "NaN or inf (a data error, not a training one; check the file with "
                                   "`python -m fwi.data.generate verify`)")
            cached = self.transform.prepare(gathers, velocity, mask)
            if self.cache is not None:
                self.cache.put(index, cached)
        # the mirror coin of a repeated sample depends on its pass (its position), so the passes differ
        coin = (self.seed, self.epoch) if position == index else (self.seed, self.epoch, position // self.n_samples)
        return self.transform.augment(*cached, index, coin)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not pickle; reopened in the worker
        return state


class OpenFWIDataset(Dataset):
    """OpenFWI ``.npy`` pairs (Deng et al., 2022): data (N, 5, 1000, 70) and model (N, 1, 70, 70), memory-mapped.

    ``pairs`` lists (data_file, model_file). The salt mask is ``velocity >= salt_threshold``. Without a
    ``normalizer`` the bounds are estimated from the first pair (velocity and signed-log gathers min/max).
    """

    def __init__(self, pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], *, survey: Survey | None = None,
                 normalizer: Normalizer | None = None, normalize: bool = True, time_decimation: int = 1,
                 mirror: bool = False, salt_threshold: float = SALT_THRESHOLD) -> None:
        if not pairs:
            raise ValueError("OpenFWIDataset needs at least one (data, model) pair of .npy files")
        self.data, self.models = [], []
        for data_file, model_file in pairs:
            data, model = _load_npy(data_file), _load_npy(model_file)
            if data.ndim != 4 or model.ndim != 4 or model.shape[1] != 1:
                raise DatasetError(f"{data_file} / {model_file}: expected data (N, S, T, R) and model (N, 1, nz, nx), "
                                   f"got {data.shape} and {model.shape}")
            if len(data) != len(model):
                raise DatasetError(f"{data_file} has {len(data)} samples but {model_file} has {len(model)}")
            self.data.append(data)
            self.models.append(model)
        shapes = {(d.shape[1:], m.shape[1:]) for d, m in zip(self.data, self.models)}
        if len(shapes) > 1:
            raise DatasetError(f"the OpenFWI files do not share one geometry: {sorted(shapes)}")
        s, t, r = self.data[0].shape[1:]
        nz, nx = self.models[0].shape[2:]
        self.survey = survey or Survey(nz=nz, nx=nx, nt=t, n_sources=s, n_receivers=r)
        if self.survey.data_shape != (s, t, r) or self.survey.shape != (nz, nx):
            raise DatasetError(f"survey {self.survey.data_shape}/{self.survey.shape} does not match the files "
                               f"{(s, t, r)}/{(nz, nx)}")
        self.offsets = np.cumsum([0] + [len(d) for d in self.data])
        self.salt_threshold = salt_threshold
        self.normalizer = normalizer or self.estimate_normalizer(self.data[0], self.models[0])
        self.transform = SampleTransform(self.normalizer if normalize else None, self.survey, time_decimation,
                                         mirror)

    @staticmethod
    def estimate_normalizer(data: np.ndarray, model: np.ndarray, max_samples: int = 500) -> Normalizer:
        d, m = np.asarray(data[:max_samples]), np.asarray(model[:max_samples])
        logd = signed_log1p(d)
        return Normalizer(float(m.min()), float(m.max()), float(logd.min()), float(logd.max()))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        f = int(np.searchsorted(self.offsets, index, side="right") - 1)
        i = index - self.offsets[f]
        velocity = np.asarray(self.models[f][i], dtype=np.float32)
        mask = (velocity >= self.salt_threshold).astype(np.float32)
        return self.transform(self.data[f][i], velocity, mask, index)


def _load_npy(path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist") from None
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not a readable .npy file ({exc})") from None
