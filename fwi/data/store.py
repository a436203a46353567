"""The HDF5 dataset layout, written atomically, checked when opened, read with clear errors.

One file holds the splits of one dataset::

    /                     attrs: format="fwi-dataset", format_version, survey (JSON), normalisation (JSON),
                                 generator (JSON), seed, versions (JSON), created,
                                 gathers_storage (JSON, `fwi.data.codec`; absent = float32 at the full time rate),
                                 validated (JSON: what was checked and the storage fingerprint, see below)
    /<split>/velocity     (N, 1, nz, nx) float32, m/s
    /<split>/salt_mask    (N, 1, nz, nx) uint8, 1 = salt
    /<split>/gathers      (N, S, T', R)  receiver amplitudes; float32 with T' = nt by default, otherwise as
                                         ``gathers_storage`` says (T' = ceil(nt / time_decimation))
    /<split>/gathers_scale (N,) float32  only for the scaled int16 encoding

``split`` is any of ``train``, ``val``, ``test``. Arrays are chunked one sample per chunk and compressed. Checked on
open (`read_info`, which every reader goes through): the layout, the survey, the normalisation (present, finite, min
< max), array presence, numeric dtypes, equal lengths within a split, shapes that fit the survey and the gather
storage. The values (finite gathers, finite positive velocity) are checked when the file is written (`write_dataset`
checks every block) and the writer stamps the file with a *fingerprint* of its storage: the shape, dtype and the
(address, size, filter mask) of every chunk of every array, plus the metadata attributes. Rewriting any chunk
through HDF5 changes its size or address (or an attribute), so on open the fingerprint is recomputed from the chunk
index alone (milliseconds, no data read) and a mismatch means the file was changed after it was checked.
``read_info(path, full=True)`` (CLI: ``python -m fwi.data.generate verify FILE``) reads every sample and checks the
values; ``verify --stamp`` then stamps the file.

Files written before the stamp existed are accepted: their velocity arrays are checked in full on open, and a
note says the gathers were not (``verify --stamp`` checks and stamps them).

Damage to the bytes of a chunk (a flipped bit on disk) keeps the chunk index, so the fingerprint cannot see it:
HDF5 finds it when the chunk is read, through the deflate stream's Adler-32 (default files) or the Fletcher32
checksum of compact files (`fwi.data.codec`). ``verify`` reads every chunk and names the damaged samples; arrays
with neither check (compact files written before the checksum) are listed in `DatasetInfo.unprotected`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np
from tqdm.auto import tqdm

from fwi.atomic import atomic_path
from fwi.data.codec import GatherStorage, StorageError
from fwi.data.h5write import check_free_space, h5_writing
from fwi.data.transforms import signed_log1p
from fwi.physics import Survey

FORMAT = "fwi-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
ARRAYS = {"velocity": np.float32, "salt_mask": np.uint8, "gathers": np.float32}
NORMALISATION_KEYS = ("v_min", "v_max", "g_min", "g_max")
STAMP = "validated"
#: Metadata attributes covered by the fingerprint besides the arrays.
STAMPED_ATTRS = ("format", "survey", "normalisation", "gathers_storage")
VERIFY_BLOCK = 64  # samples per read when a whole split is checked


class DatasetError(RuntimeError):
    """A dataset file that is missing, corrupt, truncated or not in the fwi layout."""


def package_versions() -> dict[str, str]:
    """Versions of what made the file (recorded in it)."""
    import deepwave
    import torch

    import fwi
    return {"fwi": fwi.__version__, "torch": torch.__version__, "deepwave": deepwave.__version__,
            "numpy": np.__version__, "h5py": h5py.__version__, "python": platform.python_version()}


def array_keys(storage: GatherStorage = GatherStorage()) -> tuple[str, ...]:
    """Names of the arrays a split holds with this gather storage."""
    return (*ARRAYS, "gathers_scale") if storage.codec.scaled else tuple(ARRAYS)


def expected_shapes(n: int, survey: Survey, storage: GatherStorage = GatherStorage()) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays of an ``n``-sample split."""
    s, t, r = survey.data_shape
    shapes = {"velocity": (n, 1, survey.nz, survey.nx), "salt_mask": (n, 1, survey.nz, survey.nx),
              "gathers": (n, s, storage.stored_nt(t), r)}
    if storage.codec.scaled:
        shapes["gathers_scale"] = (n,)
    return shapes


