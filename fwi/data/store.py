"""The HDF5 dataset layout, written atomically and read with clear errors.

One file holds the splits of one dataset::

    /                     attrs: format="fwi-dataset", format_version, survey (JSON), normalisation (JSON),
                                 generator (JSON), seed, versions (JSON), created
    /<split>/velocity     (N, 1, nz, nx) float32, m/s
    /<split>/salt_mask    (N, 1, nz, nx) uint8, 1 = salt
    /<split>/gathers      (N, S, T, R)   float32, receiver amplitudes

``split`` is any of ``train``, ``val``, ``test``. Arrays are chunked one sample per chunk and gzip-compressed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from fwi.atomic import atomic_path
from fwi.physics import Survey

FORMAT = "fwi-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
ARRAYS = {"velocity": np.float32, "salt_mask": np.uint8, "gathers": np.float32}


class DatasetError(RuntimeError):
    """A dataset file that is missing, corrupt, truncated or not in the fwi layout."""


def package_versions() -> dict[str, str]:
    import deepwave
    import torch

    import fwi

    return {"fwi": fwi.__version__, "torch": torch.__version__, "deepwave": deepwave.__version__,
            "numpy": np.__version__, "h5py": h5py.__version__, "python": platform.python_version()}


def create_split(group: h5py.Group, n: int, survey: Survey) -> None:
    """Create the three arrays of one split with sample-sized chunks."""
    shapes = {"velocity": (n, 1, survey.nz, survey.nx), "salt_mask": (n, 1, survey.nz, survey.nx),
              "gathers": (n, *survey.data_shape)}
    for key, dtype in ARRAYS.items():
        shape = shapes[key]
        group.create_dataset(key, shape=shape, dtype=dtype, chunks=(1, *shape[1:]) if n else None,
                             compression="gzip" if n else None, compression_opts=4 if n else None)


def write_block(group: h5py.Group, where: slice, block: Mapping[str, np.ndarray] | h5py.Group) -> None:
    """Write a block of samples into a split at rows ``where``.

    A block that is itself an HDF5 group in this layout (same dtypes, one-sample chunks, same filters, e.g. a
    generation part) is copied chunk by chunk without decompressing and recompressing it.
    """
    if isinstance(block, h5py.Group) and all(_same_storage(block[k], group[k]) for k in ARRAYS):
        for key in ARRAYS:
            src, dst = block[key].id, group[key].id
            tail = (0,) * (len(group[key].shape) - 1)
            for i in range(block[key].shape[0]):
                mask, chunk = src.read_direct_chunk((i, *tail))
                dst.write_direct_chunk((where.start + i, *tail), chunk, mask)
        return
    for key in ARRAYS:
        group[key][where] = np.asarray(block[key], dtype=ARRAYS[key])


def _same_storage(a: h5py.Dataset, b: h5py.Dataset) -> bool:
    return (a.dtype == b.dtype and a.shape[1:] == b.shape[1:] and a.chunks is not None and a.chunks == b.chunks
            and a.compression == b.compression and a.compression_opts == b.compression_opts
            and a.shuffle == b.shuffle and a.fletcher32 == b.fletcher32 and a.scaleoffset == b.scaleoffset)


def write_dataset(
    path: str | os.PathLike,
    splits: Mapping[str, Mapping[str, np.ndarray] | Iterable[tuple[slice, Mapping[str, np.ndarray] | h5py.Group]]],
    survey: Survey,
    *,
    sizes: Mapping[str, int] | None = None,
    normalisation: Mapping[str, float] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a dataset file atomically: nothing appears at ``path`` unless the whole file was written.

    ``splits[name]`` is either a dict of whole arrays (velocity, salt_mask, gathers) or an iterable of
    (slice, dict of arrays) blocks (give ``sizes[name]`` then), so large datasets stream without being held in memory.
    A block may also be an open HDF5 group in this layout that was checked when it was written (`write_part`):
    its chunks are copied as they are, and its ``normalisation`` attribute stands for its statistics.
    ``normalisation`` defaults to the statistics of the train split (see `compute_normalisation`).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = RunningNormalisation()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, content in splits.items():
                if name not in SPLITS:
                    raise DatasetError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
                blocks = [(slice(None), content)] if isinstance(content, Mapping) else content
                n = (len(content["velocity"]) if isinstance(content, Mapping) else (sizes or {}).get(name))
                if n is None:
                    raise ValueError(f"split {name!r} is streamed: give sizes[{name!r}]")
                group = f.create_group(name)
                create_split(group, n, survey)
                for where, arrays in blocks:
                    known = isinstance(arrays, h5py.Group) and "normalisation" in arrays.attrs
                    if not known:
                        check_sample_arrays(arrays, survey)
                    write_block(group, where, arrays)
                    if name == "train" and normalisation is None:
                        if known:
                            stats.include(json.loads(arrays.attrs["normalisation"]))
                        else:
                            stats.update(arrays["velocity"][()], arrays["gathers"][()])
            norm = dict(normalisation) if normalisation is not None else stats.result()
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["survey"] = survey.to_json()
            f.attrs["normalisation"] = json.dumps(norm)
            f.attrs["versions"] = json.dumps(package_versions())
            f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            for key, value in (attrs or {}).items():
                f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
    return path


def check_sample_arrays(arrays: Mapping[str, np.ndarray], survey: Survey) -> None:
    """Shapes and values of a block of samples must fit the survey."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise DatasetError(f"missing arrays {missing}; a block needs {list(ARRAYS)}")
    v, m, g = (np.asarray(arrays[k]) for k in ARRAYS)
    n = len(v)
    expect = {"velocity": (n, 1, survey.nz, survey.nx), "salt_mask": (n, 1, survey.nz, survey.nx),
              "gathers": (n, *survey.data_shape)}
    for key, arr in zip(ARRAYS, (v, m, g)):
        if arr.shape != expect[key]:
            raise DatasetError(f"{key} has shape {arr.shape}, expected {expect[key]} for this survey")
    if not (np.isfinite(v).all() and np.isfinite(g).all()):
        raise DatasetError("velocity or gathers contain NaN or inf")
    if v.size and v.min() <= 0:
        raise DatasetError(f"velocity must be positive, found {v.min():g} m/s")


