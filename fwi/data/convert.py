"""Conversion of a dataset into one with gathers decimated in time and/or in a compact encoding (`convert`)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from fwi.data.codec import GatherStorage, check_decimation_bound
from fwi.data.output import check_out, lock_path, remove_debris
from fwi.data.store import DatasetError, damage_error, read_info, write_dataset
from fwi.data.transforms import decimate_time
from fwi.lock import exclusive_lock


def convert(src: str | Path, out: str | Path, *, time_decimation: int = 1, encoding: str = "float16",
            compression: str = "zstd", overwrite: bool = False, block: int = 64, progress: bool = True) -> Path:
    """Rewrite dataset ``src`` into ``out`` with gathers decimated in time by ``time_decimation`` (the anti-aliased
    `decimate_time` training applies) and stored as ``encoding``; normalisation and provenance are kept.

    ``src`` must be at the full time rate or already at ``time_decimation``.
    """
    src, out = Path(src), Path(out)
    info = read_info(src)
    storage = GatherStorage(time_decimation=time_decimation, encoding=encoding, compression=compression)
    check_decimation_bound(info.survey, time_decimation)
    k_in = info.storage.time_decimation
    if k_in not in (1, time_decimation):
        raise DatasetError(f"{src} is already decimated in time by {k_in}; convert from the full-rate file or keep "
                           f"--time-decimation {k_in}")
    factor = time_decimation if k_in == 1 else 1
    if src.resolve() == out.resolve():
        raise DatasetError("convert needs an --out other than the input file")
    check_out(out, overwrite)
    codec = info.storage.codec
    bar = tqdm(total=sum(info.sizes.values()), unit="sample", desc=f"converting {src.name}", disable=not progress,
               dynamic_ncols=True)

    def blocks(f: h5py.File, split: str):
        group, n = f[split], info.sizes[split]
        for start in range(0, n, block):
            where = slice(start, min(n, start + block))
            try:
                arrays = {key: group[key][where] for key in group}
            except OSError as exc:
                raise damage_error(src, group, split, where, exc) from None
            gathers = codec.decode(arrays["gathers"], arrays.get("gathers_scale"))
            if factor > 1:
                gathers = decimate_time(gathers, factor)
            yield where, {"velocity": arrays["velocity"], "salt_mask": arrays["salt_mask"],
                          "gathers": np.ascontiguousarray(gathers, dtype=np.float32)}
            bar.update(where.stop - where.start)

    keep = {k: v for k, v in info.attrs.items() if k in ("generator", "seed")}
    keep["converted_from"] = {"path": str(src), "gathers_storage": json.loads(info.storage.to_json())}
    with exclusive_lock(lock_path(out), what=f"conversion into {out}"):
        remove_debris(out)
        with h5py.File(src, "r") as f:
            write_dataset(out, {s: blocks(f, s) for s in info.sizes}, info.survey, sizes=info.sizes,
                          normalisation=info.normalisation, attrs=keep, overwrite=overwrite, storage=storage)
    bar.close()
    return out