def create_split(group: h5py.Group, n: int, survey: Survey, storage: GatherStorage = GatherStorage()) -> None:
    """Create the arrays of one split with sample-sized chunks."""
    for key, shape in expected_shapes(n, survey, storage).items():
        if key == "gathers":
            dtype, filters = storage.codec.dtype, storage.filters()
        elif key == "gathers_scale":
            dtype, filters = np.float32, storage.filters()
        else:
            dtype, filters = ARRAYS[key], ({"compression": "gzip", "compression_opts": 4} if storage.is_default
                                           else storage.filters())
        chunks = (1, *shape[1:]) if n and len(shape) > 1 else (max(1, min(n, 4096)),) if n else None
        group.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, **(filters if n else {}))


def write_block(group: h5py.Group, where: slice, block: Mapping[str, np.ndarray] | h5py.Group,
                storage: GatherStorage = GatherStorage()) -> None:
    """Write a block of samples into a split at rows ``where``; gathers are float32 at the stored time rate and
    are encoded here.

    A block that is itself an HDF5 group in this layout (same dtypes, one-sample chunks, same filters, e.g. a
    generation part) is copied chunk by chunk, not re-encoded (an int16 file's per-sample scales by value)."""
    keys = array_keys(storage)
    per_sample = [k for k in keys if k != "gathers_scale"]  # the scales are chunked by split
    if isinstance(block, h5py.Group) and all(k in block and block[k].dtype == group[k].dtype for k in keys) \
            and all(_same_storage(block[k], group[k]) for k in per_sample):
        for key in per_sample:
            src, dst = block[key].id, group[key].id
            tail = (0,) * (len(group[key].shape) - 1)
            for i in range(block[key].shape[0]):
                mask, chunk = src.read_direct_chunk((i, *tail))
                dst.write_direct_chunk((where.start + i, *tail), chunk, mask)
        if "gathers_scale" in keys:
            group["gathers_scale"][where] = block["gathers_scale"][()]
        return
    encoded = {"velocity": np.asarray(block["velocity"], dtype=ARRAYS["velocity"]),
               "salt_mask": np.asarray(block["salt_mask"], dtype=ARRAYS["salt_mask"]),
               **storage.codec.encode(np.asarray(block["gathers"], dtype=np.float32))}
    for key in keys:
        group[key][where] = encoded[key]


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
    storage: GatherStorage = GatherStorage(),
) -> Path:
    """Write a dataset file atomically: nothing appears at ``path`` unless the whole file was written and checked.

    ``splits[name]`` is either a dict of whole arrays (velocity, salt_mask, gathers) or an iterable of
    (slice, dict of arrays) blocks (give ``sizes[name]`` then), so large datasets stream without being held in memory.
    Gathers are float32 with ``storage.stored_nt(nt)`` time samples (already decimated for a decimated storage).
    A block may also be an open HDF5 group in this layout that was checked when it was written (`write_part`):
    its chunks are copied as they are, and its ``normalisation`` attribute stands for its statistics.
    ``normalisation`` defaults to the statistics of the train split (see `compute_normalisation`).
    The file is stamped as validated (see the module docstring).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = RunningNormalisation()
    with atomic_path(path) as tmp:
        with h5_writing(tmp, path) as (f, guard):
            for name, content in splits.items():
                if name not in SPLITS:
                    raise DatasetError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
                blocks = [(slice(None), content)] if isinstance(content, Mapping) else content
                n = (len(content["velocity"]) if isinstance(content, Mapping) else (sizes or {}).get(name))
                if n is None:
                    raise ValueError(f"split {name!r} is streamed: give sizes[{name!r}]")
                group = f.create_group(name)
                create_split(group, n, survey, storage)
                for where, arrays in blocks:
                    known = isinstance(arrays, h5py.Group) and "normalisation" in arrays.attrs
                    if not known:
                        check_sample_arrays(arrays, survey, storage)
                    write_block(group, where, arrays, storage)
                    guard.check()  # a full disk: stop now (DiskFullError), not after the last block
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
            if not storage.is_default:
                f.attrs["gathers_storage"] = storage.to_json()
            f.attrs["versions"] = json.dumps(package_versions())
            f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            for key, value in (attrs or {}).items():
                f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        stamp(tmp, by="write_dataset", target=path)  # after closing: every chunk has its final place in the file
    return path


def check_sample_arrays(arrays: Mapping[str, np.ndarray], survey: Survey,
                        storage: GatherStorage = GatherStorage()) -> None:
    """Shapes and values of a block of samples must fit the survey (gathers: float32 at the stored time rate)."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise DatasetError(f"missing arrays {missing}; a block needs {list(ARRAYS)}")
    v, m, g = (np.asarray(arrays[k]) for k in ARRAYS)
    expect = expected_shapes(len(v), survey, storage)
    for key, arr in zip(ARRAYS, (v, m, g)):
        if arr.shape != expect[key]:
            raise DatasetError(f"{key} has shape {arr.shape}, expected {expect[key]} for this survey")
    check_values(v, m, g)


