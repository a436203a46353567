"""Velocity models from files: .npy, HDF5 (an fwi dataset's split or a plain file), SEG-Y (`fwi.io.segy`) and, when
`fwi.io.matfile` is present, FCNVMB / DD-Net ``.mat`` files; and bilinear resampling to a grid.

`load_velocity_file` dispatches on the file suffix through the `READERS` registry (suffix -> reader); a new format is
one ``READERS.register(suffix, reader)``. Every model read from a file passes `check_velocity_values` (finite,
positive, in m/s: ranges that look like km/s or ft/s are refused with the file, the range and the likely unit).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fwi.io.units import check_velocity_values
from fwi.registry import Registry

__all__ = ["READERS", "load_velocity_file", "resample_models"]

Reader = Callable[[Path, "str | None", str], "tuple[np.ndarray, float | None]"]


def _read_hdf5(path: Path, key: str | None, split: str) -> np.ndarray:
    import h5py

    from fwi.data.store import FORMAT

    try:
        with h5py.File(path, "r") as f:
            if key is None and f.attrs.get("format") == FORMAT:
                if split not in f or "velocity" not in f[split]:
                    raise ValueError(f"{path} is an fwi dataset without a {split!r} split (it has "
                                     f"{', '.join(k for k in f if isinstance(f[k], h5py.Group)) or 'none'}); "
                                     "choose one with --split")
                return f[split]["velocity"][()]
            found: list[str] = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
            if key is not None:
                if key not in found:
                    raise ValueError(f"{path} has no dataset {key!r}; it has {', '.join(found) or 'none'}")
                return f[key][()]
            candidates = [n for n in found if f[n].ndim in (2, 3, 4)]
            if len(candidates) != 1:
                raise ValueError(f"{path} holds {len(candidates)} 2D-4D datasets ({', '.join(candidates) or 'none'}); "
                                 "choose one with --key KEY")
            return f[candidates[0]][()]
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file ({exc})") from None


def _read_hdf5_models(path: Path, key: str | None, split: str) -> tuple[np.ndarray, float | None]:
    return _read_hdf5(path, key, split), None


def _read_npy(path: Path, key: str | None, split: str) -> tuple[np.ndarray, float | None]:
    try:
        return np.load(path, allow_pickle=False), None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from None


def _read_segy(path: Path, key: str | None, split: str) -> tuple[np.ndarray, float | None]:
    from fwi.io.segy import read_velocity

    return read_velocity(path)


def _read_mat(path: Path, key: str | None, split: str) -> tuple[np.ndarray, float | None]:
    from fwi.io.matfile import read_mat_velocity

    return read_mat_velocity(path, key), None


#: Reader of each file type (by lower-case suffix): (path, key, split) -> (models, cell size in m or None).
READERS: Registry[Reader] = Registry("model file type")
READERS.register(".npy", _read_npy)
READERS.register(".h5", _read_hdf5_models)
READERS.register(".hdf5", _read_hdf5_models)
READERS.register(".hdf", _read_hdf5_models)
READERS.register(".sgy", _read_segy)
READERS.register(".segy", _read_segy)
if importlib.util.find_spec("fwi.io.matfile") is not None:  # FCNVMB / DD-Net MATLAB files
    READERS.register(".mat", _read_mat)


def load_velocity_file(path: str | os.PathLike, key: str | None = None, split: str = "test"
                       ) -> tuple[np.ndarray, float | None]:
    """Velocity models (N, nz, nx) float32 in m/s from a file of a type in `READERS`, and their cell size if known.

    ``key``: the dataset inside a plain HDF5 (or .mat) file; ``split``: the split read from an fwi-dataset HDF5 file.
    Accepted array shapes: (nz, nx), (N, nz, nx) or (N, 1, nz, nx).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in READERS:  # the registry's names, in a message that also names the file
        raise ValueError(f"{path}: unsupported model file type {path.suffix!r}; use one of "
                         f"{', '.join(READERS.names())}")
    arr, dx = READERS.get(suffix)(path, key, split)
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"{path}: expected velocity models (nz, nx), (N, nz, nx) or (N, 1, nz, nx), got shape "
                         f"{arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{path}: velocity must be real numbers, got dtype {arr.dtype}")
    return check_velocity_values(np.ascontiguousarray(arr, dtype=np.float32), str(path)), dx


def resample_models(velocity: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of (N, nz, nx) models to ``grid`` (cell-centre aligned; anti-aliased when shrinking)."""
    if tuple(velocity.shape[1:]) == tuple(grid):
        return velocity
    v = torch.from_numpy(np.ascontiguousarray(velocity, dtype=np.float32))[:, None]
    shrink = grid[0] < v.shape[-2] or grid[1] < v.shape[-1]
    out = F.interpolate(v, size=tuple(grid), mode="bilinear", align_corners=False, antialias=shrink)
    return out[:, 0].numpy()
