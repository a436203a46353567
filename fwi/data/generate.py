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
that cannot be created) is refused before any work.

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
import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from fwi.cli import friendly_errors
from fwi.data.codec import ENCODINGS, COMPRESSIONS, GatherStorage
from fwi.data.geology import GeologyConfig, generate_model
from fwi.data.presets import PRESETS, Preset, get_preset
from fwi.atomic import atomic_path, write_text
from fwi.data.store import (ARRAYS, SPLITS, DatasetError, RunningNormalisation, check_sample_arrays, create_split,
                            read_info, verify, write_block, write_dataset)
from fwi.data.transforms import decimate_time
from fwi.launch import (LAUNCHERS, Command, LaunchOptions, add_launcher_args, check_available, launch,
                        options_from_args)
from fwi.lock import exclusive_lock
from fwi.physics import Survey, forward_model

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Part:
    """A block of consecutive samples of one split: the unit of work, of resumption and of sharding."""

    split: str
    start: int
    count: int

    @property
    def filename(self) -> str:
        return f"{self.split}-{self.start:07d}-{self.count:05d}.h5"


def plan_parts(sizes: dict[str, int], per_part: int) -> list[Part]:
    return [Part(split, start, min(per_part, sizes[split] - start))
            for split in SPLITS if split in sizes for start in range(0, sizes[split], per_part)]


