"""Launching commands: a list of argv commands run as subprocesses, locally or on a cluster through submitit.

    from fwi.launch import Command, LaunchOptions, launch
    rcs = launch([Command(["python", "-c", "print(1)"], stdout="a.log")], LaunchOptions(launcher="local", jobs=2))

Launchers (``LaunchOptions.launcher``, the ``--launcher`` flag of the CLIs):

- ``local`` (default): a pool of ``jobs`` threads, each running one subprocess at a time on this machine;
- ``slurm``: one SLURM job per command through `submitit <https://github.com/facebookincubator/submitit>`_'s
  ``AutoExecutor`` (``--partition``, ``--gpus`` per job, ``--time`` in minutes, ``--cpus`` per job; at most
  ``jobs`` in flight); submitit's logs and pickles go to ``--launcher-dir``;
- ``submitit-local``: the same path through submitit's ``LocalExecutor`` (jobs are processes on this machine), so
  the cluster path can be tried and tested without a cluster.

Each command's stdout is appended to its ``stdout`` file after a ``$ command`` line, its stderr replaces its
``stderr`` file (or, when ``stderr`` names the same file as ``stdout``, goes into that one log too); the result is the
list of return codes in the order of the commands. `check_available` says, before anything is started, whether a
launcher can run here (submitit installed; for ``slurm``, a SLURM cluster reachable).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

LAUNCHERS = ("local", "slurm", "submitit-local")
#: Return code of a submitit job that did not complete (killed, timed out, lost).
UNCOMPLETED = 1


@dataclass
class Command:
    """One subprocess: argv, where its output goes, environment overrides and working directory."""

    argv: list[str]
    stdout: str | None = None  # appended to, after a "$ argv" line; None: inherit
    stderr: str | None = None  # replaced; None: inherit
    env: dict[str, str] = field(default_factory=dict)  # set on top of the environment where it runs
    cwd: str = field(default_factory=os.getcwd)


@dataclass
class LaunchOptions:
    """How to run a list of commands (see the module docstring)."""

    launcher: str = "local"
    jobs: int = 1  # commands at once
    partition: str | None = None  # SLURM partition
    gpus: int = 0  # GPUs per job
    time: int = 60 * 24  # minutes per job (submitit timeout_min)
    cpus: int | None = None  # CPUs per job (submitit cpus_per_task)
    folder: str = "submitit"  # submitit's logs and pickles

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher {self.launcher!r} is not one of {', '.join(LAUNCHERS)}")
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.gpus < 0 or self.time < 1 or (self.cpus is not None and self.cpus < 1):
            raise ValueError(f"--gpus must be >= 0, --time and --cpus >= 1 (got {self.gpus}, {self.time}, "
                             f"{self.cpus})")


def run_command(cmd: Command) -> int:
    """Run ``cmd`` here and return its exit code (also the function a submitit job runs on its node)."""
    env = {**os.environ, **cmd.env}
    one_log = bool(cmd.stdout) and cmd.stderr == cmd.stdout
    out = open(cmd.stdout, "a") if cmd.stdout else None
    err = open(cmd.stderr, "w") if cmd.stderr and not one_log else None
    try:
        if out is not None:
            out.write(f"$ {shlex.join(cmd.argv)}\n")
            out.flush()
        return subprocess.run(cmd.argv, stdout=out, stderr=subprocess.STDOUT if one_log else err, env=env,
                              cwd=cmd.cwd, stdin=subprocess.DEVNULL).returncode
    finally:
        for fh in (out, err):
            if fh is not None:
                fh.close()


def check_available(options: LaunchOptions) -> None:
    """ValueError, before anything starts, when ``options.launcher`` cannot run here: submitit missing (submitit
    launchers) or no SLURM cluster (``slurm``: submitit finds no ``srun`` on the PATH)."""
    if options.launcher == "local":
        return
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--launcher {options.launcher} needs submitit (pip install submitit)") from None
    if options.launcher == "slurm" and submitit.SlurmExecutor.affinity() <= 0:
        raise ValueError("--launcher slurm: no SLURM cluster here (submitit finds no `srun` on the PATH); run it on "
                         "a SLURM login node, or try the cluster path on this machine with --launcher submitit-local")


def _executor(options: LaunchOptions):
    """A submitit executor for ``options`` (slurm or local)."""
    check_available(options)
    import submitit

    cluster = "slurm" if options.launcher == "slurm" else "local"
    executor = submitit.AutoExecutor(folder=options.folder, cluster=cluster)
    params: dict = {"timeout_min": options.time, "name": "fwi"}
    if options.gpus:
        params["gpus_per_node"] = options.gpus
    if options.cpus:
        params["cpus_per_task"] = options.cpus
    if options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    return executor


def _submitted(executor) -> Callable[[Command], int]:
    """A function that runs a command as a submitit job and waits for its exit code."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    def run(cmd: Command) -> int:
        job = executor.submit(run_command, cmd)
        try:
            return int(job.result())
        except (UncompletedJobError, FailedJobError) as exc:
            print(f"warning: job {job.job_id} ({shlex.join(cmd.argv)[:200]}) did not complete: "
                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
            return UNCOMPLETED

    return run


def launch(commands: Sequence[Command | Sequence[str]], options: LaunchOptions | None = None,
           on_start: Callable[[int], None] | None = None,
           on_done: Callable[[int, int], None] | None = None) -> list[int]:
    """Run ``commands`` (Command or plain argv lists), at most ``options.jobs`` at once; return their exit codes in
    order. ``on_start(i)`` / ``on_done(i, rc)`` are called (from worker threads) around command ``i``. On an
    exception or Ctrl-C the commands not yet started are cancelled and the exception propagates."""
    options = options or LaunchOptions()
    cmds = [c if isinstance(c, Command) else Command([str(a) for a in c]) for c in commands]
    runner = run_command if options.launcher == "local" else _submitted(_executor(options))
    if options.launcher != "local":
        Path(options.folder).mkdir(parents=True, exist_ok=True)
    rcs: list[int] = [0] * len(cmds)

    def work(i: int) -> int:
        if on_start:
            on_start(i)
        rcs[i] = runner(cmds[i])
        if on_done:
            on_done(i, rcs[i])
        return rcs[i]

    if options.jobs <= 1:
        for i in range(len(cmds)):
            work(i)
        return rcs
    pool = futures.ThreadPoolExecutor(options.jobs)
    try:
        for fut in futures.as_completed([pool.submit(work, i) for i in range(len(cmds))]):
            fut.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return rcs


def add_launcher_args(parser: argparse.ArgumentParser, default: str | None = "local") -> None:
    """``--launcher``, ``--partition``, ``--gpus``, ``--time``, ``--cpus``, ``--launcher-dir`` (not ``--jobs``).

    ``default``: the launcher when the flag is absent; None lets a CLI tell "not given" from ``local``."""
    g = parser.add_argument_group("launcher")
    g.add_argument("--launcher", choices=LAUNCHERS, default=default,
                   help="where the commands run: local processes" + (" (default)" if default == "local" else "")
                        + ", SLURM jobs through submitit, or submitit's local executor (to try the cluster path "
                        "here)")
    g.add_argument("--partition", default=None, help="SLURM partition (--launcher slurm)")
    g.add_argument("--gpus", type=int, default=0, help="GPUs per job (submitit launchers; default 0)")
    g.add_argument("--time", type=int, default=60 * 24, help="time limit per job in minutes (default 1440)")
    g.add_argument("--cpus", type=int, default=None, help="CPUs per job (submitit launchers)")
    g.add_argument("--launcher-dir", default=None,
                   help="folder for submitit's logs and pickles (default: submitit/ beside the outputs)")


def options_from_args(args: argparse.Namespace, jobs: int, default_folder: str | Path) -> LaunchOptions:
    """LaunchOptions from the flags of :func:`add_launcher_args` (plus the CLI's own ``--jobs``)."""
    return LaunchOptions(launcher=args.launcher, jobs=jobs, partition=args.partition, gpus=args.gpus,
                         time=args.time, cpus=args.cpus, folder=str(args.launcher_dir or default_folder))
