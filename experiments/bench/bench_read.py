"""Bytes per sample and read+decode throughput: a float32 dataset vs its compact conversions, side by side.

    python experiments/bench/bench_read.py [--data data/quick.h5] [--time-decimation 8]
        [--out experiments/bench/results/read_cpu.md]

Converts ``--data`` (full-rate float32, salt70 geometry) with `fwi.data.convert.convert` into float16 and int16 files
at ``--time-decimation``, then times `FWIDataset` over the train split (what training reads, normalised and
decimated to the same input): the float32 file cold (gzip decode + decimation), the float32 file from its in-memory
cache (second pass, the training default with num_workers=0), and each compact file read and decoded without cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import torch

from fwi.data.dataset import FWIDataset
from fwi.data.convert import convert


def split_bytes(path: Path) -> tuple[int, int]:
    """Stored bytes of every array and the number of samples."""
    total, n = 0, 0
    with h5py.File(path, "r") as f:
        for split in f:
            for key in f[split]:
                total += f[split][key].id.get_storage_size()
            n += f[split]["velocity"].shape[0]
    return total, n


def rate(ds: FWIDataset, passes: int = 1) -> float:
    """Samples per second of `passes` passes over ``ds`` (the last pass timed)."""
    for _ in range(passes - 1):
        for i in range(len(ds)):
            ds[i]
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path("data/quick.h5"))
    p.add_argument("--time-decimation", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("experiments/bench/results/read_cpu.md"))
    args = p.parse_args()
    k = args.time_decimation
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        files = {"float32 (today)": args.data}
        for dtype in ("float16", "int16"):
            start = time.perf_counter()
            files[f"{dtype}, decimated x{k}"] = convert(args.data, Path(tmp) / f"{dtype}.h5", time_decimation=k,
                                                        encoding=dtype, progress=False)
            print(f"converted to {dtype} in {time.perf_counter() - start:.1f} s", flush=True)
        base_bytes, base_n = split_bytes(args.data)
        for name, path in files.items():
            nbytes, n = split_bytes(path)
            if path == args.data:
                cold = rate(FWIDataset(path, "train", time_decimation=k, cache_gb=64.0))
                warm = rate(FWIDataset(path, "train", time_decimation=k, cache_gb=64.0), passes=2)
                rows.append((name, nbytes / n, os.path.getsize(path) / n, 1.0, f"{cold:.0f} cold / {warm:.0f} cached"))
            else:
                r = rate(FWIDataset(path, "train", time_decimation=k))
                rows.append((name, nbytes / n, os.path.getsize(path) / n, (base_bytes / base_n) / (nbytes / n),
                             f"{r:.0f} (no cache)"))
    lines = [f"# Read benchmark: {args.data}, time decimation {k}, train split, 1 torch thread", "",
             f"Command: `python experiments/bench/bench_read.py --data {args.data} --time-decimation {k}`", "",
             "| storage | bytes/sample (arrays) | bytes/sample (file) | smaller by | samples/s read+decoded |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| {n} | {b:,.0f} | {fb:,.0f} | {x:.1f}x | {r} |" for n, b, fb, x, r in rows]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