def sample_models(split: str, indices: range, seed: int, survey: Survey,
                  geology: GeologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Velocity (n, nz, nx) float32 and salt masks (n, nz, nx) uint8 for the given sample indices."""
    pairs = [generate_model(np.random.SeedSequence([seed, SPLIT_CODES[split], i]), survey.nz, survey.nx, geology)
             for i in indices]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    return device


def models_per_batch(survey: Survey, device: torch.device, fraction: float = 0.5) -> int:
    """How many models one deepwave call propagates on ``device``: ``fraction`` of the free memory over an estimate
    of one model's working set (velocity, ~8 padded wavefields per shot, the gathers), at least 1."""
    if device.type != "cuda":
        return 1 << 30  # CPU: the whole part at once, as always (keeps the CPU path bit for bit)
    free, _ = torch.cuda.mem_get_info(device)
    pad = 2 * (survey.pml_width + survey.accuracy)
    cells = (survey.nz + pad) * (survey.nx + pad)
    per_model = 4 * (cells * (1 + 8 * survey.n_sources) + survey.n_sources * survey.nt * survey.n_receivers)
    return max(1, int(free * fraction // per_model))


def model_part(part: Part, seed: int, survey: Survey, geology: GeologyConfig,
               device: torch.device = torch.device("cpu")) -> dict[str, np.ndarray]:
    """Generate and forward-model one part: velocity (n,1,nz,nx), salt_mask (n,1,nz,nx), gathers (n,S,T,R).

    On CUDA the models are propagated in batches sized by `models_per_batch`; float32 results then differ from the
    CPU path by rounding only (different kernels and summation order): expected within ~1e-5 of each gather's peak
    amplitude (not tested here: no GPU on the development machine; `experiments/bench/gpu_check.sh` measures it).
    """
    velocity, mask = sample_models(part.split, range(part.start, part.start + part.count), seed, survey, geology)
    with torch.no_grad():
        if device.type == "cpu":
            gathers = forward_model(torch.from_numpy(velocity), survey).numpy()
        else:
            step = models_per_batch(survey, device)
            gathers = np.concatenate([forward_model(torch.from_numpy(velocity[i:i + step]).to(device), survey).cpu()
                                      .numpy() for i in range(0, len(velocity), step)])
    return {"velocity": velocity[:, None], "salt_mask": mask[:, None], "gathers": gathers}


def write_part(parts_dir: Path, part: Part, arrays: dict[str, np.ndarray], survey: Survey) -> None:
    """Check a generated block and store it in the dataset's own layout (compressed by the worker, so that the
    merge copies its chunks as they are), with its normalisation statistics as an attribute."""
    check_sample_arrays(arrays, survey)
    stats = RunningNormalisation()
    stats.update(arrays["velocity"], arrays["gathers"])
    with atomic_path(parts_dir / part.filename) as tmp:
        with h5py.File(tmp, "w") as f:
            create_split(f, part.count, survey)
            write_block(f, slice(0, part.count), arrays)
            f.attrs["normalisation"] = json.dumps(stats.result())


def part_is_complete(parts_dir: Path, part: Part) -> bool:
    """A part counts when its file opens and holds the expected number of samples (atomic renames make this so)."""
    path = parts_dir / part.filename
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return all(f[key].shape[0] == part.count for key in ARRAYS)
    except (OSError, KeyError):
        path.unlink()  # unreadable: redo it
        return False


# ---------------------------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(parts_dir: str, seed: int, survey_json: str, geology: dict, threads: int,
                 device: str = "cpu") -> None:
    torch.set_num_threads(threads)
    _WORKER.update(parts_dir=Path(parts_dir), seed=seed, survey=Survey.from_json(survey_json),
                   geology=GeologyConfig.from_dict(geology), device=torch.device(device))


def _run_part(part: Part) -> Part:
    w = _WORKER
    write_part(w["parts_dir"], part, model_part(part, w["seed"], w["survey"], w["geology"], w["device"]),
               w["survey"])
    return part


def manifest_for(preset_name: str, preset: Preset, seed: int, sizes: dict[str, int]) -> dict:
    return {"preset": preset_name, "seed": seed, "sizes": sizes, "samples_per_part": preset.samples_per_part,
            "survey": preset.survey.to_dict(), "geology": preset.geology.to_dict()}


def prepare_parts_dir(parts_dir: Path, manifest: dict, resume: bool) -> None:
    path = parts_dir / MANIFEST
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != manifest:
            raise DatasetError(f"{parts_dir} holds parts of a generation with other settings; "
                               "use the same preset/seed/sizes, or --overwrite to start again")
        if not resume:
            raise FileExistsError(f"an interrupted generation exists in {parts_dir}; pass --resume to continue it "
                                  "or --overwrite to start again")
        return
    parts_dir.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(manifest, indent=1))


def generate_parts(parts_dir: Path, manifest: dict, parts: list[Part], workers: int, progress: bool = True,
                   device: torch.device = torch.device("cpu")) -> None:
    """Model every part not yet on disk, with ``workers`` processes (1: in this process; always 1 on CUDA)."""
    if device.type != "cpu":
        workers = 1
    todo = [p for p in parts if not part_is_complete(parts_dir, p)]
    survey = Survey.from_dict(manifest["survey"])
    total = sum(p.count for p in parts)
    bar = tqdm(total=total, initial=total - sum(p.count for p in todo), unit="model", desc="generating",
               disable=not progress, dynamic_ncols=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    init = (str(parts_dir), manifest["seed"], survey.to_json(), manifest["geology"], threads)
    if workers <= 1:
        previous = torch.get_num_threads()
        _init_worker(*init[:4], previous, str(device))
        for part in todo:
            _run_part(part)
            bar.update(part.count)
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for part in pool.imap_unordered(_run_part, todo):
                bar.update(part.count)
    bar.close()


def merge_parts(out: Path, parts_dirs: list[Path], overwrite: bool = False, cleanup: bool = True) -> Path:
    """Assemble the parts (possibly spread over several directories, one per shard) into ``out``."""
    manifests = [json.loads((d / MANIFEST).read_text()) for d in parts_dirs if (d / MANIFEST).exists()]
    if not manifests:
        raise DatasetError(f"no generation manifest in {', '.join(map(str, parts_dirs))}")
    if any(m != manifests[0] for m in manifests[1:]):
        raise DatasetError("the parts directories were generated with different settings and cannot be merged")
    manifest = manifests[0]
    parts = plan_parts(manifest["sizes"], manifest["samples_per_part"])
    where: dict[Part, Path] = {}
    for part in parts:
        found = [d for d in parts_dirs if part_is_complete(d, part)]
        if found:
            where[part] = found[0]
    missing = [p for p in parts if p not in where]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(parts)} parts are missing (first: {missing[0].filename}); "
                           "finish every shard (or run with --resume) before merging")
    survey = Survey.from_dict(manifest["survey"])

    def blocks(split: str) -> Iterator[tuple[slice, h5py.Group]]:
        for part in (p for p in parts if p.split == split):
            with h5py.File(where[part] / part.filename, "r") as f:
                yield slice(part.start, part.start + part.count), f

    splits = {s: blocks(s) for s in SPLITS if s in manifest["sizes"]}
    write_dataset(out, splits, survey, sizes=manifest["sizes"], overwrite=overwrite,
                  attrs={"generator": {"preset": manifest["preset"], "geology": manifest["geology"]},
                         "seed": manifest["seed"]})
    if cleanup:
        for d in parts_dirs:
            shutil.rmtree(d, ignore_errors=True)
    return out


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
    with exclusive_lock(lock, what=f"generation into {out}" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")):
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


def lock_path(out: Path) -> Path:
    """The lock file of a dataset output."""
    return out.with_name(out.name + ".lock")


def check_out(out: Path, overwrite: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work: a directory, a parent that is a file or that
    cannot be created, an unwritable directory."""
    if out.is_dir():
        raise DatasetError(f"--out {out} is a directory; give a file path such as {out / 'dataset.h5'}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    parent = out.parent
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise DatasetError(f"--out {out}: {above} is a file, not a directory")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"--out {out}: cannot create the directory {parent} ({exc.strerror or exc})") from None
    try:  # a real probe: permission bits say nothing for root, a read-only mount or /proc
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.probe."):
            pass
    except OSError as exc:
        raise DatasetError(f"--out {out}: cannot write in {parent} ({exc.strerror or exc})") from None


#: A temporary file of `fwi.atomic.atomic_path`: ``.<stem>.<pid>.<thread>.tmp<suffix>``.
_TMP = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.(?P<tid>\d+)\.tmp(?P<suffix>[^/]*)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_debris(out: Path) -> list[Path]:
    """Remove temporary files of ``out`` (beside it and in ``<out>.parts/``) whose writer process is dead."""
    removed = []
    places = [(out.parent, out.stem), (out.with_name(out.name + ".parts"), None)]
    for directory, stem in places:
        if not directory.is_dir():
            continue
        for path in directory.glob(".*.tmp*"):
            m = _TMP.match(path.name)
            if m is None or (stem is not None and m["stem"] != stem) or _alive(int(m["pid"])):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by a killed writer of {out}", file=sys.stderr)
    return removed


# ---------------------------------------------------------------------------------------------- shards as jobs
class ShardFailure(RuntimeError):
    """Shard jobs of a launched generation failed; their finished parts stay for the next run."""


def shard_log(out: Path, shard: tuple[int, int]) -> Path:
    """The log (stdout and stderr, appended run after run) of shard ``i/n`` of a launched generation into ``out``."""
    return out.with_name(out.name + ".parts") / "logs" / f"shard-{shard[0]}-of-{shard[1]}.log"


def shard_argv(out: Path, preset: str, seed: int, shard: tuple[int, int], *, workers: int = 1, device: str = "cpu",
               overwrite: bool = False) -> list[str]:
    """The command of one shard job (``--resume``: a shard continues its own parts, never removes the others')."""
    argv = [sys.executable, "-m", "fwi.data.generate", "--preset", preset, "--out", str(out),
            "--shard", f"{shard[0]}/{shard[1]}", "--seed", str(seed), "--workers", str(workers), "--device", device,
            "--resume", "--no-progress"]
    return argv + (["--overwrite"] if overwrite else [])


def _last_error(log: Path, limit: int = 300) -> str:
    """The last ``error:`` line (else the last line) the latest command in ``log`` wrote, on one line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
    lines = [line.strip() for line in lines[starts[-1] + 1 if starts else 0:] if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    text = (errors or lines or [""])[-1]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def launch_generation(out: str | Path, preset: str = "tiny", *, seed: int = 0, shards: int | None = None,
                      options: LaunchOptions | None = None, workers: int = 1, overwrite: bool = False,
                      device: str = "cpu", progress: bool = True) -> Path:
    """Generate ``preset`` into ``out`` as ``shards`` shard jobs run by `fwi.launch` (``options``), then merge.

    Only shards with a missing part are launched; finished parts of the same settings are kept, also with
    ``overwrite`` (which then only allows replacing ``out``, and discards parts made with other settings).
    ``shards`` is capped at the number of parts (default: ``workers``; required for ``slurm``); submitit's files go
    to ``options.folder`` (default ``<out>.parts/submitit``, removed with the parts after the merge). On this machine
    (``local``, ``submitit-local``) at most ``workers`` shards run at once, one process each; a SLURM job runs with
    ``options.cpus`` worker processes (default 1). A failed shard raises `ShardFailure` naming it and its log.
    """
    out = Path(out)
    options = options or LaunchOptions(folder=str(out.with_name(out.name + ".parts") / "submitit"))
    here = options.launcher != "slurm"
    spec = get_preset(preset)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if shards is None and not here:
        raise ValueError("--launcher slurm needs --shards N: how many SLURM jobs to cut the generation into")
    if shards is not None and shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    check_available(options)
    # the jobs run on this machine: a device it lacks is refused now (a SLURM node may have what the login node lacks)
    dev = resolve_device(device) if here else None
    parts = plan_parts(spec.sizes, spec.samples_per_part)
    n = min(shards or workers, len(parts))
    if shards is not None and shards > n:
        print(f"note: {preset!r} has {len(parts)} parts of {spec.samples_per_part} samples: {n} shards, not {shards}",
              file=sys.stderr)
    check_out(out, overwrite)
    with exclusive_lock(lock_path(out), what=f"generation into {out}"):
        parts_dir = out.with_name(out.name + ".parts")
        remove_debris(out)
        manifest = manifest_for(preset, spec, seed, dict(spec.sizes))
        old = parts_dir / MANIFEST
        if overwrite and old.exists() and json.loads(old.read_text()) != manifest:  # parts of other settings
            shutil.rmtree(parts_dir)
        prepare_parts_dir(parts_dir, manifest, resume=True)
        todo = [i for i in range(n) if not all(part_is_complete(parts_dir, p) for p in parts[i::n])]
        if todo:
            if dev is not None:  # on this machine: one GPU job at a time, else at most `workers` shards at once
                jobs = 1 if dev.type != "cpu" else min(len(todo), workers)
                child_workers, threads = 1, max(1, (os.cpu_count() or 1) // jobs)
                env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if jobs > 1 else {}
            else:
                jobs, child_workers, env = len(todo), options.cpus or 1, {}
            options = replace(options, jobs=jobs)
            shard_log(out, (0, n)).parent.mkdir(parents=True, exist_ok=True)
            where = out.absolute()
            cmds = [Command(shard_argv(where, preset, seed, (i, n), workers=child_workers, device=device,
                                       overwrite=overwrite),
                            stdout=str(shard_log(where, (i, n))), stderr=str(shard_log(where, (i, n))), env=env)
                    for i in todo]
            print(f"{out}: running {len(todo)} of {n} shards ({', '.join(f'{i}/{n}' for i in todo)}) with "
                  f"--launcher {options.launcher}, {jobs} at once; logs in {shard_log(out, (0, n)).parent}",
                  flush=True)
            bar = tqdm(total=n, initial=n - len(todo), unit="shard", desc="shards", disable=not progress,
                       dynamic_ncols=True)
            try:
                rcs = launch(cmds, options, on_done=lambda i, rc: bar.update())
            finally:
                bar.close()
            failed = [(i, rc) for i, rc in zip(todo, rcs)
                      if rc != 0 or not all(part_is_complete(parts_dir, p) for p in parts[i::n])]
            if failed:
                raise ShardFailure(_failure_message(out, n, failed, options))
        remove_debris(out)
        return merge_parts(out, [parts_dir], overwrite=overwrite)


def _failure_message(out: Path, n: int, failed: list[tuple[int, int]], options: LaunchOptions) -> str:
    """One line: which shards failed, how, where their logs are, and that the same command resumes."""
    i, rc = failed[0]
    why = _last_error(shard_log(out, (i, n))).removeprefix("error: ")
    how = (f"exit code {rc}" if rc else "exit code 0 but parts missing") + (f": {why}" if why else "")
    if len(failed) == 1:
        which = f"shard {i}/{n} of the generation into {out} failed ({how})"
    else:
        which = (f"shards {', '.join(f'{j}/{n}' for j, _ in failed)} of the generation into {out} failed (shard "
                 f"{i}/{n}: {how})")
    logs = ", ".join(str(shard_log(out, (j, n))) for j, _ in failed)
    extra = f" and submitit's logs in {options.folder}" if options.launcher != "local" else ""
    return (f"{which}; see {logs}{extra}. The {n - len(failed)} finished shard(s) are kept: run the same command "
            "again to relaunch only the unfinished ones")


# ---------------------------------------------------------------------------------------------- convert
def convert(src: str | Path, out: str | Path, *, time_decimation: int = 1, encoding: str = "float16",
            compression: str = "zstd", overwrite: bool = False, block: int = 64, progress: bool = True) -> Path:
    """Rewrite dataset ``src`` into ``out`` with gathers decimated in time by ``time_decimation`` (the anti-aliased
    `decimate_time` training applies) and stored as ``encoding``; normalisation and provenance are kept.

    ``src`` must be at the full time rate or already at ``time_decimation``.
    """
    src, out = Path(src), Path(out)
    info = read_info(src)
    storage = GatherStorage(time_decimation=time_decimation, encoding=encoding, compression=compression)
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
            scale = group["gathers_scale"][where] if codec.scaled else None
            gathers = codec.decode(group["gathers"][where], scale)
            if factor > 1:
                gathers = decimate_time(gathers, factor)
            yield where, {"velocity": group["velocity"][where], "salt_mask": group["salt_mask"][where],
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
    p = argparse.ArgumentParser(prog="python -m fwi.data.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["generate", "merge", "verify", "convert"], default="generate")
    p.add_argument("input", nargs="?", type=Path, help="verify / convert: the dataset file")
    p.add_argument("--preset", default="salt70", choices=PRESETS.names())
    p.add_argument("--out", type=Path, help="output HDF5 file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
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
        print(f"ok: {args.input}: {_sizes(info.sizes)} samples checked" + (" and stamped" if args.stamp else ""))
        return 0
    if args.out is None:
        raise ValueError(f"`{args.command}` needs --out FILE")
    if args.command == "convert":
        path = convert(args.input, args.out, time_decimation=args.time_decimation, encoding=args.dtype,
                       compression=args.compression, overwrite=args.overwrite, progress=not args.no_progress)
    elif args.command == "merge":
        check_out(args.out, args.overwrite)
        with exclusive_lock(lock_path(args.out), what=f"merge into {args.out}"):
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
