"""Read and write SEG-Y shot gathers and velocity models (through segyio) with readable errors.

Conventions
-----------
* Arrays: `ShotGather.data` is **(R, T)** -- traces x samples, the order of the traces in the file. `write_gathers`
  takes the dataset layout **(S, T, R)**; `stack_gathers` turns a list of `ShotGather` into that layout.
* Time: ``dt`` is in seconds everywhere in Python; the file holds it in whole microseconds (binary header
  ``Interval`` and trace header ``TRACE_SAMPLE_INTERVAL``). Reading prefers the binary header and falls back to the
  first trace header when the binary field is 0.
* Positions (``SourceX``, ``GroupX``, ``CDP_X``) are metres, scaled by the coordinate scalar at trace byte 71
  (``SourceGroupScalar``): s > 0 multiplies, s < 0 divides by |s|, 0 means 1. Writing picks the smallest scalar
  (1, -10, -100, -1000) that represents the positions exactly; finer positions are rounded to millimetres.
  ``offset`` (byte 37) is **not** scaled: the SEG-Y standard applies the scalar only to bytes 73-88 and 181-188, so
  offsets are whole metres (written as ``round(GroupX - SourceX)``).
* Velocity models (`write_velocity`): one trace per x column (trace i is x = i * dx), samples along depth. The
  sample-interval fields hold the depth step **dz in millimetres** (the same integer field as microseconds for
  time data), so dz = 10 m is stored as 10000; cells are square (dz = dx). ``CDP_X`` holds x in metres, the binary
  header's ``MeasurementSystem`` is 1 (metres) and the textual header states the convention.
* Samples of every format segyio knows (IBM float, IEEE float, 1-8 byte integers) come back as float32.
* Endianness: ``endian="auto"`` reads the binary header's sample format code both ways and keeps the reading that is
  a SEG-Y format code (the two readings cannot both be valid). Files are written big-endian (the standard).

Every problem with a file (missing, not SEG-Y, truncated, no traces, unsupported format) raises `SegyError` naming
the file; segyio's own exceptions never escape. Writing is atomic: a temporary file in the target directory is
moved over the target only once complete.
"""

from __future__ import annotations

import os
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import segyio
from segyio import BinField, TraceField

from fwi.atomic import atomic_path

Endian = Literal["auto", "big", "little"]

TEXT_HEADER_BYTES = 3200
HEADER_BYTES = 3600  # textual + binary file header
TRACE_HEADER_BYTES = 240
#: bytes per sample of the SEG-Y sample format codes segyio reads (4 = fixed point with gain is not supported)
FORMAT_BYTES = {1: 4, 2: 4, 3: 2, 5: 4, 6: 8, 7: 3, 8: 1, 9: 8, 10: 4, 11: 2, 12: 8, 15: 3, 16: 1}
IEEE_FLOAT = 5
MAX_INT16 = 32767  # binary-header interval / sample count are 2-byte fields


class SegyError(RuntimeError):
    """A SEG-Y file that is missing, unreadable, truncated, empty or not SEG-Y; the message names the file."""


@dataclass(frozen=True)
class ShotGather:
    """One field record (shot) of a SEG-Y file.

    data: (R, T) float32, traces x samples in file order. dt: sample interval in seconds.
    source_x, receiver_x: (R,) float64 positions in metres (coordinate scalar applied) of each trace's source and
    receiver group. offsets: (R,) float64 header offsets (whole units, unscaled; see the module notes).
    """

    field_record: int
    data: np.ndarray
    dt: float
    source_x: np.ndarray
    receiver_x: np.ndarray
    offsets: np.ndarray

    @property
    def n_traces(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])


