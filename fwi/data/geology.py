"""Seeded generator of geologically plausible 2D salt velocity models.

The models imitate, on a small grid, the ingredients of the classic synthetic salt benchmarks (the SEG/EAGE salt
model, the "salt" families of OpenFWI): a layered sedimentary column whose velocity grows with depth through
compaction, deformed by folding and faulting, into which salt bodies of near-constant, high velocity have been
emplaced, optionally below a water layer.

Construction, in geological order (all geometry is defined in fractions of the grid, so a 70 x 70 and a 35 x 100 grid
show the same structures, stretched with the grid):

1. **Water** (with probability ``water_prob``): a layer of ``v_water`` whose bottom, the seabed, is gently dipping
   and undulating. Sediments start below it.
2. **Sediments**: layers are iso-surfaces of a *stratigraphic coordinate* ``s(z, x)`` (the depth at which a point
   was deposited). Undeformed, ``s = z``. Layer thicknesses vary (gamma-distributed), and the layers thicken
   laterally (a wedge, as in growth strata).
3. **Folding**: a smooth vertical displacement field (a regional dip plus a sum of a few random sinusoids whose
   amplitude grows with depth, older strata being more deformed) is subtracted from ``s``.
4. **Faults**: planes dipping 50-80 degrees displace the hanging wall along the dip by the throw (normal faults
   move it down, reverse faults up). The throw may die out upwards (a buried fault tip). Faults are applied by
   mapping each hanging-wall point back to where it was before slip.
5. **Unconformity** (with probability ``unconformity_prob``): an erosional surface separates the folded and faulted
   lower sequence from a younger, nearly flat upper sequence that neither the faults nor the strong folding reach.
6. **Salt** (``n_salt`` bodies, each of constant velocity in ``v_salt``), drawn from:

   * ``dome``: a salt pillow rising from an autochthonous salt layer at the bottom; rounded, possibly
     asymmetric crest.
   * ``diapir``: a stem rising from depth, widening towards its source, capped by a head that may overhang the
     stem (a mushroom), with a possibly tilted axis.
   * ``lens``: a detached, elongated body at mid depth, flatter at the base than at the top, possibly tilted.
   * ``sill``: a thin tabular body concordant with the bedding (it follows the folds), tapering at its ends.

   Every body is a level-set function (negative inside, roughly a distance in grid fractions); a smooth random
   field added to it makes the flanks irregular. Sediments next to diapirs and above domes are dragged upwards
   (a positive shift of ``s``), as halokinesis bends the layers against the salt.
7. The total salt fraction is kept within ``[min_salt_fraction, max_salt_fraction]``: the salt bodies are redrawn
   a few times, and a last draw outside the bounds is dilated or eroded (a threshold on its level set).

Layer velocities follow a compaction trend ``v_top + (v_bottom - v_top) * depth ** p`` evaluated at each layer's
mean depth below the seabed, plus a random per-layer perturbation (``layer_jitter``, allowing occasional
velocity inversions) and a fraction of the trend inside each layer. Sediment velocities are clipped below the
salt velocity, so ``mask == (velocity >= v_salt[0])``.

Everything is vectorised over pixels (Python loops run over layers, faults and salt bodies only) and a model is
a pure function of its seed. `generate_model` calls one function per step (``_draw_seabed``, ``_draw_structure``
= folds, faults and ``_draw_unconformity``, ``_draw_salt``, ``_salt_within_fraction``, ``_stratigraphic_coordinate``,
``_draw_layers``, ``_sediment_velocities``) in the order they draw from the random generator; that order is part of
the models' definition (recorded datasets depend on it bit for bit: ``tests/data/test_geology_identity.py``).

Named settings: the default `GeologyConfig` is salt70's; `FIELD_SALT` the SEG salt family at 2 km x 3 km (preset
``fieldsalt``); `FIELD_SALT_SHIFTED` its test family, never trained on (``fieldsalt-shifted``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fwi.data.salt_bodies import body_drag, body_level_set, roughness_scale, sample_body

__all__ = ["FIELD_SALT", "FIELD_SALT_SHIFTED", "SALT_KINDS", "GeologyConfig", "generate_model", "generate_models"]

#: Salt body shapes the generator knows.
SALT_KINDS = ("dome", "diapir", "lens", "sill")

#: Lowest sediment velocity after the per-layer perturbation (m/s).
#: Above water (1500 m/s); keeps >= 5 points per wavelength on the OpenFWI grid (15 Hz, 10 m).
_V_SEDIMENT_MIN = 1520.0
#: Sediments stay at least this much below the slowest salt (m/s), so salt is identifiable by its velocity.
_SALT_GAP = 100.0
#: Salt starts at least this far (grid fraction) below the seabed.
_SEABED_MARGIN = 0.03

RangeF = tuple[float, float]
RangeI = tuple[int, int]


@dataclass(frozen=True)
class GeologyConfig:
    """Distributions the generator draws from. Ranges are ``(low, high)``, drawn uniformly; lengths and depths are
    fractions of the grid's depth (vertical) or width (horizontal); velocities are in m/s."""

    # --- sediments
    v_top: RangeF = (1500.0, 2200.0)  #: velocity at the top of the sediments (seabed or surface)
    v_bottom: RangeF = (3000.0, 4000.0)  #: velocity at the bottom of the grid (depth trend)
    trend_exponent: RangeF = (0.6, 1.3)  #: p in the compaction trend; < 1 is faster increase near the top
    n_layers: RangeI = (5, 14)  #: number of layers (inclusive range)
    layer_jitter: float = 200.0  #: standard deviation of the per-layer velocity perturbation
    intra_layer_gradient: float = 0.15  #: fraction of the depth trend kept inside a layer (0 = constant layers)
    wedge: float = 0.3  #: maximum lateral thickening of the layers across the grid (fraction)
    fold_amplitude: RangeF = (0.0, 0.12)  #: folding amplitude (fraction of depth) at the bottom of the grid
    fold_wavelength: RangeF = (0.35, 2.0)  #: fold wavelengths (fraction of width)
    max_dip: float = 0.12  #: maximum regional dip: depth change across the width (fraction of depth)
    n_faults: RangeI = (0, 3)  #: number of faults (inclusive range)
    fault_throw: RangeF = (0.03, 0.1)  #: fault throw (fraction of depth)
    fault_dip: RangeF = (50.0, 80.0)  #: fault dip from horizontal (degrees)
    reverse_fault_prob: float = 0.25  #: probability that a fault is reverse rather than normal
    unconformity_prob: float = 0.3  #: probability of an angular unconformity
    unconformity_depth: RangeF = (0.2, 0.5)  #: depth of the unconformity (fraction of depth)
    # --- salt
    n_salt: RangeI = (1, 3)  #: number of salt bodies (inclusive range)
    v_salt: RangeF = (4400.0, 4600.0)  #: salt velocity, constant per body
    salt_kinds: tuple[str, ...] = SALT_KINDS  #: shapes to draw from
    salt_kind_weights: tuple[float, ...] | None = None  #: relative weights of ``salt_kinds`` (None: equal)
    salt_roughness: float = 0.012  #: standard deviation of the random perturbation of salt outlines (fraction)
    drag: RangeF = (0.02, 0.1)  #: upward drag of sediments next to diapirs and above domes (fraction of depth)
    min_salt_fraction: float = 0.03  #: smallest fraction of the grid that is salt
    max_salt_fraction: float = 0.40  #: largest fraction of the grid that is salt
    max_salt_tries: int = 10  #: redraws of the salt bodies before dilating/eroding to meet the fraction bounds
    # --- water
    water_prob: float = 0.3  #: probability of a water layer at the top
    water_depth: RangeF = (0.05, 0.2)  #: mean seabed depth (fraction of depth)
    v_water: float = 1500.0

    def __post_init__(self) -> None:
        for name in ("v_top", "v_bottom", "trend_exponent", "fold_amplitude", "fold_wavelength", "fault_throw",
                     "fault_dip", "unconformity_depth", "v_salt", "drag", "water_depth"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in ("n_layers", "n_faults", "n_salt"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "salt_kinds", tuple(str(k) for k in self.salt_kinds))
        if self.salt_kind_weights is not None:
            object.__setattr__(self, "salt_kind_weights", tuple(float(w) for w in self.salt_kind_weights))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for an inconsistent configuration."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("salt_kinds", "salt_kind_weights"):
                continue
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"GeologyConfig.{f.name} must be finite numbers, got {value!r}")
            if isinstance(value, tuple):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"GeologyConfig.{f.name} must be a (low, high) range with low <= high, "
                                     f"got {value}")
                if min(value) < 0:
                    raise ValueError(f"GeologyConfig.{f.name} must be non-negative, got {value}")
            elif value < 0:
                raise ValueError(f"GeologyConfig.{f.name} must be non-negative, got {value}")
        for name in ("reverse_fault_prob", "unconformity_prob", "water_prob", "intra_layer_gradient",
                     "min_salt_fraction", "max_salt_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"GeologyConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.min_salt_fraction > self.max_salt_fraction:
            raise ValueError("GeologyConfig.min_salt_fraction must not exceed max_salt_fraction")
        if self.n_layers[0] < 1 or self.n_salt[0] < 1:
            raise ValueError("GeologyConfig.n_layers and n_salt must be at least 1")
        if self.water_depth[1] >= 0.8:
            raise ValueError(f"GeologyConfig.water_depth must stay below 0.8 of the depth, got {self.water_depth}")
        if not self.fault_dip[0] > 0 or self.fault_dip[1] > 90:
            raise ValueError(f"GeologyConfig.fault_dip must lie in (0, 90] degrees, got {self.fault_dip}")
        if min(self.v_top[0], self.v_water) <= 0:
            raise ValueError("velocities must be positive")
        if max(self.v_top[1], self.v_bottom[1]) >= self.v_salt[0] - _SALT_GAP:
            raise ValueError(
                f"sediment velocities (v_top, v_bottom up to {max(self.v_top[1], self.v_bottom[1]):g} m/s) must stay "
                f"{_SALT_GAP:g} m/s below the slowest salt (v_salt starts at {self.v_salt[0]:g} m/s)")
        if self.v_water >= self.v_salt[0]:
            raise ValueError("v_water must be below v_salt")
        if not self.salt_kinds:
            raise ValueError("GeologyConfig.salt_kinds must not be empty")
        unknown = [k for k in self.salt_kinds if k not in SALT_KINDS]
        if unknown:
            raise ValueError(f"unknown salt kinds {unknown}; valid kinds: {list(SALT_KINDS)}")
        if self.salt_kind_weights is not None:
            w = self.salt_kind_weights
            if len(w) != len(self.salt_kinds) or min(w) < 0 or sum(w) <= 0 or not all(map(math.isfinite, w)):
                raise ValueError("GeologyConfig.salt_kind_weights must be one non-negative weight per salt kind, "
                                 "with a positive sum")
        if self.max_salt_tries < 1:
            raise ValueError("GeologyConfig.max_salt_tries must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeologyConfig":
        """Inverse of `to_dict`; missing keys take their defaults, unknown keys raise ``ValueError``."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = set(d) - set(names)
        if unknown:
            raise ValueError(f"unknown geology config keys {sorted(unknown)}; valid keys: {sorted(names)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GeologyConfig":
        return cls.from_dict(json.loads(text))


#: The SEG salt family (FCNVMB / DD-Net) at field scale, 2 km deep x 3 km wide (preset ``fieldsalt``; in metres
#: below for that extent): 5-15 gently folded or dipping layers (100-400 m) whose velocity grows with depth from
#: 1700-2300 m/s to 3400-4200 m/s, at most two small faults, a thin water layer (40-120 m) in a quarter of the
#: models; one or two salt bodies of 4400-4600 m/s: domes (0.6-1.9 km wide, rising 300-850 m from an autochthonous
#: layer at the bottom), diapirs (stems 200-450 m wide from the bottom, heads up to 1.4 km wide, half of them
#: overhanging mushrooms) and detached lenses at mid depth (0.6-1.6 km long); no sills (kept for the shifted family).
FIELD_SALT = GeologyConfig(
    v_top=(1700.0, 2300.0), v_bottom=(3400.0, 4200.0), trend_exponent=(0.7, 1.3), n_layers=(5, 15),
    layer_jitter=150.0, wedge=0.25, fold_amplitude=(0.0, 0.08), fold_wavelength=(0.5, 2.0), max_dip=0.1,
    n_faults=(0, 2), fault_throw=(0.02, 0.06), unconformity_prob=0.2,
    n_salt=(1, 2), salt_kinds=("dome", "diapir", "lens"), salt_kind_weights=(1.0, 1.0, 0.6), salt_roughness=0.01,
    min_salt_fraction=0.04, max_salt_fraction=0.35, water_prob=0.25, water_depth=(0.02, 0.06),
)

#: A family never used in training, to measure generalisation off the training distribution (preset
#: ``fieldsalt-shifted``). Against `FIELD_SALT`: thinner and more numerous layers (12-25) with a stronger
#: per-layer jitter (velocity inversions), a convex compaction trend, stronger folding and dips, 2-4 faults with
#: up to twice the throw, unconformities in most models, more and more varied salt (2-4 bodies, sills and lenses
#: weighted up, salt fraction 8-45 %), deeper water more often. Velocities stay within the training family's range
#: (1500-4600 m/s), so the normalisation of a network trained on `FIELD_SALT` still covers them.
FIELD_SALT_SHIFTED = GeologyConfig(
    v_top=(1700.0, 2300.0), v_bottom=(3400.0, 4200.0), trend_exponent=(1.2, 1.8), n_layers=(12, 25),
    layer_jitter=300.0, wedge=0.35, fold_amplitude=(0.06, 0.16), fold_wavelength=(0.3, 1.2), max_dip=0.18,
    n_faults=(2, 4), fault_throw=(0.04, 0.12), reverse_fault_prob=0.4, unconformity_prob=0.7,
    n_salt=(2, 4), salt_kind_weights=(0.6, 0.6, 1.0, 1.0), salt_roughness=0.016,
    min_salt_fraction=0.08, max_salt_fraction=0.45, water_prob=0.5, water_depth=(0.03, 0.12),
)


# ---------------------------------------------------------------------------------------------------- helpers


def _smooth_field(rng: np.random.Generator, Z: np.ndarray, X: np.ndarray, n_terms: int = 10,
                  k_range: RangeF = (1.0, 5.0)) -> np.ndarray:
    """Smooth random field of about unit standard deviation, clipped to [-2, 2]: a sum of plane waves with random
    directions and wavenumbers (cycles per grid) and a red spectrum (amplitude ~ 1 / k)."""
    k = rng.uniform(*k_range, n_terms)
    theta = rng.uniform(0.0, 2.0 * np.pi, n_terms)
    phase = rng.uniform(0.0, 2.0 * np.pi, n_terms)
    amp = 1.0 / k
    arg = 2.0 * np.pi * k[:, None, None] * (np.cos(theta)[:, None, None] * X + np.sin(theta)[:, None, None] * Z)
    field = np.tensordot(amp, np.cos(arg + phase[:, None, None]), axes=1)
    return np.clip(field / np.sqrt(0.5 * np.sum(amp**2)), -2.0, 2.0)


def _fold_function(rng: np.random.Generator, cfg: GeologyConfig, scale: float) -> Callable:
    """Draw a folding displacement d(x, z) (positive = layers pushed down), ``scale`` times the configured
    amplitude. Layers are the iso-surfaces of s = z - d(x, z)."""
    dip = rng.uniform(-cfg.max_dip, cfg.max_dip) * scale
    wedge = rng.uniform(-cfg.wedge, cfg.wedge) * scale
    n_waves = int(rng.integers(1, 4))
    total = rng.uniform(*cfg.fold_amplitude) * scale
    share = rng.dirichlet(np.ones(n_waves))
    amps = total * share
    wavelengths = rng.uniform(*cfg.fold_wavelength, n_waves)
    phases = rng.uniform(0.0, 2.0 * np.pi, n_waves)
    growth = rng.uniform(0.2, 0.7)  # amplitude at the top relative to the bottom

    def d(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        waves = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(z)))
        for a, lam, ph in zip(amps, wavelengths, phases):
            waves = waves + a * np.sin(2.0 * np.pi * x / lam + ph)
        depth_factor = growth + (1.0 - growth) * np.clip(z, 0.0, 1.0)
        return dip * (x - 0.5) + wedge * (x - 0.5) * z + waves * depth_factor

    return d


def _sample_faults(rng: np.random.Generator, cfg: GeologyConfig) -> list[dict[str, float]]:
    faults = []
    for _ in range(int(rng.integers(cfg.n_faults[0], cfg.n_faults[1] + 1))):
        throw = rng.uniform(*cfg.fault_throw)
        if rng.random() < cfg.reverse_fault_prob:
            throw = -throw
        faults.append(dict(
            x0=rng.uniform(0.15, 0.85),  # where the fault crosses mid depth
            direction=float(rng.choice([-1.0, 1.0])),  # dips towards +x or -x
            cot=1.0 / math.tan(math.radians(rng.uniform(*cfg.fault_dip))),
            throw=throw,
            z_tip=rng.uniform(-0.3, 0.5),  # upper tip: the throw fades out above it (< 0: reaches the surface)
        ))
    return faults


def _unfault(faults: list[dict[str, float]], Z: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map present-day coordinates back to their position before faulting (youngest fault undone first)."""
    for f in reversed(faults):
        x_fault = f["x0"] + f["direction"] * (Z - 0.5) * f["cot"]
        hanging = f["direction"] * (X - x_fault) > 0.0
        taper = np.clip((Z - f["z_tip"]) / 0.15, 0.0, 1.0)
        slip = np.where(hanging, f["throw"] * taper, 0.0)
        Z, X = Z - slip, X - f["direction"] * f["cot"] * slip
    return Z, X


def _kth_smallest(values: np.ndarray, k: int) -> float:
    k = min(max(k, 0), values.size - 1)
    return float(np.partition(values, k)[k])


# ---------------------------------------------------------------------------------------------------- steps
# One function per step of the construction (module docstring); their order of draws from ``rng`` must not change.


@dataclass
class _Structure:
    """The deformation of the sediments (steps 3-5)."""

    fold_lower: Callable  #: folding of the lower (or only) sequence, d(x, z)
    faults: list[dict[str, float]]
    fold_upper: Callable | None  #: folding of the sequence above the unconformity (None: no unconformity)
    upper: np.ndarray | None  #: (nz, nx) bool, above the unconformity (None: no unconformity)


@dataclass
class _SaltDraw:
    """The salt bodies of step 6 and their level sets (negative inside)."""

    bodies: list[dict[str, Any]]
    phis: np.ndarray  #: (n_bodies, nz, nx) level set of each body, roughened
    phi: np.ndarray  #: (nz, nx) level set of their union, +inf where salt is not allowed (water, near the seabed)


def _draw_seabed(rng: np.random.Generator, cfg: GeologyConfig, x_row: np.ndarray, nz: int) -> np.ndarray:
    """Step 1: the seabed depth (nx,) in grid fractions; zeros without a water layer."""
    if not rng.random() < cfg.water_prob:
        return np.zeros(x_row.shape)
    d0 = rng.uniform(*cfg.water_depth)
    slope = rng.uniform(-0.5, 0.5) * d0
    wiggle = rng.uniform(0.0, 0.15) * d0
    lam, ph = rng.uniform(0.3, 1.5), rng.uniform(0.0, 2.0 * np.pi)
    seabed_row = d0 + slope * (x_row - 0.5) + wiggle * np.sin(2.0 * np.pi * x_row / lam + ph)
    return np.clip(seabed_row, max(1.0 / nz, 0.5 * cfg.water_depth[0]), 0.8)


def _draw_unconformity(rng: np.random.Generator, cfg: GeologyConfig, Z: np.ndarray, x_row: np.ndarray,
                       seabed_row: np.ndarray) -> tuple[Callable | None, np.ndarray | None]:
    """Step 5: with probability ``unconformity_prob``, the gentle folding of the upper sequence and the (nz, nx)
    mask above the erosional surface; ``(None, None)`` otherwise."""
    if not rng.random() < cfg.unconformity_prob:
        return None, None
    fold_upper = _fold_function(rng, cfg, 0.25)
    zu0 = max(rng.uniform(*cfg.unconformity_depth), float(seabed_row.max()) + 0.05)
    zu_row = zu0 + rng.uniform(-0.04, 0.04) * (x_row - 0.5) \
        + rng.uniform(0.0, 0.015) * np.sin(2.0 * np.pi * x_row / rng.uniform(0.2, 0.6) + rng.uniform(0, 6.3))
    return fold_upper, Z < zu_row[None, :]


def _draw_structure(rng: np.random.Generator, cfg: GeologyConfig, Z: np.ndarray, x_row: np.ndarray,
                    seabed_row: np.ndarray) -> _Structure:
    """Steps 3-5: folds, faults, unconformity."""
    fold_lower = _fold_function(rng, cfg, 1.0)
    faults = _sample_faults(rng, cfg)
    fold_upper, upper = _draw_unconformity(rng, cfg, Z, x_row, seabed_row)
    return _Structure(fold_lower, faults, fold_upper, upper)


def _draw_salt(rng: np.random.Generator, cfg: GeologyConfig, Z: np.ndarray, X: np.ndarray, allowed: np.ndarray,
               fold: Callable) -> _SaltDraw:
    """Step 6: salt bodies spread over the width, redrawn up to ``max_salt_tries`` times until their union covers
    a fraction of the grid within the configured bounds (the last draw is kept either way)."""
    kinds = np.array(cfg.salt_kinds)
    weights = None
    if cfg.salt_kind_weights is not None:
        weights = np.asarray(cfg.salt_kind_weights) / sum(cfg.salt_kind_weights)
    nz = Z.shape[0]
    n_pix = Z.size
    for _ in range(cfg.max_salt_tries):
        n_bodies = int(rng.integers(cfg.n_salt[0], cfg.n_salt[1] + 1))
        # spread the bodies over the width: one per slot, jittered inside it
        slots = (np.arange(n_bodies) + rng.uniform(0.15, 0.85, n_bodies)) / n_bodies
        centres = 0.1 + 0.8 * rng.permutation(slots)
        bodies = [sample_body(rng, str(rng.choice(kinds, p=weights)), float(c), cfg.v_salt, cfg.drag, nz)
                  for c in centres]
        noise = _smooth_field(rng, Z, X)
        phis = np.stack([body_level_set(b, Z, X, fold) for b in bodies])
        scale = cfg.salt_roughness * np.array([roughness_scale(b) for b in bodies])
        phis = phis + scale[:, None, None] * noise
        phi = np.where(allowed, phis.min(axis=0), np.inf)
        n_salt_pix = int(np.count_nonzero(phi < 0.0))
        if cfg.min_salt_fraction * n_pix <= n_salt_pix <= cfg.max_salt_fraction * n_pix:
            break
    return _SaltDraw(bodies, phis, phi)


def _salt_within_fraction(cfg: GeologyConfig, phi: np.ndarray) -> np.ndarray:
    """Step 7: the (nz, nx) bool salt mask, the union level set ``phi`` thresholded at 0, or dilated/eroded (a
    shifted threshold) to the nearest bound of ``[min_salt_fraction, max_salt_fraction]``."""
    n_pix = phi.size
    n_salt_pix = int(np.count_nonzero(phi < 0.0))
    threshold = 0.0
    if n_salt_pix < cfg.min_salt_fraction * n_pix:  # dilate
        threshold = np.nextafter(_kth_smallest(phi.ravel(), math.ceil(cfg.min_salt_fraction * n_pix) - 1), np.inf)
    elif n_salt_pix > cfg.max_salt_fraction * n_pix:  # erode
        threshold = _kth_smallest(phi.ravel(), math.floor(cfg.max_salt_fraction * n_pix))
    return phi < threshold


def _stratigraphic_coordinate(structure: _Structure, bodies: list[dict[str, Any]], Z: np.ndarray,
                              X: np.ndarray) -> np.ndarray:
    """Steps 2-5 applied: the (nz, nx) depth of deposition ``s``, unfaulted, unfolded and dragged up by the salt."""
    drag = np.zeros(Z.shape)
    for b in bodies:
        shift = body_drag(b, Z, X)
        if shift is not None:
            drag += shift
    Zf, Xf = _unfault(structure.faults, Z, X)
    s = Zf - structure.fold_lower(Xf, Zf) + drag
    if structure.upper is not None:
        s = np.where(structure.upper, Z - structure.fold_upper(X, Z) + 0.5 * drag, s)
    return s


def _draw_layers(rng: np.random.Generator, cfg: GeologyConfig, s: np.ndarray, sediment: np.ndarray,
                 upper: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Step 2: cut ``s`` into layers of random thickness. Returns the (nz, nx) int64 layer index (-1 in the water)
    and the number of layer ids. With an unconformity the layers are split between the two sequences in proportion
    to their areas."""
    n_total = int(rng.integers(cfg.n_layers[0], cfg.n_layers[1] + 1))
    if upper is not None:
        n_upper = int(np.clip(round(n_total * upper[sediment].mean()), 1, max(n_total - 1, 1)))
        sequences = [(upper & sediment, n_upper), (~upper & sediment, max(n_total - n_upper, 1))]
    else:
        sequences = [(sediment, n_total)]
    layer = np.full(s.shape, -1, dtype=np.int64)
    offset = 0
    for region, n_seq in sequences:
        if not region.any():
            continue
        lo, hi = float(s[region].min()), float(s[region].max())
        thickness = rng.uniform(0.35, 1.65, n_seq)
        bounds = lo + (hi - lo) * np.cumsum(thickness)[:-1] / thickness.sum()
        layer[region] = offset + np.searchsorted(bounds, s[region])
        offset += n_seq
    return layer, max(offset, 1)


def _sediment_velocities(rng: np.random.Generator, cfg: GeologyConfig, layer: np.ndarray, n_layer_ids: int,
                         sediment: np.ndarray, Z: np.ndarray, seabed: np.ndarray) -> np.ndarray:
    """(nz, nx) float64 velocity of water and sediments: the compaction trend at each layer's mean depth below the
    seabed, plus a per-layer jitter and a fraction of the trend inside the layer, clipped below the salt."""
    v_top, v_bottom = rng.uniform(*cfg.v_top), rng.uniform(*cfg.v_bottom)
    p = rng.uniform(*cfg.trend_exponent)
    zeta = np.clip((Z - seabed) / (1.0 - seabed), 0.0, 1.0)

    def trend(depth: np.ndarray) -> np.ndarray:
        return v_top + (v_bottom - v_top) * depth**p

    ids = layer[sediment]
    counts = np.bincount(ids, minlength=n_layer_ids)
    mean_zeta = np.bincount(ids, weights=zeta[sediment], minlength=n_layer_ids) / np.maximum(counts, 1)
    v_layer = trend(mean_zeta) + cfg.layer_jitter * rng.standard_normal(n_layer_ids)
    velocity = np.full(Z.shape, cfg.v_water, dtype=np.float64)
    v_sed = v_layer[ids] + cfg.intra_layer_gradient * (trend(zeta[sediment]) - trend(mean_zeta[ids]))
    velocity[sediment] = np.clip(v_sed, _V_SEDIMENT_MIN, cfg.v_salt[0] - _SALT_GAP)
    return velocity


# ---------------------------------------------------------------------------------------------------- generator


def generate_model(seed_or_rng: int | np.random.SeedSequence | np.random.Generator, nz: int, nx: int,
                   config: GeologyConfig = GeologyConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Draw one salt velocity model.

    ``seed_or_rng``: an int or ``np.random.SeedSequence`` (the model is a pure function of it) or a
    ``np.random.Generator`` (consumed; successive calls give different models).
    Returns ``(velocity, mask)``: velocity (nz, nx) float32 in m/s and the salt mask (nz, nx) uint8 (1 = salt).
    """
    if nz < 2 or nx < 2:
        raise ValueError(f"the grid must be at least 2 x 2, got {nz} x {nx}")
    rng = np.random.default_rng(seed_or_rng)
    Z, X = np.meshgrid((np.arange(nz) + 0.5) / nz, (np.arange(nx) + 0.5) / nx, indexing="ij")
    seabed_row = _draw_seabed(rng, config, X[0], nz)
    seabed = np.broadcast_to(seabed_row, (nz, nx))
    structure = _draw_structure(rng, config, Z, X[0], seabed_row)
    # salt is drawn before the layers: the bodies drag the sediments next to them
    draw = _draw_salt(rng, config, Z, X, Z >= seabed + _SEABED_MARGIN, structure.fold_lower)
    salt = _salt_within_fraction(config, draw.phi)
    sediment = ~(Z < seabed)
    s = _stratigraphic_coordinate(structure, draw.bodies, Z, X)
    layer, n_layer_ids = _draw_layers(rng, config, s, sediment, structure.upper)
    velocity = _sediment_velocities(rng, config, layer, n_layer_ids, sediment, Z, seabed)
    v_bodies = np.array([b["v"] for b in draw.bodies])
    velocity[salt] = v_bodies[np.argmin(draw.phis, axis=0)[salt]]
    return velocity.astype(np.float32), salt.astype(np.uint8)


def generate_models(seed: int | np.random.SeedSequence, n: int, nz: int, nx: int,
                    config: GeologyConfig = GeologyConfig()) -> tuple[np.ndarray, np.ndarray]:
    """``n`` independent models from child seeds of ``seed`` (model i depends only on ``seed`` and i).
    Returns velocities (n, nz, nx) float32 and masks (n, nz, nx) uint8."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    velocities = np.empty((n, nz, nx), dtype=np.float32)
    masks = np.empty((n, nz, nx), dtype=np.uint8)
    for i in range(n):  # the children spawn() would give, without mutating ``root``
        child = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i))
        velocities[i], masks[i] = generate_model(child, nz, nx, config)
    return velocities, masks
