"""How gathers are stored in a dataset file: time decimation, sample encoding and HDF5 filters.

A file records its gather storage in the root attribute ``gathers_storage`` (JSON); files without it are the
original layout: float32 at the survey's full time rate, gzip.

    {"time_decimation": 8, "encoding": "float16", "compression": "zstd"}

Encodings (a registry: `ENCODINGS`):

* ``float32``: the amplitudes as they are.
* ``float16``: IEEE half precision (relative error <= 2**-11, amplitudes must stay below 65504).
* ``int16``: per-sample scaled integers in the signed-log domain the network sees (OpenFWI normalisation
  ``sign(g) log1p(|g|)``, see `fwi.data.transforms`): ``q = round(L(g) / s)`` with ``s = max |L(g)| / 32767`` per
  sample, stored in ``gathers_scale`` (N,) float32. The error after the network's min-max normalisation is at most
  ``s / 2 / (g_max - g_min) * 2``, i.e. uniform and ~1e-4 of the range at most.

Time decimation ``k`` stores ``decimate_time(g, k)`` (the anti-aliased decimation training applies), so the stored
T axis has ``ceil(nt / k)`` samples. Readers must not decimate again: see `check_time_decimation`. ``k`` is bounded
by the wavelet (`max_time_decimation`: 13 for the 15 Hz, 1 ms presets).

Compact files use byte shuffle + Zstandard from ``hdf5plugin`` when it imports (gzip + shuffle otherwise); the filter
is recorded by HDF5 itself, and importing this module registers the plugin filters for every reader.

Integrity: Zstandard (as ``hdf5plugin`` writes it) carries no checksum, so damage inside a chunk decodes to other
numbers without an error. Every array of a compact file therefore also gets HDF5's Fletcher32 filter (after the
compression: a checksum of the stored bytes of each one-sample chunk), which HDF5 checks on every read: a damaged
sample is a read error. gzip (zlib) streams carry their own Adler-32 check. Compact files written before the
checksum can be read but not checked for damage (`fwi.data.store.unprotected_arrays`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from fwi.data.transforms import signed_expm1, signed_log1p
from fwi.registry import Registry

if TYPE_CHECKING:
    from fwi.physics import Survey

try:  # registers the Zstd/LZ4/Blosc filters with HDF5 for reading and writing
    import hdf5plugin
except ImportError:  # pragma: no cover - hdf5plugin is a dependency; keep reading gzip files without it
    hdf5plugin = None

INT16_MAX = 32767


class StorageError(ValueError):
    """An unknown encoding / compression or a decimation that does not fit the file."""


@dataclass(frozen=True)
class Encoding:
    """One way of storing (n, S, T, R) float32 gathers: ``encode`` gives the stored arrays, ``decode`` inverts it."""

    dtype: type
    encode: Callable[[np.ndarray], dict[str, np.ndarray]]
    decode: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    scaled: bool = False  # stores a per-sample ``gathers_scale`` array


def _encode_int16(g: np.ndarray) -> dict[str, np.ndarray]:
    log = signed_log1p(np.asarray(g, dtype=np.float64))
    peak = np.abs(log).reshape(len(log), -1).max(axis=1) if log.size else np.zeros(len(log))
    scale = np.where(peak > 0, peak / INT16_MAX, 1.0).astype(np.float32)
    q = np.rint(log / scale.astype(np.float64)[:, None, None, None])
    return {"gathers": np.clip(q, -INT16_MAX, INT16_MAX).astype(np.int16), "gathers_scale": scale}


def _decode_int16(q: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float32).reshape(-1, *([1] * (q.ndim - 1))) if q.ndim == 4 else np.float32(scale)
    return signed_expm1(q.astype(np.float32) * s).astype(np.float32)


def _encode_float16(g: np.ndarray) -> dict[str, np.ndarray]:
    g = np.asarray(g, dtype=np.float32)
    if g.size and np.abs(g).max() >= 65504:
        raise StorageError(f"gathers reach {np.abs(g).max():g}, beyond float16's range; use --dtype int16")
    return {"gathers": g.astype(np.float16)}


#: Gather encodings by name (``--dtype``).
ENCODINGS: Registry[Encoding] = Registry("gathers encoding")
ENCODINGS.register("float32", Encoding(np.float32, lambda g: {"gathers": np.asarray(g, dtype=np.float32)},
                                       lambda a, s: np.asarray(a, dtype=np.float32)))
ENCODINGS.register("float16", Encoding(np.float16, _encode_float16, lambda a, s: np.asarray(a, dtype=np.float32)))
ENCODINGS.register("int16", Encoding(np.int16, _encode_int16, _decode_int16, scaled=True))


def _zstd() -> dict[str, Any]:
    if hdf5plugin is None:
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    return {**hdf5plugin.Zstd(clevel=3), "shuffle": True}


#: HDF5 filter settings by name: ``COMPRESSIONS.build(name)`` gives h5py ``create_dataset`` keywords.
COMPRESSIONS: Registry[Callable[[], dict[str, Any]]] = Registry("compression")
COMPRESSIONS.register("gzip", lambda: {"compression": "gzip", "compression_opts": 4})
COMPRESSIONS.register("gzip-shuffle", lambda: {"compression": "gzip", "compression_opts": 4, "shuffle": True})
COMPRESSIONS.register("zstd", _zstd)


@dataclass(frozen=True)
class GatherStorage:
    """How a file stores its gathers; the default is the original layout (float32, full rate, gzip)."""

    time_decimation: int = 1
    encoding: str = "float32"
    compression: str = "gzip"

    def __post_init__(self) -> None:
        if isinstance(self.time_decimation, bool) or not isinstance(self.time_decimation, (int, np.integer)) \
                or self.time_decimation < 1:
            raise StorageError(f"time decimation must be an integer >= 1, got {self.time_decimation!r}")
        for registry, name in ((ENCODINGS, self.encoding), (COMPRESSIONS, self.compression)):
            try:
                registry.get(name)
            except ValueError as exc:  # the registry's "unknown <kind> 'x'; valid: ..." as a StorageError
                raise StorageError(str(exc)) from None

    @property
    def codec(self) -> Encoding:
        return ENCODINGS.get(self.encoding)

    @property
    def is_default(self) -> bool:
        return self == GatherStorage()

    def stored_nt(self, nt: int) -> int:
        """Length of the stored time axis for a survey of ``nt`` samples (`decimate_time` keeps every k-th)."""
        return -(-nt // self.time_decimation)

    def filters(self) -> dict[str, Any]:
        """h5py ``create_dataset`` keywords; a compact storage adds the Fletcher32 checksum (see the module doc)."""
        return {**COMPRESSIONS.build(self.compression), **({} if self.is_default else {"fletcher32": True})}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "GatherStorage":
        """The storage recorded in a file's root attributes (the default when absent)."""
        raw = attrs.get("gathers_storage")
        if raw is None:
            return cls()
        d = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)
        unknown = set(d) - {"time_decimation", "encoding", "compression"}
        if unknown:
            raise StorageError(f"unknown gathers_storage keys {sorted(unknown)}")
        return cls(**d)


