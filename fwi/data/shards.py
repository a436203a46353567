"""A generation run as shard jobs of `fwi.launch` (locally, on SLURM or through submitit), merged when all
succeeded (`launch_generation`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from fwi.data.output import check_out, lock_path, remove_debris
from fwi.data.parts import MANIFEST, manifest_for, merge_parts, part_is_complete, plan_parts, prepare_parts_dir
from fwi.data.presets import get_preset
from fwi.distributed import resolve_device
from fwi.launch import Command, LaunchOptions, check_available, launch
from fwi.lock import exclusive_lock


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
