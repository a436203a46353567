"""Generate a dataset of salt velocity models and their shot gathers into one HDF5 file.

    python -m fwi.data.generate --preset salt70 --out data/salt70.h5 [--workers 2] [--seed 0]
    python -m fwi.data.generate --preset salt70 --out data/salt70.h5 --resume        # after an interruption
    python -m fwi.data.generate --preset salt70 --out data/salt70.h5 --shard 0/4     # on 4 machines ...
    python -m fwi.data.generate merge --out data/salt70.h5 [--parts DIR ...]        # ... then merge
    python -m fwi.data.generate --preset salt70 --out data/salt70.h5 --launcher slurm --shards 16 --partition cpu
    python -m fwi.data.generate verify data/salt70.h5 [--stamp]                      # read and check every sample
    python -m fwi.data.generate convert data/salt70.h5 --out data/salt70-d8.h5 --time-decimation 8 --dtype float16

Work is cut into parts of a few samples. Each part is modelled and written to ``<out>.parts/`` atomically (temp
file + rename), so a killed run leaves only complete parts and ``--resume`` picks up the rest. When every part
exists they are merged into ``<out>`` (again atomically) and the parts are removed. Sample ``i`` of a split is
drawn from the seed sequence (seed, split, i): the dataset does not depend on workers, shards or interruptions.

One owner per output: a generation (or merge, or conversion) into ``<out>`` holds an exclusive lock on
``<out>.lock`` (`fwi.lock`); a second one refuses at once and names the holder. A shard holds
``<out>.shard-i-of-n.lock`` instead, so that several shards may share one directory. Temporary files left by a killed
writer (``.<name>.<pid>.<tid>.tmp.h5`` beside ``<out>`` and in ``<out>.parts/``) are removed by the next run of the
same target when their writer's pid is no longer alive (a shard leaves them to the merge: on a cluster, the writer
of a temporary file beside it may be alive on another node). A bad ``--out`` (a directory, an unwritable place, a parent
that cannot be created) is refused before any work. A full disk stops the command with one ``error: disk full ...``
line naming the place (`fwi.atomic.DiskFullError`); the finished parts stay for ``--resume``, and the merge checks
that the merged file fits before it starts.

``--launcher local|slurm|submitit-local --shards N`` runs the N shards of one generation as jobs of `fwi.launch`
(subprocesses here, SLURM jobs through submitit, or submitit's local executor) and merges them when all succeeded.
Each job is ``python -m fwi.data.generate --shard i/N ...`` writing into ``<out>.parts/``, its output going to
``<out>.parts/logs/shard-i-of-N.log``. Existing parts of the same settings are always kept, so after a failed shard
(one ``error:`` line naming it and its log, exit 2) the same command relaunches only the unfinished shards.
Without ``--launcher``, ``--workers`` processes of this one command share the work.

``convert`` rewrites a dataset with its gathers decimated in time and/or in a compact encoding (`fwi.data.codec`),
keeping its normalisation, so that training reads the same network input from it (with the same
``data.time_decimation``); the output is written atomically and stamped as validated.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

from fwi.atomic import disk_full_hint
from fwi.cli import ArgumentParser, friendly_errors, positive_int
from fwi.data.codec import COMPRESSIONS, ENCODINGS
from fwi.data.convert import convert
from fwi.data.output import check_out, lock_path, remove_debris
from fwi.data.parts import manifest_for, merge_parts, plan_parts, prepare_parts_dir
from fwi.data.presets import PRESETS, Preset, get_preset
from fwi.data.shards import launch_generation
from fwi.data.store import read_info, verify
from fwi.data.workers import generate_parts
from fwi.distributed import resolve_device
from fwi.launch import LAUNCHERS, add_launcher_args, options_from_args
from fwi.lock import exclusive_lock


def generate(out: str | Path, preset: str = "tiny", *, seed: int = 0, workers: int = 1, resume: bool = False,
             overwrite: bool = False, shard: tuple[int, int] | None = None, sizes: dict[str, int] | None = None,
             progress: bool = True, device: str = "cpu") -> Path | None:
    """Generate preset ``preset`` into ``out``; returns the dataset path (None for a shard, which only writes parts).

    ``device``: ``cpu`` (bit for bit reproducible), ``cuda`` or ``auto`` (CUDA when available), see `model_part`.
    """
    out = Path(out)
    dev = resolve_device(device)
    spec = get_preset(preset)
    sizes = dict(sizes or spec.sizes)
    check_out(out, overwrite)
    lock = lock_path(out) if shard is None else out.with_name(f"{out.name}.shard-{shard[0]}-of-{shard[1]}.lock")
    parts_dir = out.with_name(out.name + ".parts")
    hint = (f"the finished parts in {parts_dir} are kept: free some space, then "
            + ("run the same command again to continue" if shard else "rerun with --resume to continue"))
    with exclusive_lock(lock, what=f"generation into {out}" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")), \
            disk_full_hint(hint):
        return _generate(out, preset, spec, sizes, seed=seed, workers=workers, resume=resume, overwrite=overwrite,
                         shard=shard, progress=progress, device=dev)


def _generate(out: Path, preset: str, spec: Preset, sizes: dict[str, int], *, seed: int, workers: int, resume: bool,
              overwrite: bool, shard: tuple[int, int] | None, progress: bool,
              device: torch.device = torch.device("cpu")) -> Path | None:
    parts_dir = out.with_name(out.name + ".parts")
    if shard is None:  # a shard leaves debris to the merge: on a cluster another node's live writer is no pid here
        remove_debris(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if overwrite and not resume:
        shutil.rmtree(parts_dir, ignore_errors=True)
    manifest = manifest_for(preset, spec, seed, sizes)
    prepare_parts_dir(parts_dir, manifest, resume or shard is not None)
    parts = plan_parts(sizes, spec.samples_per_part)
    if shard is not None:
        index, count = shard
        parts = parts[index::count]
    generate_parts(parts_dir, manifest, parts, workers, progress, device)
    if shard is not None:
        return None
    return merge_parts(out, [parts_dir], overwrite=overwrite)


def ensure_generated(path: Path, preset: str, *, seed: int = 0, workers: int = 1, progress: bool = True) -> Path:
    """``path``, generated from ``preset`` first when it does not exist; checked (`read_info`) either way.

    A file made from the same preset and seed but with other split sizes (the preset changed since) gets a note.
    """
    path = Path(path)
    if not path.exists():
        print(f"no dataset at {path}: generating preset {preset!r} (seed {seed}) ...", flush=True)
        generate(path, preset, seed=seed, workers=workers, resume=True, progress=progress)
    info = read_info(path)  # validates, with a clear message for a corrupt file
    made = info.attrs.get("generator")
    if isinstance(made, dict) and made.get("preset") == preset and str(info.attrs.get("seed")) == str(seed):
        expected = PRESETS.get(preset).sizes if preset in PRESETS else info.sizes
        if info.sizes != expected:
            print(f"note: {path} holds preset {preset!r} with {_sizes(info.sizes)}; the preset now has "
                  f"{_sizes(expected)} (delete the file to regenerate it from the preset)", file=sys.stderr)
    return path


def _sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sizes.items())


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.data.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["generate", "merge", "verify", "convert"], default="generate")
    p.add_argument("input", nargs="?", type=Path, help="verify / convert: the dataset file")
    p.add_argument("--preset", default="salt70", choices=PRESETS.names())
    p.add_argument("--out", type=Path, help="output HDF5 file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted generation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--shard", type=parse_shard, help="generate only shard i of n (then run `merge`)")
    p.add_argument("--shards", type=int, default=None,
                   help="with --launcher: run the generation as N shard jobs, merged when all succeeded (default: "
                        "--workers on this machine; required with --launcher slurm)")
    p.add_argument("--parts", type=Path, nargs="*", help="merge: parts directories (default <out>.parts)")
    p.add_argument("--stamp", action="store_true", help="verify: record the successful check in the file")
    p.add_argument("--time-decimation", type=int, default=1, help="convert: store gathers decimated in time by k")
    p.add_argument("--dtype", default="float16", choices=ENCODINGS.names(), help="convert: gathers encoding")
    p.add_argument("--compression", default="zstd", choices=COMPRESSIONS.names(), help="convert: HDF5 filter")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="forward modelling device (cpu: bit for bit reproducible; cuda: within float rounding)")
    p.add_argument("--no-progress", action="store_true")
    add_launcher_args(p, default=None)
    return p


def check_launch_args(args: argparse.Namespace) -> None:
    """ValueError for a launcher option that does not fit the others (checked before anything is written)."""
    launched = args.launcher is not None
    if args.command != "generate" and (launched or args.shards is not None):
        raise ValueError(f"--launcher and --shards run a generation; `{args.command}` takes neither")
    if args.shard is not None and (launched or args.shards is not None):
        raise ValueError("--shard i/n runs one shard by hand; --launcher/--shards run all the shards and merge them: "
                         "use one or the other")
    if args.shards is not None and not launched:
        raise ValueError(f"--shards needs --launcher {'|'.join(LAUNCHERS)} (without it, --workers processes of this "
                         "command share the work)")
    given = [flag for flag, value, default in (("--partition", args.partition, None), ("--gpus", args.gpus, 0),
                                                ("--time", args.time, 60 * 24), ("--cpus", args.cpus, None),
                                                ("--launcher-dir", args.launcher_dir, None)) if value != default]
    if given and not launched:
        raise ValueError(f"{', '.join(given)} only apply with --launcher {'|'.join(LAUNCHERS)}")


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_launch_args(args)
    if args.command in ("verify", "convert") and args.input is None:
        raise ValueError(f"`{args.command}` needs the dataset file: python -m fwi.data.generate {args.command} FILE")
    if args.command == "verify":
        info = verify(args.input, stamp_file=args.stamp, progress=not args.no_progress)
        if info.unprotected:
            arrays = sorted({name.split("/")[-1] for name in info.unprotected})
            print(f"warning: {args.input}: its {', '.join(arrays)} arrays carry no checksum (a compact file written "
                  "before compact files had one): damage inside their Zstd chunks cannot be detected, so the values "
                  "were checked but not their integrity; convert the full-rate file again to get a checked file",
                  file=sys.stderr)
        print(f"ok: {args.input}: {_sizes(info.sizes)} samples checked" + (" and stamped" if args.stamp else "")
              + (" (values only: cannot be checked for damage, see the warning)" if info.unprotected else ""))
        return 0
    if args.out is None:
        raise ValueError(f"`{args.command}` needs --out FILE")
    if args.command == "convert":
        path = convert(args.input, args.out, time_decimation=args.time_decimation, encoding=args.dtype,
                       compression=args.compression, overwrite=args.overwrite, progress=not args.no_progress)
    elif args.command == "merge":
        check_out(args.out, args.overwrite)
        with exclusive_lock(lock_path(args.out), what=f"merge into {args.out}"), \
                disk_full_hint("the parts are kept: free some space and run the merge again"):
            remove_debris(args.out)
            path = merge_parts(args.out, args.parts or [args.out.with_name(args.out.name + ".parts")], args.overwrite)
    elif args.launcher is not None:
        options = options_from_args(args, 1, args.out.with_name(args.out.name + ".parts") / "submitit")
        path = launch_generation(args.out, args.preset, seed=args.seed, shards=args.shards, options=options,
                                 workers=args.workers, overwrite=args.overwrite, device=args.device,
                                 progress=not args.no_progress)
    else:
        path = generate(args.out, args.preset, seed=args.seed, workers=args.workers, resume=args.resume,
                        overwrite=args.overwrite, shard=args.shard, progress=not args.no_progress,
                        device=args.device)
    print(f"wrote {path}" if path else f"shard {args.shard[0]}/{args.shard[1]} done; run `merge` when all are")
    return 0


if __name__ == "__main__":
    sys.exit(main())