class RunningNormalisation:
    """Min/max of velocity and of sign(g) log1p(|g|) over the blocks it sees (the OpenFWI normalisation)."""

    def __init__(self) -> None:
        self.v = [np.inf, -np.inf]
        self.g = [np.inf, -np.inf]

    def update(self, velocity: np.ndarray, gathers: np.ndarray) -> None:
        logg = np.sign(gathers) * np.log1p(np.abs(gathers))
        self.v = [min(self.v[0], float(np.min(velocity))), max(self.v[1], float(np.max(velocity)))]
        self.g = [min(self.g[0], float(np.min(logg))), max(self.g[1], float(np.max(logg)))]

    def include(self, other: Mapping[str, float]) -> None:
        """Merge the statistics of another block (a `result` dict)."""
        self.v = [min(self.v[0], float(other["v_min"])), max(self.v[1], float(other["v_max"]))]
        self.g = [min(self.g[0], float(other["g_min"])), max(self.g[1], float(other["g_max"]))]

    def result(self) -> dict[str, float]:
        if not np.isfinite(self.v[0]):
            raise DatasetError("no train split to compute the normalisation from; pass normalisation=")
        return {"v_min": self.v[0], "v_max": self.v[1], "g_min": self.g[0], "g_max": self.g[1]}


@dataclass(frozen=True)
class DatasetInfo:
    """What a valid dataset file holds."""

    path: Path
    survey: Survey
    sizes: dict[str, int]
    normalisation: dict[str, float]
    attrs: dict[str, Any]


def read_info(path: str | os.PathLike) -> DatasetInfo:
    """Open and validate a dataset file; `DatasetError` with a readable message if it is not usable."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist (make one with `python -m fwi.data.generate`)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise DatasetError(f"{path} is an HDF5 file but not an fwi dataset (no format={FORMAT!r} attribute)")
            survey = Survey.from_json(f.attrs["survey"])
            sizes = {}
            for split in SPLITS:
                if split in f:
                    for key in ARRAYS:
                        if key not in f[split]:
                            raise DatasetError(f"{path}: split {split!r} lacks the {key!r} array")
                    sizes[split] = int(f[split]["velocity"].shape[0])
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path} is corrupt or truncated and cannot be read ({exc})") from None
    return DatasetInfo(path, survey, sizes, dict(attrs["normalisation"]), attrs)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value.item() if isinstance(value, np.generic) else value