# ---------------------------------------------------------------------------------------------------- reading
def _probe(path: Path, endian: Endian) -> tuple[str, int, int]:
    """Check the file header before segyio sees the file; returns (endian, samples, format code)."""
    if not path.exists():
        raise SegyError(f"SEG-Y file {path} does not exist")
    if not path.is_file():
        raise SegyError(f"{path} is not a file")
    if endian not in ("auto", "big", "little"):
        raise ValueError(f"endian must be 'auto', 'big' or 'little', got {endian!r}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise SegyError(f"cannot read SEG-Y file {path}: {exc.strerror or exc}") from None
    if len(head) < HEADER_BYTES:
        raise SegyError(f"{path} is not a SEG-Y file: {size} bytes, shorter than the {HEADER_BYTES}-byte file header")
    binary = head[TEXT_HEADER_BYTES:]
    readings = {}
    for name, code in (("big", ">"), ("little", "<")):
        samples, fmt = struct.unpack(code + "H", binary[20:22])[0], struct.unpack(code + "h", binary[24:26])[0]
        ext_headers = struct.unpack(code + "h", binary[304:306])[0]
        readings[name] = (samples, fmt, ext_headers)
    order = ("big", "little") if endian == "auto" else (endian,)
    chosen = next((e for e in order if readings[e][1] in FORMAT_BYTES), None)
    if chosen is None:
        codes = ", ".join(f"{readings[e][1]} read {e}-endian" for e in order)
        hint = ""
        if endian != "auto":
            other = "little" if endian == "big" else "big"
            if readings[other][1] in FORMAT_BYTES:
                hint = f"; the file looks {other}-endian (use endian='auto' or '{other}')"
        raise SegyError(f"{path} is not a readable SEG-Y file: the binary header's sample format code is {codes}, "
                        f"not one of the supported codes {sorted(FORMAT_BYTES)}{hint}")
    samples, fmt, ext_headers = readings[chosen]
    if samples == 0:
        raise SegyError(f"{path}: the binary header gives 0 samples per trace")
    if ext_headers < 0:
        raise SegyError(f"{path}: the binary header gives {ext_headers} extended textual headers")
    data_bytes = size - HEADER_BYTES - TEXT_HEADER_BYTES * max(ext_headers, 0)
    trace_bytes = TRACE_HEADER_BYTES + samples * FORMAT_BYTES[fmt]
    if data_bytes <= 0:
        raise SegyError(f"{path} holds no traces: the file ({size} bytes) ends after its file headers")
    if data_bytes % trace_bytes:
        raise SegyError(
            f"{path} is truncated or has traces of different lengths: {data_bytes} bytes of traces is not a whole "
            f"number of {trace_bytes}-byte traces ({TRACE_HEADER_BYTES}-byte header + {samples} samples x "
            f"{FORMAT_BYTES[fmt]} bytes, format {fmt}); {data_bytes // trace_bytes} whole traces and "
            f"{data_bytes % trace_bytes} bytes left over")
    return chosen, samples, fmt


@contextmanager
def _open(path: str | os.PathLike, endian: Endian = "auto", ignore_geometry: bool = True) -> Iterator[segyio.SegyFile]:
    """segyio.open after `_probe`, with every segyio failure turned into `SegyError`."""
    path = Path(path)
    chosen, _, _ = _probe(path, endian)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = segyio.open(str(path), "r", ignore_geometry=ignore_geometry, endian=chosen)
    except SegyError:
        raise
    except (RuntimeError, OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise SegyError(f"segyio cannot open {path} ({chosen}-endian): {exc}") from None
    try:
        with f:
            if f.tracecount < 1:
                raise SegyError(f"{path} holds no traces")
            yield f
    except SegyError:
        raise
    except (RuntimeError, OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise SegyError(f"cannot read {path}: {exc}") from None


def _dt_seconds(f: segyio.SegyFile, path: Path) -> float:
    interval = int(f.bin[BinField.Interval])
    if interval <= 0:
        interval = int(f.header[0][TraceField.TRACE_SAMPLE_INTERVAL])
    if interval <= 0:
        raise SegyError(f"{path}: no sample interval in the binary header (Interval) or the first trace header")
    return interval / 1e6


def _scaled(f: segyio.SegyFile, field: int) -> np.ndarray:
    values = np.asarray(f.attributes(field)[:], dtype=np.float64)
    scalar = np.asarray(f.attributes(TraceField.SourceGroupScalar)[:], dtype=np.float64)
    factor = np.ones_like(scalar)
    factor[scalar > 0] = scalar[scalar > 0]
    factor[scalar < 0] = 1.0 / -scalar[scalar < 0]
    return values * factor


def _samples(f: segyio.SegyFile) -> np.ndarray:
    return np.asarray(f.trace.raw[:], dtype=np.float32).reshape(f.tracecount, len(f.samples))


def read_traces(path: str | os.PathLike, endian: Endian = "auto") -> tuple[np.ndarray, float]:
    """All traces of a file: ((n_traces, n_samples) float32, dt in seconds)."""
    path = Path(path)
    with _open(path, endian) as f:
        return _samples(f), _dt_seconds(f, path)


def read_gathers(path: str | os.PathLike, *, endian: Endian = "auto", ignore_geometry: bool = True) -> list[ShotGather]:
    """Split a file into shot gathers by FieldRecord (trace header byte 9), in order of first appearance.

    Gathers may have different trace counts; the traces of a record keep their file order even when its traces are
    not contiguous. A file whose FieldRecord is never set gives one gather with field_record 0.
    """
    path = Path(path)
    with _open(path, endian, ignore_geometry) as f:
        data = _samples(f)
        dt = _dt_seconds(f, path)
        records = np.asarray(f.attributes(TraceField.FieldRecord)[:], dtype=np.int64)
        source_x = _scaled(f, TraceField.SourceX)
        receiver_x = _scaled(f, TraceField.GroupX)
        offsets = np.asarray(f.attributes(TraceField.offset)[:], dtype=np.float64)
    _, first = np.unique(records, return_index=True)
    gathers = []
    for record in records[np.sort(first)]:
        idx = np.flatnonzero(records == record)
        gathers.append(ShotGather(int(record), np.ascontiguousarray(data[idx]), dt, source_x[idx], receiver_x[idx],
                                  offsets[idx]))
    return gathers


def stack_gathers(gathers: Sequence[ShotGather], path: str | os.PathLike = "") -> np.ndarray:
    """(S, T, R) float32 array of gathers that all have the same trace and sample counts."""
    if not gathers:
        raise SegyError(f"{path or 'the file'} holds no shot gathers")
    shapes = {g.data.shape for g in gathers}
    if len(shapes) > 1:
        counts = ", ".join(f"record {g.field_record}: {g.n_traces} traces x {g.n_samples} samples" for g in gathers)
        raise SegyError(f"{path or 'the file'}: the shot gathers differ in size ({counts}); the dataset layout "
                        "needs the same receivers for every shot")
    return np.stack([g.data.T for g in gathers]).astype(np.float32, copy=False)


def read_velocity(path: str | os.PathLike, endian: Endian = "auto") -> tuple[np.ndarray, float]:
    """Velocity model ((nz, nx) float32 m/s, dx in metres) from a `write_velocity` file or any post-stack file.

    Trace i is column x = i; samples run down in depth. dx is the sample-interval field read as millimetres (the
    `write_velocity` convention; for a time-domain file it is the interval in microseconds / 1000, which is
    meaningless as a length). When ``CDP_X`` is set and evenly spaced, its spacing must equal dx (square cells).
    """
    path = Path(path)
    with _open(path, endian) as f:
        traces = _samples(f)
        interval = int(f.bin[BinField.Interval]) or int(f.header[0][TraceField.TRACE_SAMPLE_INTERVAL])
        cdp_x = _scaled(f, TraceField.CDP_X)
    if interval <= 0:
        raise SegyError(f"{path}: no depth step in the sample-interval fields (binary Interval, trace header 117)")
    dx = interval / 1000.0
    if len(cdp_x) > 1 and np.any(cdp_x != 0):
        steps = np.diff(cdp_x)
        if np.allclose(steps, steps[0], rtol=1e-6, atol=1e-6) and not np.isclose(abs(steps[0]), dx, rtol=1e-6):
            raise SegyError(f"{path}: the depth step is {dx:g} m (sample interval {interval} mm) but CDP_X is spaced "
                            f"{abs(steps[0]):g} m; velocity models need square cells (dx == dz)")
    return np.ascontiguousarray(traces.T), dx


# ---------------------------------------------------------------------------------------------------- writing
def _coordinate_scalar(values: np.ndarray) -> int:
    """Smallest SEG-Y coordinate scalar (1, -10, -100, -1000) that stores ``values`` (m) exactly as int32."""
    for divisor in (1, 10, 100, 1000):
        scaled = values * divisor
        if np.all(np.abs(scaled - np.round(scaled)) <= np.maximum(1e-6, 8 * np.finfo(float).eps * np.abs(scaled))):
            break
    if np.abs(np.round(values * divisor)).max(initial=0) > 2**31 - 1:
        raise ValueError(f"positions up to {np.abs(values).max():g} m do not fit a SEG-Y coordinate at this precision")
    return 1 if divisor == 1 else -divisor


def _interval(value: float, scale: float, what: str) -> int:
    """``value * scale`` as the integer of the 2-byte SEG-Y sample-interval field (``what`` names the unit)."""
    count = float(value) * scale
    if not np.isfinite(count) or round(count) < 1 or abs(count - round(count)) > 1e-6 * max(1.0, count):
        raise ValueError(f"{what} must be a positive whole number for the SEG-Y sample-interval field, got {value!r}")
    if round(count) > MAX_INT16:
        raise ValueError(f"{what} = {value!r} does not fit the 2-byte SEG-Y sample-interval field (at most "
                         f"{MAX_INT16})")
    return int(round(count))


def _write(path: str | os.PathLike, traces: np.ndarray, interval: int, headers: list[dict[int, int]],
           binary: dict[int, int], text: dict[int, str], overwrite: bool) -> Path:
    """Write (n, ns) float32 traces as big-endian IEEE SEG-Y, atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    n, ns = traces.shape
    if ns > MAX_INT16:
        raise ValueError(f"{ns} samples per trace do not fit the 2-byte SEG-Y sample count (at most {MAX_INT16})")
    long_lines = [k for k, line in text.items() if len(line) > 76]
    assert not long_lines, f"textual header lines {long_lines} exceed 76 characters"
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = segyio.spec()
    spec.format = IEEE_FLOAT
    spec.samples = np.arange(ns) * interval / 1000.0
    spec.tracecount = n
    spec.endian = "big"
    with atomic_path(path) as tmp, segyio.create(str(tmp), spec) as f:  # segyio failing half way leaves nothing
        f.text[0] = segyio.tools.create_text_header(text)
        f.bin.update({BinField.Interval: interval, BinField.IntervalOriginal: interval, BinField.Samples: ns,
                      BinField.SamplesOriginal: ns, BinField.Format: IEEE_FLOAT, BinField.MeasurementSystem: 1,
                      **binary})
        for i in range(n):
            f.header[i] = {TraceField.TRACE_SEQUENCE_LINE: i + 1, TraceField.TRACE_SEQUENCE_FILE: i + 1,
                           TraceField.TRACE_SAMPLE_COUNT: ns, TraceField.TRACE_SAMPLE_INTERVAL: interval,
                           TraceField.CoordinateUnits: 1, **headers[i]}
            f.trace[i] = traces[i]
    return path


def write_gathers(
    path: str | os.PathLike,
    gathers: np.ndarray,
    dt: float,
    *,
    source_x: Sequence[float] | np.ndarray | None = None,
    receiver_x: Sequence[float] | np.ndarray | None = None,
    dx: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write (S, T, R) gathers as one FieldRecord per shot (1-based), big-endian IEEE float (format 5).

    source_x: (S,) metres; receiver_x: (R,) or (S, R) metres. Missing positions need ``dx``: receivers default to
    r * dx (one per cell) and sources to evenly spread receiver cells (the `fwi.physics.Survey` default when R = nx).
    Trace headers: FieldRecord, TraceNumber (1-based within the shot), SourceX, GroupX, SourceGroupScalar, offset,
    TRACE_SAMPLE_INTERVAL/COUNT; binary header: Interval, Samples, Format, Traces (per ensemble).
    """
    data = np.asarray(gathers, dtype=np.float32)
    if data.ndim != 3 or 0 in data.shape:
        raise ValueError(f"gathers must be a non-empty (S, T, R) array, got shape {data.shape}")
    n_shots, nt, nr = data.shape
    if (source_x is None or receiver_x is None) and dx is None:
        raise ValueError("give source_x and receiver_x, or dx for the default positions")
    if receiver_x is None:
        receiver_x = np.arange(nr) * float(dx)
    if source_x is None:
        source_x = np.round(np.linspace(0, nr - 1, n_shots)) * float(dx)
    sx = np.asarray(source_x, dtype=np.float64)
    gx = np.broadcast_to(np.asarray(receiver_x, dtype=np.float64), (n_shots, nr)) if np.ndim(receiver_x) == 1 \
        else np.asarray(receiver_x, dtype=np.float64)
    if sx.shape != (n_shots,) or gx.shape != (n_shots, nr):
        raise ValueError(f"source_x must be ({n_shots},) and receiver_x ({nr},) or ({n_shots}, {nr}); got "
                         f"{sx.shape} and {np.shape(receiver_x)}")
    if not (np.isfinite(sx).all() and np.isfinite(gx).all()):
        raise ValueError("source_x and receiver_x must be finite")
    scalar = _coordinate_scalar(np.concatenate([sx, gx.ravel()]))
    factor = -scalar if scalar < 0 else 1
    interval = _interval(dt, 1e6, "dt in microseconds")
    headers = []
    for s in range(n_shots):
        for r in range(nr):
            headers.append({TraceField.FieldRecord: s + 1, TraceField.TraceNumber: r + 1,
                            TraceField.SourceX: int(round(sx[s] * factor)),
                            TraceField.GroupX: int(round(gx[s, r] * factor)),
                            TraceField.SourceGroupScalar: scalar, TraceField.offset: int(round(gx[s, r] - sx[s]))})
    text = {1: "fwi shot gathers (fwi.io.segy.write_gathers)",
            2: f"{n_shots} shots = FieldRecord 1..{n_shots}, {nr} traces each, {nt} samples",
            3: f"sample interval {interval} us; IEEE float (format 5), big-endian",
            4: "SourceX, GroupX: metres x coordinate scalar (byte 71)",
            5: "offset (byte 37): whole metres, unscaled"}
    traces = np.ascontiguousarray(data.transpose(0, 2, 1).reshape(n_shots * nr, nt))
    return _write(path, traces, interval, headers, {BinField.Traces: nr, BinField.SortingCode: 1}, text, overwrite)


def write_velocity(path: str | os.PathLike, velocity: np.ndarray, dx: float, *, overwrite: bool = False) -> Path:
    """Write a (nz, nx) velocity model (m/s): trace i is the column at x = i * dx, samples run down in depth.

    The sample-interval fields hold dz = dx in millimetres (10 m -> 10000, at most 32.767 m); CDP_X holds x in metres
    (coordinate scalar at byte 71), CDP the 1-based column number.
    """
    v = np.asarray(velocity, dtype=np.float32)
    if v.ndim != 2 or 0 in v.shape:
        raise ValueError(f"velocity must be a non-empty (nz, nx) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("velocity contains NaN or inf values")
    nz, nx = v.shape
    interval = _interval(dx, 1e3, "dx in millimetres")
    xs = np.arange(nx) * float(dx)
    scalar = _coordinate_scalar(xs)
    factor = -scalar if scalar < 0 else 1
    headers = [{TraceField.CDP: i + 1, TraceField.CDP_X: int(round(xs[i] * factor)),
                TraceField.SourceGroupScalar: scalar} for i in range(nx)]
    text = {1: "fwi velocity model in m/s (fwi.io.segy.write_velocity)",
            2: f"{nx} traces = x columns, {nz} samples = depth; IEEE float (format 5)",
            3: f"sample interval field = depth step in MILLIMETRES: {interval} = {float(dx):g} m",
            4: "square cells: dx = dz; CDP = column number (1-based)",
            5: "CDP_X (byte 181): x in metres x coordinate scalar (byte 71)"}
    return _write(path, np.ascontiguousarray(v.T), interval, headers, {}, text, overwrite)
