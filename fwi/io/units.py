"""The one check of velocity units for every model that enters from a file (`check_velocity_values`).

Used by `fwi.io.velocity_files` (.npy, HDF5, SEG-Y, .mat), `fwi.io.matfile` and the SEG-Y importer; imports nothing
of the project, so any reader can use it.
"""

from __future__ import annotations

import numpy as np

#: A model whose fastest cell is below this (m/s) is in km/s (water to salt: 1.5 - 4.6 km/s).
KMS_BELOW = 20.0
#: A model whose fastest cell is above this (m/s) is in ft/s (salt: ~14,800 ft/s); no rock of these settings is as fast.
FTS_ABOVE = 10000.0


def check_velocity_values(velocity: np.ndarray, source: str, error: type[Exception] = ValueError) -> np.ndarray:
    """``velocity`` (..., nz, nx) unchanged if its values are finite, positive and plausible in m/s; otherwise
    ``error`` with one line naming ``source`` (the file, and the key inside it), the value range and the likely unit.
    """
    v = np.asarray(velocity)
    if v.size == 0:
        raise error(f"{source} is empty (shape {v.shape}); expected velocity models in m/s")
    finite = np.isfinite(v)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(len(v), -1).all(1))[:5].tolist() if v.ndim == 3 else []
        raise error(f"{source} contains NaN or inf values" + (f" (model(s) {bad})" if bad else ""))
    lo, hi = float(v.min()), float(v.max())
    span = f"its values span {lo:g} .. {hi:g}"
    if lo <= 0:
        raise error(f"{source}: {span}; velocities must be positive (m/s)")
    if hi < KMS_BELOW:
        raise error(f"{source}: {span}, which looks like km/s; velocities must be in m/s (multiply by 1000)")
    if hi > FTS_ABOVE:
        raise error(f"{source}: {span}, which looks like ft/s (or another unit); velocities must be in m/s "
                    "(ft/s x 0.3048)")
    return velocity