def check_values(velocity: np.ndarray, mask: np.ndarray, gathers: np.ndarray, where: str = "") -> None:
    """Finite positive velocity, finite gathers, a 0/1 salt mask; `DatasetError` naming ``where`` otherwise."""
    at = f" ({where})" if where else ""
    if not np.isfinite(velocity).all():
        raise DatasetError(f"velocity contains NaN or inf{at}")
    if not np.isfinite(gathers).all():
        raise DatasetError(f"gathers contain NaN or inf{at}")
    if velocity.size and velocity.min() <= 0:
        raise DatasetError(f"velocity must be positive, found {velocity.min():g} m/s{at}")
    if mask.size and not np.isin(mask, (0, 1)).all():
        raise DatasetError(f"salt_mask holds values other than 0 and 1{at}")


class RunningNormalisation:
    """Min/max of velocity and of sign(g) log1p(|g|) over the blocks it sees (the OpenFWI normalisation)."""

    def __init__(self) -> None:
        self.v, self.g = [np.inf, -np.inf], [np.inf, -np.inf]

    def update(self, velocity: np.ndarray, gathers: np.ndarray) -> None:
        # sign(g) log1p(|g|) is monotonic: the transform of the extremes, not of every sample (~6 % of a generation)
        ends = signed_log1p(np.array([np.min(gathers), np.max(gathers)], dtype=gathers.dtype))
        self.v = [min(self.v[0], float(np.min(velocity))), max(self.v[1], float(np.max(velocity)))]
        self.g = [min(self.g[0], float(ends[0])), max(self.g[1], float(ends[1]))]

    def include(self, other: Mapping[str, float]) -> None:
        """Merge the statistics of another block (a `result` dict)."""
        self.v = [min(self.v[0], float(other["v_min"])), max(self.v[1], float(other["v_max"]))]
        self.g = [min(self.g[0], float(other["g_min"])), max(self.g[1], float(other["g_max"]))]

    def result(self) -> dict[str, float]:
        if not np.isfinite(self.v[0]):
            raise DatasetError("no train split to compute the normalisation from; pass normalisation=")
        return {"v_min": self.v[0], "v_max": self.v[1], "g_min": self.g[0], "g_max": self.g[1]}


# ---------------------------------------------------------------------------------------------- the stamp
def fingerprint(f: h5py.File) -> str:
    """SHA-256 of the metadata attributes and of every array's shape, dtype and chunk index (address, size, mask)."""
    h = hashlib.sha256()
    for key in STAMPED_ATTRS:
        h.update(f"{key}={f.attrs.get(key)!r};".encode())
    for split in SPLITS:
        if split not in f:
            continue
        for key in sorted(f[split]):
            d = f[split][key]
            if not isinstance(d, h5py.Dataset):
                continue
            h.update(f"{split}/{key}:{d.shape}:{d.dtype.str}:".encode())
            for info in _chunk_index(d):
                h.update(np.asarray(info, dtype=np.int64).tobytes())
    return h.hexdigest()


def _chunk_index(d: h5py.Dataset) -> list[tuple[int, int, int]]:
    if d.chunks is None:
        offset = d.id.get_offset()
        return [(-1 if offset is None else offset, d.id.get_storage_size(), 0)]
    out: list[tuple[int, int, int]] = []
    if hasattr(d.id, "chunk_iter"):
        d.id.chunk_iter(lambda c: out.append((c.byte_offset, c.size, c.filter_mask)))
    else:  # pragma: no cover - HDF5 < 1.12.3
        for i in range(d.id.get_num_chunks()):
            c = d.id.get_chunk_info(i)
            out.append((c.byte_offset, c.size, c.filter_mask))
    return out


