"""Acquisition geometry (`Survey`): grid, time axis, wavelet, sources, receivers, absorbing boundary.

The default is the OpenFWI geometry (Deng et al., 2022): a 70 x 70 grid with 10 m cells, 5 sources evenly spread
along the surface, 70 receivers (one per surface cell), 1000 samples of 1 ms, a 15 Hz Ricker wavelet and
sources/receivers at 10 m depth.

Time stepping: deepwave resamples internally when ``dt`` exceeds the CFL limit of the grid for
``max_velocity`` (it propagates with ``dt / step_ratio`` and returns the data at ``dt``). ``max_velocity`` is passed
to deepwave as a constant, so the internal step and the PML do not change from model to model; a velocity above it
is rejected. With ``strict_cfl=True`` a ``dt`` above the CFL limit is an error that names the largest stable dt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import deepwave.discretisation as dwd
import numpy as np
import torch

from fwi.physics.wavelet import ricker

#: Minimum grid points per minimum wavelength below which we warn (numerical dispersion).
MIN_POINTS_PER_WAVELENGTH = 5.0


class SurveyError(ValueError):
    """Invalid acquisition geometry or a velocity model the survey cannot propagate."""


@dataclass(frozen=True)
class Survey:
    """2D surface acquisition on a regular grid. Positions are in metres from the grid's top-left corner."""

    nz: int = 70
    nx: int = 70
    dx: float = 10.0
    nt: int = 1000
    dt: float = 0.001
    freq: float = 15.0
    n_sources: int = 5
    n_receivers: int = 70
    source_depth: float = 10.0
    receiver_depth: float = 10.0
    source_x: tuple[float, ...] | None = None  # default: evenly spread over the full width
    receiver_x: tuple[float, ...] | None = None  # default: evenly spread over the full width
    peak_time: float | None = None  # default 1.5 / freq
    pml_width: int = 20
    accuracy: int = 4
    max_velocity: float = 5000.0
    strict_cfl: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # free-form provenance notes

    def __post_init__(self) -> None:
        if self.source_x is not None:
            object.__setattr__(self, "source_x", tuple(float(v) for v in self.source_x))
            object.__setattr__(self, "n_sources", len(self.source_x))
        if self.receiver_x is not None:
            object.__setattr__(self, "receiver_x", tuple(float(v) for v in self.receiver_x))
            object.__setattr__(self, "n_receivers", len(self.receiver_x))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise `SurveyError` for an impossible geometry."""
        for name in ("nz", "nx", "nt", "n_sources", "n_receivers", "pml_width", "accuracy"):
            value = getattr(self, name)
            integral = isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, bool) \
                and math.isfinite(value) and float(value) == int(value)
            if not integral:
                raise SurveyError(f"survey.{name} must be a whole number (>= {0 if name == 'pml_width' else 1}), "
                                  f"got {value!r}")
            object.__setattr__(self, name, int(value))  # 70.0 from a YAML/JSON float is 70
        for name in ("nz", "nx", "nt", "n_sources", "n_receivers"):
            if getattr(self, name) < 1:
                raise SurveyError(f"survey.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dx", "dt", "freq", "max_velocity"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SurveyError(f"survey.{name} must be a positive number, got {value}")
        end = (self.nt - 1) * self.dt
        peak = self.peak_time
        if peak is not None and not (isinstance(peak, (int, float, np.number)) and not isinstance(peak, bool)
                                     and math.isfinite(peak) and 0 <= peak <= end):
            raise SurveyError(f"survey.peak_time must lie within the record, 0 .. {end:g} s ((nt - 1) x dt), "
                              f"got {peak!r}")
        if peak is None and 1.5 / self.freq > end:  # short test records: allowed, but the record misses the peak
            warnings.warn(f"the wavelet peaks at 1.5 / freq = {1.5 / self.freq:g} s, after the end of the record "
                          f"({end:g} s); set survey.peak_time or a longer nt", stacklevel=3)
        if self.accuracy not in (2, 4, 6, 8):
            raise SurveyError(f"survey.accuracy must be one of 2, 4, 6, 8, got {self.accuracy}")
        if self.pml_width < 0:
            raise SurveyError(f"survey.pml_width must be >= 0, got {self.pml_width}")
        width, depth = (self.nx - 1) * self.dx, (self.nz - 1) * self.dx
        for kind, xs, z in (("source", self._xs("source"), self.source_depth),
                            ("receiver", self._xs("receiver"), self.receiver_depth)):
            if not 0 <= z <= depth:
                raise SurveyError(f"{kind} depth {z} m is outside the grid (0 .. {depth} m)")
            bad = [x for x in xs if not -1e-6 <= x <= width + 1e-6]
            if bad:
                raise SurveyError(f"{kind} positions {bad[:5]} m are outside the grid (0 .. {width} m)")
            cells = np.round(np.asarray(xs) / self.dx).astype(int)
            if len(set(cells.tolist())) != len(cells):
                raise SurveyError(f"two {kind}s fall in the same grid cell; use fewer {kind}s or a finer grid")
        if self.strict_cfl and self.dt > self.max_stable_dt():
            raise SurveyError(
                f"dt = {self.dt:g} s is unstable for max_velocity {self.max_velocity:g} m/s on a {self.dx:g} m grid; "
                f"the largest stable dt is {self.max_stable_dt():.6g} s (or set strict_cfl=False to let deepwave "
                "sub-step internally)")

    def _xs(self, kind: str) -> tuple[float, ...]:
        given = self.source_x if kind == "source" else self.receiver_x
        if given is not None:
            return given
        n = self.n_sources if kind == "source" else self.n_receivers
        width = (self.nx - 1) * self.dx
        return tuple(np.round(np.linspace(0, width / self.dx, n)).astype(float) * self.dx)

    def max_stable_dt(self) -> float:
        """Largest time step that deepwave's CFL condition accepts for ``max_velocity`` on this grid (s)."""
        return dwd.DEFAULT_COURANT_NUMBER * self.dx / (self.max_velocity * math.sqrt(2.0))

    def step_ratio(self) -> int:
        """How many internal deepwave steps one ``dt`` takes (1 when ``dt`` is CFL-stable)."""
        return dwd.cfl_condition_n([self.dx, self.dx], self.dt, self.max_velocity)[1]

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        return (self.nz, self.nx)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """Shape of one sample's gathers: (S, T, R)."""
        return (self.n_sources, self.nt, self.n_receivers)

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.nt) * self.dt

    def source_positions(self) -> np.ndarray:
        """(S, 2) source positions (z, x) in metres."""
        xs = np.asarray(self._xs("source"))
        return np.stack([np.full_like(xs, self.source_depth), xs], axis=1)

    def receiver_positions(self) -> np.ndarray:
        """(R, 2) receiver positions (z, x) in metres."""
        xs = np.asarray(self._xs("receiver"))
        return np.stack([np.full_like(xs, self.receiver_depth), xs], axis=1)

    def source_cells(self) -> torch.Tensor:
        """(S, 1, 2) long grid indices (z, x) of each shot's single source, as deepwave expects."""
        return torch.from_numpy(np.round(self.source_positions() / self.dx).astype(np.int64))[:, None, :]

    def receiver_cells(self) -> torch.Tensor:
        """(S, R, 2) long grid indices (z, x) of the receivers, the same spread for every shot."""
        cells = torch.from_numpy(np.round(self.receiver_positions() / self.dx).astype(np.int64))
        return cells[None].expand(self.n_sources, -1, -1).contiguous()

    def mirror_mismatch(self) -> int:
        """Largest distance (cells) between a mirrored source/receiver and the nearest real one; 0 = exact symmetry.

        The OpenFWI geometry (5 shots on 70 cells) is off by one cell: its centre shot sits at x = 34, its mirror at 35.
        """
        worst = 0
        for cells in (self.source_cells()[:, 0, 1], self.receiver_cells()[0, :, 1]):
            mirrored = sorted((self.nx - 1 - cells).tolist())
            worst = max(worst, max(abs(a - b) for a, b in zip(mirrored, sorted(cells.tolist()))))
        return worst

    def wavelet(self) -> torch.Tensor:
        """(nt,) Ricker source time function."""
        return ricker(self.freq, self.nt, self.dt, self.peak_time)

    # ------------------------------------------------------------------ velocity checks
    def check_velocity(self, velocity: torch.Tensor | np.ndarray, *, name: str = "velocity", check_shape: bool = True,
                       shape_hint: str = "") -> None:
        """Raise `SurveyError` for velocity models (..., nz, nx) in m/s that cannot be propagated; warn on coarse
        sampling. The one validator of velocity models (forward modelling, evaluation, external model files).

        ``name`` starts the messages (e.g. the file); ``check_shape=False`` skips the grid check (models about to be
        resampled); ``shape_hint`` is appended to the grid-mismatch message. For (N, nz, nx) models, messages about
        NaN name the offending models.
        """
        v = torch.as_tensor(velocity)
        if check_shape and (v.ndim < 2 or tuple(v.shape[-2:]) != self.shape):
            got = f"{v.shape[-2]} x {v.shape[-1]}" if v.ndim >= 2 else f"shape {tuple(v.shape)}"
            raise SurveyError(f"{name}: models are {got} (nz x nx) but the survey's grid is {self.nz} x {self.nx} "
                              f"(expected shape (..., {self.nz}, {self.nx}), got {tuple(v.shape)}){shape_hint}")
        if v.is_complex() or v.dtype == torch.bool:
            raise SurveyError(f"{name}: velocity must be real numbers, got dtype {v.dtype}")
        finite = torch.isfinite(v)
        if not finite.all():
            where = ""
            if v.ndim == 3:
                bad = torch.nonzero(~finite.flatten(1).all(1)).flatten()[:5].tolist()
                where = f" (model(s) {bad})"
            raise SurveyError(f"{name} contains NaN or inf values{where}")
        vmin, vmax = float(v.min()), float(v.max())
        if vmin <= 0:
            raise SurveyError(f"{name} must be positive everywhere (m/s), found a minimum of {vmin:g} m/s")
        if vmax > self.max_velocity:
            raise SurveyError(
                f"{name} reaches {vmax:g} m/s, above the survey's max_velocity {self.max_velocity:g} m/s that sets "
                "the stable time step; the survey cannot propagate it (raise survey.max_velocity)")
        ppw = self.points_per_wavelength(vmin)
        if ppw < MIN_POINTS_PER_WAVELENGTH:
            warnings.warn(
                f"only {ppw:.1f} grid points per minimum wavelength (vmin {vmin:g} m/s, "
                f"fmax ~{self.max_frequency:g} Hz, "
                f"dx {self.dx:g} m); at least {MIN_POINTS_PER_WAVELENGTH:g} avoid strong numerical dispersion",
                stacklevel=2)

    @property
    def max_frequency(self) -> float:
        """Practical upper frequency of the Ricker wavelet: 2 x its centre frequency (spectrum down to ~20% of its
        peak)."""
        return 2.0 * self.freq

    def lossless_gradient_sampling(self) -> int:
        """The largest interval k (dividing nt) at which the model gradient may sample the wavefields without
        changing: the gradient is the zero-lag correlation of the forward and adjoint wavefields, whose product is
        band-limited to 2 x 3 x freq (the Ricker spectrum is 0.3 % of its peak at 3x its centre frequency), and its
        sum over every k-th step aliases nothing onto zero frequency while 1 / (k dt) > 6 freq. fieldsalt and salt70:
        k = 10 (1 - cosine with the exact gradient ~1e-11 at fieldsalt, 3.6x faster, 10x less wavefield storage:
        experiments/bench/results/gradient_fieldsalt_cpu.md)."""
        limit = 1.0 / (6.0 * self.freq * self.dt)
        return max(k for k in range(1, self.nt + 1) if self.nt % k == 0 and (k < limit or k == 1))

    def points_per_wavelength(self, vmin: float) -> float:
        return vmin / self.max_frequency / self.dx

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("source_x", "receiver_x"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Survey":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise SurveyError(f"unknown survey keys {sorted(unknown)}; valid keys: {sorted(names)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Survey":
        return cls.from_dict(json.loads(text))
