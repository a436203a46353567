"""Running an ablation's cells: datasets prepared once, each cell's ``cell.yaml`` written and trained with
``python -m fwi.train --config cell.yaml`` (``--resume`` after an interruption), then evaluated on the test split and
on the spec's test families; the commands go through :func:`fwi.launch.launch` (local processes or submitit/SLURM)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Callable

import yaml

from fwi.ablation.spec import CELL_CONFIG, Ablation, Cell
from fwi.atomic import write_text
from fwi.launch import Command, LaunchOptions, launch

ERROR_TAIL = 40


def cell_status(run_dir: Path) -> str:
    if (run_dir / "summary.json").exists():
        return "ok"
    if (run_dir / "error.txt").exists():
        return "failed"
    return "pending"


def evaluate_available() -> bool:
    return importlib.util.find_spec("fwi.evaluate") is not None


def tail_text(path: Path, n: int = ERROR_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def write_cell_config(cell: Cell, run_dir: Path) -> Path:
    """``<run_dir>/cell.yaml``: the cell's resolved config, byte for byte the same on every invocation (so that
    ``fwi.train --resume`` finds it equal to the checkpoint's); rewritten only when it differs."""
    path = run_dir / CELL_CONFIG
    text = yaml.safe_dump(cell.config, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


def train_argv(cell: Cell, run_dir: Path) -> list[str]:
    """The training command of ``cell`` (``--resume`` when an interrupted run left a checkpoint)."""
    argv = [sys.executable, "-m", "fwi.train", "--config", str(run_dir / CELL_CONFIG)]
    return argv + (["--resume"] if (run_dir / "last.pt").exists() else [])


def branch_source(cell: Cell) -> Path | None:
    """The trunk snapshot a branch cell starts from (None for other cells)."""
    source = cell.config.get("run", {}).get("branch_from", "")
    return Path(source) if source else None


class Runner:
    """Runs the cells of one ablation under ``<out>/<name>/runs/``, ``launch`` options giving where and how many
    at once (each local child then gets ``OMP_NUM_THREADS = cores // jobs``)."""

    def __init__(self, ablation: Ablation, out: Path, jobs: int = 1, launch_options: LaunchOptions | None = None):
        self.ablation = ablation
        self.options = launch_options or LaunchOptions(jobs=jobs)
        self.jobs = self.options.jobs
        self.runs_dir = out / ablation.name / "runs"
        self.env: dict[str, str] = {}
        if self.jobs > 1 and self.options.launcher == "local":
            threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
            self.env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        self.stop = threading.Event()

    def _command(self, argv: list[str], run_dir: Path, stem: str) -> Command:
        return Command(argv, stdout=str(run_dir / f"{stem}.out.log"), stderr=str(run_dir / f"{stem}.err.log"),
                       env=dict(self.env))

    def prepare_data(self, cells: list[Cell]) -> None:
        """Generate missing datasets once, here, rather than in several children at the same time."""
        from fwi.data.generate import ensure_generated

        if not cells:
            return
        cfg = self.ablation.cell_config(cells[0])
        wanted = {(c.data.data, c.data.preset, c.data.data_seed) for c in map(self.ablation.cell_config, cells)}
        if self.ablation.evaluate and evaluate_available():
            wanted |= {(f.data, f.preset, f.seed) for f in self.ablation.test_families}
        for path, preset, seed in sorted(wanted):
            if not Path(path).exists():
                ensure_generated(Path(path), preset, seed=seed, progress=cfg.run.progress,
                                 workers=cfg.data.generate_workers or (os.cpu_count() or 1))

    def _train_status(self, cell: Cell, cmd: Command, rc: int) -> str:
        run_dir = self.runs_dir / cell.run
        if self.stop.is_set() or rc in (130, -2):  # interrupted: stays pending, resumes next time
            return "pending"
        if rc == 0 and not (run_dir / "summary.json").exists():  # stopped early (stop_after): resumes next time
            return "pending"
        if rc != 0:
            write_text(run_dir / "error.txt", f"exit code {rc}\ncommand: {shlex.join(cmd.argv)}\n\n"
                       f"{tail_text(run_dir / 'ablate.err.log')}\n")
            return "failed"
        return "ok"

    def _evaluations(self, cell: Cell) -> list[tuple[str, list[str]]]:
        """The cell's missing evaluations: (output folder, ``fwi.evaluate`` arguments), the test split first, then the
        test families."""
        run_dir = self.runs_dir / cell.run
        todo = [("eval-test", [str(run_dir), "--split", "test"]),
                *((f.out_dir, f.evaluate_args(run_dir)) for f in self.ablation.test_families)]
        return [(name, args) for name, args in todo if not (run_dir / name / "metrics.json").exists()]

    def _needs_eval(self, cell: Cell, retry: bool = True) -> bool:
        run_dir = self.runs_dir / cell.run
        return (self.ablation.evaluate and evaluate_available() and (run_dir / "summary.json").exists()
                and bool(self._evaluations(cell)) and (retry or not (run_dir / "eval_error.txt").exists()))

    def _finished(self, cell: Cell) -> bool:
        return (self.runs_dir / cell.run / "summary.json").exists() and not self._needs_eval(cell, retry=False)

    def _launch(self, cells: list[Cell], cmds: list[Command], bar, count: bool, options: LaunchOptions | None = None,
                after: Callable[[Cell, int], None] | None = None) -> list[int]:
        """Run ``cmds`` (one per cell) with ``options`` (default: the runner's), showing them on ``bar`` (None: no
        bar); ``after(cell, rc)`` runs in the same worker once a command has finished, before it takes the next."""
        running: set[str] = set()
        lock = threading.Lock()

        def show(i: int, add: bool) -> None:
            if bar is None:
                return
            with lock:
                (running.add if add else running.discard)(f"{cells[i].variant} s{cells[i].seed}")
                bar.set_postfix_str(", ".join(sorted(running)))
                if count and not add:
                    bar.update()

        def done(i: int, rc: int) -> None:
            if after is not None:
                after(cells[i], rc)
            show(i, False)

        try:
            return launch(cmds, options or self.options, on_start=lambda i: show(i, True), on_done=done)
        except BaseException:
            self.stop.set()
            raise

    def train(self, cells: list[Cell], bar) -> dict[str, str]:
        """Train the cells without a summary.json, trunks before the branches that start from their snapshots;
        their status (ok / failed / pending: a branch whose snapshot is not there stays pending)."""
        todo = [c for c in cells if not (self.runs_dir / c.run / "summary.json").exists()]
        status = self._train_wave([c for c in todo if not branch_source(c)], bar)
        branches = [c for c in todo if branch_source(c)]
        ready = [c for c in branches if branch_source(c).exists() or (self.runs_dir / c.run / "last.pt").exists()]
        for cell in branches:
            if cell not in ready:
                status[cell.run] = "pending"
                print(f"{cell.run}: waits for {branch_source(cell)} (its trunk has not kept that epoch yet; a trunk "
                      "finished without it must be retrained: delete its run directory)", file=sys.stderr)
        return {**status, **self._train_wave(ready, bar)}

    def _train_wave(self, todo: list[Cell], bar) -> dict[str, str]:
        cmds = []
        for cell in todo:
            run_dir = self.runs_dir / cell.run
            run_dir.mkdir(parents=True, exist_ok=True)
            write_cell_config(cell, run_dir)
            (run_dir / "error.txt").unlink(missing_ok=True)
            cmds.append(self._command(train_argv(cell, run_dir), run_dir, "ablate"))
        rcs = self._launch(todo, cmds, bar, count=True, after=self._evaluate_now if self._local else None)
        return {c.run: self._train_status(c, cmd, rc) for c, cmd, rc in zip(todo, cmds, rcs)}

    @property
    def _local(self) -> bool:
        return self.options.launcher == "local"

    def _evaluate_now(self, cell: Cell, rc: int) -> None:
        """Local runs: a cell that finished training is evaluated at once, in the slot that trained it, one
        evaluation after the other (not when every cell of the wave is done: a long ablation is interrupted many
        times before that)."""
        if rc == 0 and not self.stop.is_set() and self._needs_eval(cell):
            self.evaluate([cell], None, LaunchOptions(jobs=1))

    def evaluate(self, cells: list[Cell], bar, options: LaunchOptions | None = None) -> None:
        """Evaluate the trained cells on the test split and the test families (logs ``evaluate[-<family>].*.log``;
        a failure leaves ``eval_error.txt``), with ``options`` (default: the runner's)."""
        todo, cmds = [], []
        for cell in (c for c in cells if self._needs_eval(c)):
            run_dir = self.runs_dir / cell.run
            for name, args in self._evaluations(cell):
                stem = "evaluate" if name == "eval-test" else f"evaluate-{name.removeprefix('eval-')}"
                todo.append(cell)
                cmds.append(self._command([sys.executable, "-m", "fwi.evaluate", *args], run_dir, stem))
        errors: dict[str, list[str]] = {}
        for cell, cmd, rc in zip(todo, cmds, self._launch(todo, cmds, bar, count=False, options=options)):
            errors.setdefault(cell.run, [])
            if rc != 0 and not self.stop.is_set():
                errors[cell.run].append(f"exit code {rc}\ncommand: {shlex.join(cmd.argv)}\n\n"
                                        f"{tail_text(Path(cmd.stderr))}\n")
        for run, failures in errors.items():
            if failures:
                write_text(self.runs_dir / run / "eval_error.txt", "\n".join(failures))
            elif not self.stop.is_set():
                (self.runs_dir / run / "eval_error.txt").unlink(missing_ok=True)

    def run(self, cells: list[Cell]) -> dict[str, str]:
        """Train and evaluate the unfinished ``cells`` (cells trained by an earlier invocation but not evaluated are
        evaluated first; locally, each cell is evaluated as soon as it is trained); the status of every cell."""
        from tqdm.auto import tqdm

        todo = [c for c in cells if not self._finished(c)]
        status = {c.run: "ok" for c in cells}
        if todo:
            self.prepare_data(todo)
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", desc=self.ablation.name,
                   dynamic_ncols=True)
        try:
            self.evaluate([c for c in todo if (self.runs_dir / c.run / "summary.json").exists()], bar)  # earlier runs
            status.update(self.train(todo, bar))
            self.evaluate(todo, bar)  # cells not evaluated at once (remote launchers) or whose evaluation failed
            bar.update(len(cells) - bar.n)
        finally:
            bar.close()
        return status