def stamp(path: str | os.PathLike, by: str, target: str | os.PathLike | None = None) -> None:
    """Record in the file that its values were checked, with its storage fingerprint.

    ``target``: ``path`` is the temporary file of ``target`` (a full disk is then a `DiskFullError` naming it);
    without it the file is updated in place, refused up front when its disk is nearly full."""
    if target is None:
        check_free_space(path)
    with h5_writing(path, target, mode="r+") as (f, _):
        f.attrs[STAMP] = json.dumps({"by": by, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "fingerprint": fingerprint(f),
                                     "checked": "shapes, dtypes, finite gathers, finite positive velocity, 0/1 masks"})


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class DatasetInfo:
    """What a valid dataset file holds."""

    path: Path
    survey: Survey
    sizes: dict[str, int]
    normalisation: dict[str, float]
    attrs: dict[str, Any]
    storage: GatherStorage = field(default_factory=GatherStorage)
    stamped: bool = False
    unprotected: tuple[str, ...] = ()  # "split/array" whose damage cannot be detected (see `unprotected_arrays`)


_NOTED: set[str] = set()


def read_info(path: str | os.PathLike, *, full: bool = False, progress: bool = False) -> DatasetInfo:
    """Open and check a dataset file; `DatasetError` with one readable line naming the file and the problem.

    ``full``: also read every sample and check its values (streaming, ``progress`` shows a bar).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist (make one with `python -m fwi.data.generate`)")
    if path.is_dir():
        raise DatasetError(f"dataset {path} is a directory, not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            info = _check_layout(path, f)
            if full:
                _check_all_values(path, f, info, progress)
            elif info.stamped:
                record = _decode(f.attrs[STAMP])
                recorded = record.get("fingerprint") if isinstance(record, dict) else None
                if recorded != fingerprint(f):
                    raise DatasetError(f"{path} was modified after it was written and checked (its storage "
                                       "fingerprint differs); check it with `python -m fwi.data.generate verify "
                                       f"{path}` (add --stamp to accept it)")
            else:
                _check_velocity(path, f, info)
                if str(path.resolve()) not in _NOTED:
                    _NOTED.add(str(path.resolve()))
                    print(f"note: {path} predates validation stamps: its velocity was checked, its gathers were not; "
                          f"run `python -m fwi.data.generate verify {path} --stamp` once to check and stamp it",
                          file=sys.stderr)
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DatasetError(f"{path} is corrupt or truncated and cannot be read ({' '.join(str(exc).split())})") \
            from None
    return info


def _check_layout(path: Path, f: h5py.File) -> DatasetInfo:
    if f.attrs.get("format") != FORMAT:
        raise DatasetError(f"{path} is an HDF5 file but not an fwi dataset (no format={FORMAT!r} attribute)")
    attrs = {k: _decode(v) for k, v in f.attrs.items()}
    if "survey" not in f.attrs:
        raise DatasetError(f"{path} has no survey attribute")
    try:
        survey = Survey.from_json(f.attrs["survey"])
    except (ValueError, TypeError, KeyError) as exc:
        raise DatasetError(f"{path}: the survey attribute is not a valid survey ({exc})") from None
    try:
        storage = GatherStorage.from_attrs(f.attrs)
    except (StorageError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: the gathers_storage attribute is not valid ({exc})") from None
    norm = _check_normalisation(path, attrs.get("normalisation"))
    sizes = {}
    for split in SPLITS:
        if split not in f:
            continue
        if not isinstance(f[split], h5py.Group):
            raise DatasetError(f"{path}: {split!r} is not a group of arrays")
        group = f[split]
        expect = expected_shapes(0, survey, storage)
        for key in expect:
            if key not in group or not isinstance(group[key], h5py.Dataset):
                raise DatasetError(f"{path}: split {split!r} lacks the {key!r} array")
        lengths = {key: group[key].shape[0] if group[key].ndim else None for key in expect}
        if len(set(lengths.values())) != 1:
            raise DatasetError(f"{path}: the arrays of split {split!r} disagree in length "
                               f"({', '.join(f'{k} {v}' for k, v in lengths.items())})")
        n = lengths["velocity"]
        for key, shape in expected_shapes(n, survey, storage).items():
            d = group[key]
            if not (np.issubdtype(d.dtype, np.number) or d.dtype == np.bool_):
                raise DatasetError(f"{path}: {split}/{key} has the non-numeric dtype {d.dtype}")
            if d.shape != shape:
                what = "the stored survey (S, T, R)" if key == "gathers" else "the survey grid"
                raise DatasetError(f"{path}: {split}/{key} has shape {d.shape}, but {what} needs {shape}")
        if not storage.is_default and group["gathers"].dtype != storage.codec.dtype:
            raise DatasetError(f"{path}: {split}/gathers is {group['gathers'].dtype}, but the file says "
                               f"{storage.encoding}")
        if storage.codec.scaled:  # N numbers: cheap enough to check on every open
            scale = group["gathers_scale"][()]
            if not (np.isfinite(scale).all() and (scale > 0).all()):
                raise DatasetError(f"{path}: {split}/gathers_scale is not finite and positive")
        sizes[split] = int(n)
    return DatasetInfo(path, survey, sizes, norm, attrs, storage, STAMP in f.attrs, unprotected_arrays(f))


def unprotected_arrays(f: h5py.File) -> tuple[str, ...]:
    """The non-empty arrays ("split/name") whose damage HDF5 cannot detect on read: neither a Fletcher32 checksum
    nor a deflate (zlib: Adler-32 checked) filter, e.g. Zstd-compressed arrays of compact files written before
    compact files got the checksum."""
    return tuple(f"{split}/{key}" for split in SPLITS if split in f for key, d in f[split].items()
                 if isinstance(d, h5py.Dataset) and d.size and not (d.fletcher32 or d.compression == "gzip"))


def _check_normalisation(path: Path, norm: Any) -> dict[str, float]:
    if norm is None:
        raise DatasetError(f"{path} has no normalisation attribute")
    if not isinstance(norm, dict) or any(k not in norm for k in NORMALISATION_KEYS):
        raise DatasetError(f"{path}: the normalisation attribute must hold {', '.join(NORMALISATION_KEYS)}, "
                           f"got {norm!r}")
    try:
        values = {k: float(norm[k]) for k in NORMALISATION_KEYS}
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: the normalisation attribute holds non-numbers: {norm!r}") from None
    if not all(math.isfinite(v) for v in values.values()):
        raise DatasetError(f"{path}: the normalisation attribute is not finite: {values}")
    if not (values["v_min"] < values["v_max"] and values["g_min"] < values["g_max"]):
        raise DatasetError(f"{path}: the normalisation bounds need min < max, got {values}")
    return dict(norm)


def _blocks(n: int, size: int = VERIFY_BLOCK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _check_velocity(path: Path, f: h5py.File, info: DatasetInfo) -> None:
    for split, n in info.sizes.items():
        for where in _blocks(n, 1024):
            v = f[split]["velocity"][where]
            if not np.isfinite(v).all() or (v.size and v.min() <= 0):
                raise DatasetError(f"{path}: {split}/velocity is not finite and positive (samples "
                                   f"{where.start}..{where.stop - 1})")


def _check_all_values(path: Path, f: h5py.File, info: DatasetInfo, progress: bool) -> None:
    codec = info.storage.codec
    bar = tqdm(total=sum(info.sizes.values()), unit="sample", desc=f"verifying {path.name}", disable=not progress,
               dynamic_ncols=True)
    for split, n in info.sizes.items():
        group = f[split]
        for where in _blocks(n):
            try:
                arrays = {key: group[key][where] for key in array_keys(info.storage)}
            except OSError as exc:
                raise damage_error(path, group, split, where, exc) from None
            scale = arrays.get("gathers_scale")
            if scale is not None and not (np.isfinite(scale).all() and (scale > 0).all()):
                raise DatasetError(f"{path}: {split}/gathers_scale is not finite and positive")
            check_values(arrays["velocity"], arrays["salt_mask"], codec.decode(arrays["gathers"], scale),
                         where=f"{path}: {split} samples {where.start}..{where.stop - 1}")
            bar.update(where.stop - where.start)
    bar.close()


def damage_error(path: Path, group: h5py.Group, split: str, where: slice, exc: OSError) -> DatasetError:
    """The error for a block of samples HDF5 cannot read, naming the damaged samples (read one by one)."""
    bad: dict[int, list[str]] = {}
    for i in range(where.start, where.stop):
        for key, d in group.items():
            try:
                d[i]
            except OSError:
                bad.setdefault(i, []).append(key)
    if not bad:
        return DatasetError(f"{path}: samples {where.start}..{where.stop - 1} of {split!r} cannot be read "
                            f"({' '.join(str(exc).split())})")
    shown = "; ".join(f"sample {i} ({', '.join(keys)})" for i, keys in list(bad.items())[:8])
    more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
    return DatasetError(f"{path}: {split} {shown}{more} damaged: the stored chunk fails its checksum or cannot be "
                        "decompressed; regenerate or convert the file again")


def verify(path: str | os.PathLike, *, stamp_file: bool = False, progress: bool = True) -> DatasetInfo:
    """Full check of every sample (`read_info(full=True)`); with ``stamp_file`` record the check in the file."""
    info = read_info(path, full=True, progress=progress)
    if stamp_file:
        stamp(path, by="verify")
    return info


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value.item() if isinstance(value, np.generic) else value