#: `fwi.data.transforms.decimate_time` keeps frequencies below this fraction of the decimated Nyquist frequency.
DECIMATION_PASSBAND = 0.8


def max_time_decimation(survey: Survey) -> int:
    """The coarsest time decimation that keeps the wavelet's band: `decimate_time` by k keeps frequencies up to
    0.8 / (2 k dt), which must reach the Ricker wavelet's practical upper frequency `Survey.max_frequency` (2 x its
    centre frequency, where its spectrum is down to ~20 % of its peak). Salt70 (1 ms, 15 Hz): k <= 13, i.e. >= 10
    stored samples per wavelet length (2 / freq); a coarser k would low-pass the wavelet itself away."""
    return max(1, math.floor(DECIMATION_PASSBAND / (2 * survey.dt * survey.max_frequency) + 1e-9))


def check_decimation_bound(survey: Survey, k: int, what: str = "--time-decimation") -> None:
    """`StorageError` with the valid range when decimating ``survey``'s records by ``k`` would lose the wavelet."""
    k_max = max_time_decimation(survey)
    if k > k_max:
        stored = -(-survey.nt // k)
        raise StorageError(f"{what} {k} is too coarse for this survey: {stored} of {survey.nt} time samples would "
                           f"be left and the decimation filter would remove the {survey.freq:g} Hz wavelet's band "
                           f"(up to {survey.max_frequency:g} Hz at dt {survey.dt:g} s); valid range 1..{k_max}")


def check_time_decimation(storage: GatherStorage, requested: int, path: Any = "the dataset") -> int:
    """The decimation a reader still has to apply: ``requested`` for a full-rate file, 1 for a matching compact one.

    The rule: a file stored at decimation k > 1 can only be read with ``time_decimation == k`` (the network then
    gets the same (S, ceil(nt / k), R) input as from the full-rate file decimated on the fly); anything else is
    refused, because decimating decimated data again is not the decimation the run asked for.
    """
    k = storage.time_decimation
    if k == 1:
        return requested
    if requested != k:
        raise StorageError(f"{path} stores gathers already decimated in time by {k}; read it with time_decimation "
                           f"{k} (--time-decimation {k}; data.time_decimation: {k}), not {requested}, or use the "
                           "full-rate file")
    return 1
