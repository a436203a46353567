"""Velocity models from MATLAB ``.mat`` files (FCNVMB / DD-Net SEGSimulation layout: one model per file).

    read_mat_velocity("SEGSimulation/vmodel1.mat")  -> (1, nz, nx) float32 m/s

MATLAB v5 files are read with `scipy.io.loadmat`; v7.3 files are HDF5 and read with h5py. MATLAB stores arrays in
column-major order, so h5py sees a v7.3 (nz, nx) matrix as (nx, nz) (and an (nz, nx, N) stack as (N, nx, nz)):
it is transposed back here. The key is ``key`` or the first of `VELOCITY_KEYS` present, otherwise the only
numeric 2-D/3-D array of the file. A 3-D array is a stack of models along its last MATLAB axis (N last). The model
passes `fwi.io.velocity_files.check_velocity_values` (finite, positive, in m/s).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from fwi.io.units import check_velocity_values

#: Keys under which the FCNVMB / DD-Net / SEG salt files store their model, in order of preference.
VELOCITY_KEYS = ("vmodel", "velocity", "vel", "model", "v", "data")


class MatFileError(ValueError):
    """A .mat file without a usable velocity model."""


def _load(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the file (any type; the caller checks the chosen one), in MATLAB's (row, column, page) order."""
    if h5py.is_hdf5(path):  # v7.3
        out = {}
        with h5py.File(path, "r") as f:
            for key, obj in f.items():
                if isinstance(obj, h5py.Dataset):
                    out[key] = np.asarray(obj[()]).T  # column-major on disk: h5py sees the axes reversed
        return out
    import scipy.io

    try:
        raw = scipy.io.loadmat(path)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise MatFileError(f"{path} is not a readable .mat file ({exc})") from None
    return {k: v for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)}


def _real(a: np.ndarray) -> bool:
    return a.dtype.kind in "fiu"


def read_mat_velocity(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """(N, nz, nx) float32 velocity in m/s from one .mat file; `MatFileError` with one line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MatFileError(f"{path} does not exist")
    arrays = _load(path)
    if key is not None:
        if key not in arrays:
            raise MatFileError(f"{path} has no array {key!r} (it has {', '.join(arrays) or 'none'})")
        name = key
    else:
        found = [k for k in VELOCITY_KEYS if k in arrays]
        grids = [k for k, v in arrays.items() if _real(v) and np.squeeze(v).ndim in (2, 3)]
        if found:
            name = found[0]
        elif len(grids) == 1:
            name = grids[0]
        else:
            raise MatFileError(f"{path}: no velocity-like key ({', '.join(VELOCITY_KEYS)}) and "
                               f"{len(grids)} candidate arrays ({', '.join(arrays) or 'none'}); pass key=")
    raw = arrays[name]
    if not _real(raw):
        kind = {"c": "complex numbers", "U": "text", "S": "text", "O": "MATLAB cells or structs"}.get(raw.dtype.kind,
                                                                                                    str(raw.dtype))
        raise MatFileError(f"{path}: {name!r} holds {kind} ({raw.dtype}); a velocity model is an array of real "
                           "numbers in m/s")
    if raw.size == 0:
        raise MatFileError(f"{path}: {name!r} is empty (shape {raw.shape}); a velocity model is 2-D (nz x nx)")
    v = np.squeeze(raw).astype(np.float32)
    if v.ndim == 2:
        v = v[None]
    elif v.ndim == 3:
        v = np.moveaxis(v, -1, 0)  # MATLAB stacks pages last
    else:
        raise MatFileError(f"{path}: {name!r} has shape {raw.shape}; a velocity model is 2-D (nz x nx)")
    return check_velocity_values(np.ascontiguousarray(v), f"{path}: {name!r}", MatFileError)
