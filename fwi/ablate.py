"""Ablations: a grid of training runs (variants x physics x seeds + extra cells), aggregated into a report.

    python -m fwi.ablate configs/ablation/salt70_attention.yaml                 # -> experiments/salt70_attention/
    python -m fwi.ablate configs/ablation/salt70_attention.yaml --jobs 2 --dry-run
    python -m fwi.ablate report experiments/salt70_attention                     # rebuild results from the runs

A spec (``configs/ablation/*.yaml``)::

    name: salt70_attention              # ablation name: output folder, W&B group, run-name prefix
    base: configs/ablation_base.yaml    # train config every cell starts from
    overrides: {epochs: 12}             # flat config fields (the train CLI flag names) applied to every cell
    baseline: none                      # label of the reference variant (default: none)
    notes: |                            # how the preset was chosen (the report's "Preset" section)
    findings: |                         # what the numbers say, written once they are in ("Findings")
    physics_weight: 0.1                 # weight of the physics loss in cells with physics: true
    physics_overrides: {physics_shots: 2}   # further fields for those cells (optional)
    wandb: offline                      # mode of the cells and of the summary run (default: the base config's)
    evaluate: true                      # run `python -m fwi.evaluate RUN --split test` after training (default)
    grid:
      variants:
        - {label: none}
        - {label: se-encskip, attn: se, encoder_attn: true, skip_attn: true}
      physics: [false]                  # or [false, true]
      seeds: [0, 1]
    extra:                              # single cells outside the grid
      - {variant: {label: ca-enc, attn: ca, encoder_attn: true}, seeds: [0], physics: false}

Every cell is ``python -m fwi.train --config BASE <flags> --name <ablation>-<label>-<phys|nophys>-s<seed>
--out <out>/<ablation>/runs --group <ablation>``, run as a subprocess (``--jobs N`` at once, each child then gets
``OMP_NUM_THREADS = cores // N``). Its output goes to ``<run>/ablate.out.log`` / ``ablate.err.log``. Finished cells
(summary.json present) are skipped, so an interrupted ablation resumes (a cell with a last.pt continues with
``--resume``; one whose checkpoint is gone, e.g. on a fresh machine, starts anew); a failing cell gets
``<run>/error.txt`` (exit code and the end of its stderr) and the others go on.
After training, the cell is evaluated on the test split by `fwi.evaluate`; the report uses those test metrics and
falls back to the validation metrics of summary.json where there are none (the ``source`` column says which).

Outputs in ``<out>/<ablation>/``: ablation.json (resolved spec and cells), results.csv (one row per cell),
report.md (per variant mean ± std over seeds, differences to the baseline, rankings, failed cells),
metrics_bars.png, accuracy_vs_time.png, and a W&B summary run (``job_type="summary"``, same group) whose
``ablation`` table has one row per cell and one per variant.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import csv
import dataclasses
import fnmatch
import importlib.util
import io
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from fwi.atomic import atomic_path, write_text
from fwi.cli import friendly_errors
from fwi.config import Config, from_dict, load_config, parse_args, read_yaml

SPEC_KEYS = ("name", "description", "notes", "findings", "base", "overrides", "baseline", "physics_weight",
             "physics_overrides", "wandb", "evaluate", "grid", "extra")
GRID_KEYS = ("variants", "physics", "seeds")
EXTRA_KEYS = ("variant", "seeds", "physics")
#: Config fields the ablation sets itself for every cell.
RESERVED = {"name": "the cell names are derived from the labels", "out": "use --out of fwi.ablate",
            "group": "the group is the ablation name", "seed": "use the seeds factor",
            "resume": "finished cells are skipped and interrupted ones resumed automatically",
            "overwrite": "delete the cell's run directory to retrain it",
            "physics_weight": "use the physics factor and the spec's physics_weight"}
#: Metrics in results.csv / the report: (key, heading, higher is better, format).
METRICS = (("mae", "MAE", False, ".4f"), ("mae_ms", "MAE (m/s)", False, ".1f"), ("rmse", "RMSE", False, ".4f"),
           ("rmse_ms", "RMSE (m/s)", False, ".1f"), ("ssim", "SSIM", True, ".4f"), ("iou", "IoU", True, ".4f"),
           ("dice", "Dice", True, ".4f"), ("data_misfit", "data misfit", False, ".4f"))
METRIC_KEYS = tuple(m[0] for m in METRICS)
COLUMNS = ("run", "variant", "label", "physics", "seed", "kind", "factors", "status", "source", *METRIC_KEYS,
           "params", "flops", "step_ms", "best_epoch", "epochs")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
ERROR_TAIL = 40


# ---------------------------------------------------------------------------------------------------- spec and cells
def flat_fields() -> dict[str, tuple[str, str]]:
    """Flat override key -> (config section, field); the keys are the train CLI flag names with ``_`` for ``-``."""
    out = {}
    for section, cls in typing.get_type_hints(Config).items():
        for f in dataclasses.fields(cls):
            key = "model" if (section, f.name) == ("model", "name") else f.name
            out[key] = (section, f.name)
    return out


def to_flags(overrides: dict[str, Any]) -> list[str]:
    """Flat overrides as train CLI flags (``skip_attn: true`` -> ``--skip-attn``, ``tags: [a, b]`` -> ``--tags a
    b``, ``attn_reduction: null`` -> ``--attn-reduction None``)."""
    flags = []
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif value is None:
            flags += [flag, "None"]
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def _check_keys(data: Any, valid: Sequence[str], where: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid)}")
    return data


def _check_overrides(data: Any, where: str, allow_label: bool = False) -> dict[str, Any]:
    """A dict of flat config fields (plus ``label`` for a variant); unknown or reserved keys are errors."""
    data = {} if data is None else data
    for key in data if isinstance(data, dict) else ():
        if key in RESERVED:
            raise ValueError(f"{where} sets {key!r}, which the ablation sets for each cell ({RESERVED[key]})")
    valid = [*(["label"] if allow_label else []), *(k for k in flat_fields() if k not in RESERVED)]
    return dict(_check_keys(data, valid, where))


@dataclass
class Cell:
    label: str
    physics: bool
    seed: int
    kind: str  # "grid" or "extra"
    factors: dict[str, Any]  # the variant's overrides (without its label)
    run: str = ""
    flags: list[str] = field(default_factory=list)  # train CLI arguments, without --resume

    @property
    def variant(self) -> str:
        """Aggregation key: the label, with ``+phys`` when the physics loss is on."""
        return self.label + ("+phys" if self.physics else "")

    def factors_text(self) -> str:
        return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.factors.items())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Ablation:
    name: str
    spec: dict[str, Any]
    spec_path: str
    base: str
    base_cfg: Config
    cells: list[Cell]
    baseline: str
    wandb: str
    evaluate: bool

    def info(self, out: str, command: str) -> dict[str, Any]:
        c = self.cell_config(self.cells[0])  # the base config with the spec's overrides
        return {"name": self.name, "spec_path": self.spec_path, "command": command, "base": self.base,
                "preset": c.data.preset, "data": c.data.data, "data_seed": c.data.data_seed, "epochs": c.optim.epochs,
                "baseline": self.baseline, "wandb": self.wandb, "wandb_project": c.run.wandb_project,
                "spec": self.spec, "cells": [cell.to_dict() for cell in self.cells], "out": out}

    def cell_config(self, cell: Cell) -> Config:
        return parse_args(["--config", self.base, *cell.flags])


def load_spec(path: str | Path) -> dict[str, Any]:
    return read_yaml(path, "ablation spec")


def _bool_list(value: Any, where: str) -> list[bool]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, bool) for v in values):
        raise ValueError(f"{where} must be true, false or a list of them, got {value!r}")
    return values


def _seed_list(value: Any, where: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"{where} must be a non-empty list of seeds (integers >= 0), got {value!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{where} repeats a seed: {values}")
    return values


def _variant(data: Any, where: str) -> tuple[str, dict[str, Any]]:
    data = _check_overrides(data, where, allow_label=True)
    label = data.pop("label", None)
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ValueError(f"{where} needs a short 'label' (letters, digits, _ . + = -), got {label!r}")
    return label, data


def build_ablation(spec: dict[str, Any], spec_path: str = "<spec>", wandb: str | None = None,
                   out: str | Path = "experiments", evaluate: bool | None = None) -> Ablation:
    """Validate ``spec`` and resolve every cell's Config (a typo fails here, before anything runs)."""
    spec = _check_keys(spec, SPEC_KEYS, f"ablation spec {spec_path}")
    for key in ("name", "base", "grid"):
        if key not in spec:
            raise ValueError(f"ablation spec {spec_path} lacks {key!r}; valid keys: {', '.join(SPEC_KEYS)}")
    name = spec["name"]
    if not isinstance(name, str) or not LABEL_RE.match(name):
        raise ValueError(f"ablation name must be a short name (letters, digits, _ . + = -), got {name!r}")
    base = str(spec["base"])
    base_cfg = load_config(base).validate()
    overrides = _check_overrides(spec.get("overrides"), "overrides")
    physics_overrides = _check_overrides(spec.get("physics_overrides"), "physics_overrides")
    physics_weight = spec.get("physics_weight")
    grid = _check_keys(spec["grid"], GRID_KEYS, "grid")
    if "variants" not in grid or not isinstance(grid["variants"], list) or not grid["variants"]:
        raise ValueError("grid.variants must be a non-empty list of variants ({label: ..., <flat overrides>})")
    mode = wandb or spec.get("wandb") or base_cfg.run.wandb
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"wandb mode {mode!r} is not one of online, offline, disabled")
    evaluate = spec.get("evaluate", True) if evaluate is None else evaluate
    if not isinstance(evaluate, bool):
        raise ValueError(f"evaluate must be true or false, got {evaluate!r}")

    cells: list[Cell] = []
    variants: dict[str, dict[str, Any]] = {}

    def add(label: str, factors: dict[str, Any], physics: list[bool], seeds: list[int], kind: str, where: str):
        if label in variants and variants[label] != factors:
            raise ValueError(f"{where}: label {label!r} is already used by a variant with other settings "
                             f"({variants[label]}); give it another label")
        variants[label] = factors
        for phys in physics:
            for seed in seeds:
                cells.append(Cell(label, phys, seed, kind, dict(factors)))

    grid_physics = _bool_list(grid.get("physics", [False]), "grid.physics")
    grid_seeds = _seed_list(grid.get("seeds", [0]), "grid.seeds")
    grid_labels = []
    for i, v in enumerate(grid["variants"]):
        label, factors = _variant(v, f"grid.variants[{i}]")
        if label in grid_labels:
            raise ValueError(f"grid.variants: label {label!r} appears twice")
        grid_labels.append(label)
        add(label, factors, grid_physics, grid_seeds, "grid", f"grid.variants[{i}]")
    extras = spec.get("extra") or []
    if not isinstance(extras, list):
        raise ValueError("extra must be a list of cells ({variant: {label: ..., ...}, seeds: [...], physics: ...})")
    for i, e in enumerate(extras):
        e = _check_keys(e, EXTRA_KEYS, f"extra[{i}]")
        if "variant" not in e:
            raise ValueError(f"extra[{i}] lacks 'variant'; valid keys: {', '.join(EXTRA_KEYS)}")
        label, factors = _variant(e["variant"], f"extra[{i}].variant")
        add(label, factors, _bool_list(e.get("physics", False), f"extra[{i}].physics"),
            _seed_list(e.get("seeds", [grid_seeds[0]]), f"extra[{i}].seeds"), "extra", f"extra[{i}]")

    if any(c.physics for c in cells):
        if isinstance(physics_weight, bool) or not isinstance(physics_weight, (int, float)) or physics_weight <= 0:
            raise ValueError(f"cells with physics: true need a positive top-level physics_weight, got "
                             f"{physics_weight!r}")
    runs_dir = Path(out) / name / "runs"
    seen: dict[str, Cell] = {}
    for cell in cells:
        cell.run = f"{name}-{cell.label}-{'phys' if cell.physics else 'nophys'}-s{cell.seed}"
        if cell.run in seen:
            raise ValueError(f"two cells resolve to the same run {cell.run!r} (variant {cell.label!r}, seed "
                             f"{cell.seed}); remove the duplicate from grid/extra")
        seen[cell.run] = cell
        merged = {**overrides, **cell.factors}
        if cell.physics:
            merged.update(physics_overrides)
        tags = [*merged.pop("tags", ()), f"ablation:{name}", f"variant:{cell.variant}"]
        merged.update(seed=cell.seed, physics_weight=float(physics_weight) if cell.physics else 0.0,
                      name=cell.run, out=str(runs_dir), group=name, tags=tags, wandb=mode)
        merged.setdefault("progress", False)  # the child's output goes to a log file
        cell.flags = to_flags(merged)
        _resolve(base, base_cfg, merged, cell)
    baseline = spec.get("baseline", "none")
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant label; labels: {', '.join(variants)}")
    return Ablation(name, spec, spec_path, base, base_cfg, cells, baseline, mode, evaluate)


def _resolve(base: str, base_cfg: Config, merged: dict[str, Any], cell: Cell) -> Config:
    """The cell's Config, built twice: from the YAML values (clear type errors) and by the train CLI parser itself
    from the flags the child will get (so the child cannot fail on its command line)."""
    where = f"variant {cell.label!r} (seed {cell.seed}, physics {'on' if cell.physics else 'off'})"
    nested = base_cfg.to_dict()
    fields = flat_fields()
    for key, value in merged.items():
        section, name = fields[key]
        nested[section][name] = value
    try:
        cfg = from_dict(Config, nested, where).validate()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parsed = parse_args(["--config", base, *cell.flags])
    except SystemExit:
        lines = [ln.strip(" │╭╮╰╯─") for ln in stderr.getvalue().splitlines()]
        msg = " ".join(ln for ln in lines if ln)[-400:]
        raise ValueError(f"{where}: the train CLI rejects {shlex.join(cell.flags)}: {msg}") from None
    if parsed.to_dict() != cfg.to_dict():  # a flag spelling this module gets wrong
        raise ValueError(f"{where}: the flags {shlex.join(cell.flags)} do not reproduce the config")
    return cfg


# ---------------------------------------------------------------------------------------------------- running
def cell_status(run_dir: Path) -> str:
    if (run_dir / "summary.json").exists():
        return "ok"
    if (run_dir / "error.txt").exists():
        return "failed"
    return "pending"


def evaluate_available() -> bool:
    return importlib.util.find_spec("fwi.evaluate") is not None


def _tail(path: Path, n: int = ERROR_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Runner:
    def __init__(self, ablation: Ablation, out: Path, jobs: int):
        self.ablation, self.jobs = ablation, jobs
        self.runs_dir = out / ablation.name / "runs"
        self.env = dict(os.environ)
        if jobs > 1:
            threads = str(max(1, (os.cpu_count() or 1) // jobs))
            self.env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        self.stop = threading.Event()

    def _call(self, cmd: list[str], run_dir: Path, stem: str) -> int:
        with open(run_dir / f"{stem}.out.log", "a") as out, open(run_dir / f"{stem}.err.log", "w") as err:
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            return subprocess.run(cmd, stdout=out, stderr=err, env=self.env, stdin=subprocess.DEVNULL).returncode

    def run_cell(self, cell: Cell) -> str:
        run_dir = self.runs_dir / cell.run
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "summary.json").exists():
            cmd = [sys.executable, "-m", "fwi.train", "--config", self.ablation.base, *cell.flags]
            if (run_dir / "last.pt").exists():
                cmd.append("--resume")
            (run_dir / "error.txt").unlink(missing_ok=True)
            rc = self._call(cmd, run_dir, "ablate")
            if self.stop.is_set() or rc in (130, -2):  # interrupted: stays pending, resumes next time
                return "pending"
            if rc == 0 and not (run_dir / "summary.json").exists():  # stopped early (stop_after): resumes next time
                return "pending"
            if rc != 0:
                write_text(run_dir / "error.txt", f"exit code {rc}\ncommand: {shlex.join(cmd)}\n\n"
                           f"{_tail(run_dir / 'ablate.err.log')}\n")
                return "failed"
        if self.ablation.evaluate and evaluate_available() and not (run_dir / "eval-test" / "metrics.json").exists():
            cmd = [sys.executable, "-m", "fwi.evaluate", str(run_dir), "--split", "test"]
            rc = self._call(cmd, run_dir, "evaluate")
            if rc != 0 and not self.stop.is_set():
                write_text(run_dir / "eval_error.txt", f"exit code {rc}\ncommand: {shlex.join(cmd)}\n\n"
                           f"{_tail(run_dir / 'evaluate.err.log')}\n")
            elif rc == 0:
                (run_dir / "eval_error.txt").unlink(missing_ok=True)
        return "ok"

    def prepare_data(self, cells: list[Cell]) -> None:
        """Generate missing datasets once, here, rather than in several children at the same time."""
        from fwi.data.generate import ensure_generated

        done = set()
        for cell in cells:
            cfg = self.ablation.cell_config(cell)
            key = (cfg.data.data, cfg.data.preset, cfg.data.data_seed)
            if key not in done:
                done.add(key)
                if not Path(cfg.data.data).exists():
                    ensure_generated(Path(cfg.data.data), cfg.data.preset, seed=cfg.data.data_seed,
                                     workers=cfg.data.generate_workers or (os.cpu_count() or 1),
                                     progress=cfg.run.progress)

    def run(self, cells: list[Cell]) -> dict[str, str]:
        from tqdm.auto import tqdm

        todo = [c for c in cells if not self._finished(c)]
        status = {c.run: "ok" for c in cells if c not in todo}
        if todo:
            self.prepare_data(todo)
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", desc=self.ablation.name,
                   dynamic_ncols=True)
        try:
            if self.jobs <= 1:
                for cell in todo:
                    bar.set_postfix_str(cell.variant + f" s{cell.seed}")
                    status[cell.run] = self.run_cell(cell)
                    bar.update()
            else:
                running: set[str] = set()
                lock = threading.Lock()

                def work(cell: Cell) -> str:
                    with lock:
                        running.add(f"{cell.variant} s{cell.seed}")
                        bar.set_postfix_str(", ".join(sorted(running)))
                    try:
                        return self.run_cell(cell)
                    finally:
                        with lock:
                            running.discard(f"{cell.variant} s{cell.seed}")
                            bar.set_postfix_str(", ".join(sorted(running)))

                pool = futures.ThreadPoolExecutor(self.jobs)
                try:
                    jobs = {pool.submit(work, c): c for c in todo}
                    for fut in futures.as_completed(jobs):
                        status[jobs[fut].run] = fut.result()
                        bar.update()
                except BaseException:
                    self.stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                pool.shutdown()
        finally:
            bar.close()
        return status

    def _finished(self, cell: Cell) -> bool:
        run_dir = self.runs_dir / cell.run
        if not (run_dir / "summary.json").exists():
            return False
        return not (self.ablation.evaluate and evaluate_available()
                    and not (run_dir / "eval-test" / "metrics.json").exists()
                    and not (run_dir / "eval_error.txt").exists())


# ---------------------------------------------------------------------------------------------------- collecting
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_metrics(run_dir: Path) -> tuple[dict[str, float], str]:
    """The run's metrics and their source: the test split (fwi.evaluate) when present, else validation."""
    ev = _read_json(run_dir / "eval-test" / "metrics.json")
    if ev and isinstance(ev.get("mean"), dict):
        mean = {k.split("/")[-1]: v for k, v in ev["mean"].items()}
        mean.update({k.split("/")[-1]: v for k, v in (ev.get("pooled") or {}).items()})  # data-set RMSE
        return {k: float(mean[k]) for k in METRIC_KEYS if isinstance(mean.get(k), (int, float))}, "test"
    summary = _read_json(run_dir / "summary.json") or {}
    return {k: float(summary[f"val/{k}"]) for k in METRIC_KEYS if isinstance(summary.get(f"val/{k}"), (int, float))}, \
        "val"


def step_ms(run_dir: Path) -> float | None:
    """Mean training time per sample (ms) over the epochs after the first (the only one if there is one)."""
    epochs: dict[int, float] = {}
    try:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("samples_per_s"):
                epochs[int(rec["epoch"])] = 1000.0 / float(rec["samples_per_s"])
    except (OSError, ValueError):
        return None
    values = [epochs[k] for k in sorted(epochs)]
    values = values[1:] or values
    return statistics.fmean(values) if values else None


def run_flops(run_dir: Path) -> int | None:
    """FLOPs of one forward pass of the run's model on one sample of its data shape."""
    import torch

    from fwi.checkpoint import load_checkpoint
    from fwi.models import build_model
    from fwi.models.summary import count_flops
    from fwi.physics import Survey

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary.get("flops"):  # recorded by fwi.train since the summary has carried it
            return int(summary["flops"])
        cfg = load_config(run_dir / "config.yaml")
        state = summary if "data_shape" in summary else load_checkpoint(run_dir / "best.pt")
        shape = tuple(int(s) for s in state["data_shape"])
        model = build_model(cfg.model, shape, Survey.from_dict(state["survey"]).shape)
        return count_flops(model, torch.zeros(1, *shape))
    except Exception as exc:  # noqa: BLE001 - a report should survive one unreadable run
        print(f"warning: FLOPs of {run_dir.name}: {exc}", file=sys.stderr)
        return None


def collect(info: dict[str, Any], abl_dir: Path) -> list[dict[str, Any]]:
    """One row per cell (in spec order) from the run directories."""
    rows = []
    for c in info["cells"]:
        cell = Cell(**c)
        run_dir = abl_dir / "runs" / cell.run
        status = cell_status(run_dir)
        row: dict[str, Any] = {"run": cell.run, "variant": cell.variant, "label": cell.label,
                               "physics": "on" if cell.physics else "off", "seed": cell.seed, "kind": cell.kind,
                               "factors": cell.factors_text(), "status": status, "source": ""}
        row.update({k: None for k in COLUMNS if k not in row})
        if status == "ok":
            metrics, row["source"] = run_metrics(run_dir)
            row.update(metrics)
            summary = _read_json(run_dir / "summary.json") or {}
            row["params"], row["best_epoch"] = summary.get("params"), summary.get("best_epoch")
            row["flops"], row["step_ms"] = run_flops(run_dir), step_ms(run_dir)
            cfg = _read_yaml(run_dir / "config.yaml")
            row["epochs"] = (cfg.get("optim") or {}).get("epochs") if cfg else None
        rows.append(row)
    return rows


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, Any]]:
    """results.csv back as rows (numbers as float/int, empty cells as None)."""
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    row[k] = None
                elif k in (*METRIC_KEYS, "step_ms"):
                    row[k] = float(v)
                elif k in ("seed", "params", "flops", "best_epoch", "epochs"):
                    row[k] = int(float(v))
                else:
                    row[k] = v
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- statistics
def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per variant (label + physics) in first-appearance order: n, mean and std of every number."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["variant"], [])
        if r["status"] == "ok":
            groups[r["variant"]].append(r)
    out = []
    for variant, ok in groups.items():
        first = next(r for r in rows if r["variant"] == variant)
        g: dict[str, Any] = {"variant": variant, "label": first["label"], "physics": first["physics"],
                             "factors": first["factors"], "n": len(ok),
                             "n_cells": sum(r["variant"] == variant for r in rows),
                             "seeds": [r["seed"] for r in ok], "sources": sorted({r["source"] for r in ok})}
        for k in (*METRIC_KEYS, "params", "flops", "step_ms"):
            g[k], g[f"{k}_std"] = _stats([float(r[k]) for r in ok if r.get(k) is not None])
        out.append(g)
    return out


def pooled_variance(groups: list[dict[str, Any]], key: str) -> tuple[float, int] | None:
    """Seed variance of ``key`` pooled over the variants with >= 2 runs (the ablation's seed noise) and its degrees
    of freedom, sum(n_i - 1); None where no variant has two runs."""
    num, dof = 0.0, 0
    for g in groups:
        if g.get(f"{key}_std") is not None:
            num += (g["n"] - 1) * g[f"{key}_std"] ** 2
            dof += g["n"] - 1
    return (num / dof, dof) if dof else None


def critical_t(dof: int) -> float:
    """Two-sided 5 % critical value of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, dof))


def baseline_for(group: dict[str, Any], groups: list[dict[str, Any]], baseline: str) -> dict[str, Any] | None:
    """The baseline with the same physics setting when it was run, else the baseline without physics."""
    by = {g["variant"]: g for g in groups if g["n"]}
    same = by.get(baseline + ("+phys" if group["physics"] == "on" else ""))
    return same or by.get(baseline)


def difference(group: dict[str, Any], ref: dict[str, Any], rows: list[dict[str, Any]], key: str,
               pooled: tuple[float, int] | None) -> dict[str, Any] | None:
    """mean(variant) - mean(baseline); its standard error s_p sqrt(1/n_v + 1/n_b) with s_p^2 the pooled seed variance
    (one noise level for all variants: with two seeds a variant's own variance rests on one degree of freedom);
    ``significant`` where |diff| exceeds the two-sided 5 % critical value of Student's t with the pooled degrees of
    freedom; and the per-seed paired differences where both have the seed."""
    if group.get(key) is None or ref.get(key) is None:
        return None
    diff = group[key] - ref[key]
    se = significant = None
    if pooled is not None:
        variance, dof = pooled
        se = math.sqrt(variance * (1 / group["n"] + 1 / ref["n"]))
        significant = abs(diff) > critical_t(dof) * se
    mine = {r["seed"]: r[key] for r in rows if r["variant"] == group["variant"] and r["status"] == "ok"
            and r.get(key) is not None}
    theirs = {r["seed"]: r[key] for r in rows if r["variant"] == ref["variant"] and r["status"] == "ok"
              and r.get(key) is not None}
    paired = {s: mine[s] - theirs[s] for s in sorted(mine) if s in theirs}
    return {"diff": diff, "se": se, "significant": significant, "paired": paired}


# ---------------------------------------------------------------------------------------------------- report
def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _pm(g: dict[str, Any], key: str, spec: str) -> str:
    if g.get(key) is None:
        return "–"
    std = g.get(f"{key}_std")
    return format(g[key], spec) + ("" if std is None else f" ± {format(std, spec)}")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def render_report(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                  plots: list[str]) -> str:
    name, baseline = info["name"], info["baseline"]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    pending = [r for r in rows if r["status"] == "pending"]
    sources = sorted({r["source"] for r in ok})
    src_text = {"test": "the **test** split (`python -m fwi.evaluate RUN --split test`)",
                "val": "the **validation** split (summary.json of the run; no test evaluation available)"}
    lines = [f"# Ablation `{name}`", ""]
    if info["spec"].get("description"):
        lines += [str(info["spec"]["description"]).strip(), ""]
    base_runs = [r for r in ok if r["variant"] == baseline and r.get("iou") is not None]
    if base_runs:
        ious = [r["iou"] for r in base_runs]
        mean = sum(ious) / len(ious)
        per_seed = ", ".join(f"seed {r['seed']}: {r['iou']:.3f}" for r in base_runs)
        lines += [f"Has the baseline learned the salt? `{baseline}` reaches a salt IoU of {mean:.3f} on the "
                  f"{base_runs[0]['source']} split ({per_seed}).", ""]
    if info["spec"].get("findings"):
        lines += ["## Findings", "", str(info["spec"]["findings"]).strip(), ""]
    if info["spec"].get("notes"):
        lines += ["## Preset", "", str(info["spec"]["notes"]).strip(), ""]
    lines += [f"- preset **{info['preset']}** (`{info['data']}`, data seed {info['data_seed']}), base config "
              f"`{info['base']}`, epochs: {info['epochs']}",
              f"- {len(rows)} cells: {len(ok)} finished, {len(failed)} failed, {len(pending)} not run",
              "- metrics on " + (" and ".join(src_text[s] for s in sources) if sources else "–")
              + (" — **mixed sources**, see the `source` column" if len(sources) > 1 else ""),
              "- MAE / RMSE on the normalised velocity ([-1, 1]) and in m/s; IoU / Dice of the salt mask; data "
              "misfit of the predicted model re-modelled; step time = training ms per sample (epochs after the first), "
              "as each cell met its machine: cells that ran in other sessions or beside other work are not "
              "comparable to the millisecond; side-by-side step-time ratios come from `experiments/bench/`",
              "", "Reproduce (finished cells are skipped, so this also resumes):", "",
              "```", info["command"], "```", ""]
    if info["cells"]:
        c0 = Cell(**info["cells"][0])
        lines += ["One cell by hand (here the first):", "", "```",
                  shlex.join(["python", "-m", "fwi.train", "--config", info["base"], *c0.flags]), "```", ""]

    lines += ["## Per variant: mean ± std over seeds", ""]
    header = ["variant", "n", *[m[1] for m in METRICS], "params", "GFLOPs", "ms/sample", "source"]
    table = []
    for g in groups:
        table.append([f"`{g['variant']}`", f"{g['n']}/{g['n_cells']}", *[_pm(g, k, s) for k, _, _, s in METRICS],
                      _fmt(g["params"], ",.0f"), _fmt(None if g["flops"] is None else g["flops"] / 1e9, ".3f"),
                      _pm(g, "step_ms", ".2f"), "/".join(g["sources"]) or "–"])
    lines += _md_table(header, table) + [""]

    noise = pooled_variance(groups, "mae")
    dof_text = (f"here {noise[1]}: t = {critical_t(noise[1]):.2f}" if noise else
                "none yet: no variant has two runs")
    lines += [f"## Difference to the baseline `{baseline}`", "",
              "Δ = mean(variant) − mean(baseline) ± its standard error s_p √(1/n_v + 1/n_b), s_p² the seed "
              "variance pooled over every variant with two or more runs (one noise level for all: with two seeds a "
              "variant's own variance rests on a single degree of freedom); * where |Δ| exceeds Student's t "
              f"two-sided 5 % critical value for the pooled degrees of freedom ({dof_text}). With two seeds per "
              "variant read * as a pointer to what deserves more seeds, not as proof. Paired: the per-seed "
              "differences (same seed in both). Negative ΔMAE / positive ΔSSIM, ΔIoU are improvements.", ""]
    diff_metrics = [m for m in METRICS if m[0] in ("mae", "mae_ms", "rmse", "ssim", "iou", "data_misfit")]
    header = ["variant", "vs", *[f"Δ{m[1]}" for m in diff_metrics], "paired ΔMAE"]
    table = []
    for g in groups:
        ref = baseline_for(g, groups, baseline)
        if not g["n"] or ref is None or ref["variant"] == g["variant"]:
            continue
        cells = [f"`{g['variant']}`", f"`{ref['variant']}`"]
        for key, _, _, spec in diff_metrics:
            d = difference(g, ref, rows, key, pooled_variance(groups, key))
            if d is None:
                cells.append("–")
                continue
            text = format(d["diff"], "+" + spec)
            if d["se"] is not None:
                text += f" ± {format(d['se'], spec)}" + (" *" if d["significant"] else "")
            cells.append(text)
        d = difference(g, ref, rows, "mae", None)
        cells.append(", ".join(f"s{s}: {v:+.4f}" for s, v in d["paired"].items()) if d and d["paired"] else "–")
        table.append(cells)
    lines += (_md_table(header, table) if table else ["(no finished baseline or no other variant)"]) + [""]

    lines += ["## Ranking", ""]
    for key, title, higher, spec in (METRICS[0], METRICS[5]):
        ranked = sorted((g for g in groups if g.get(key) is not None), key=lambda g: g[key], reverse=higher)
        lines += [f"By {title} ({'higher' if higher else 'lower'} is better):", ""]
        lines += [f"{i}. `{g['variant']}` {_pm(g, key, spec)}" for i, g in enumerate(ranked, 1)] or ["–"]
        lines += [""]

    lines += ["## Failed cells", ""]
    if failed:
        table = []
        for r in failed:
            err = _tail(Path(info["out"]) / name / "runs" / r["run"] / "error.txt", 1000).splitlines()
            code = err[0].removeprefix("exit code ") if err else "?"
            last = next((ln for ln in reversed(err) if ln.strip()), "")
            table.append([f"`{r['run']}`", code, last.replace("|", "\\|")[:200]])
        lines += _md_table(["run", "exit code", "last line of stderr (full: `<run>/error.txt`)"], table)
    else:
        lines += ["none"]
    lines += [""]
    eval_failed = []
    for r in ok:
        err = _tail(Path(info["out"]) / name / "runs" / r["run"] / "eval_error.txt", 1000).splitlines()
        if err and r["source"] != "test":
            last = next((ln for ln in reversed(err) if ln.strip()), "")
            eval_failed.append(f"- `{r['run']}`: {last[:200]} (`<run>/eval_error.txt`; delete it to retry)")
    if eval_failed:
        lines += ["Test evaluation failed (validation metrics used instead):", "", *eval_failed, ""]
    if pending:
        lines += ["Not run yet: " + ", ".join(f"`{r['run']}`" for r in pending), ""]

    lines += ["## Runs", ""]
    header = ["run", "variant", "seed", "status", "source", "MAE", "MAE (m/s)", "SSIM", "IoU", "best epoch",
              "ms/sample"]
    lines += _md_table(header, [[f"`{r['run']}`", f"`{r['variant']}`", str(r["seed"]), r["status"],
                                 r["source"] or "–", _fmt(r["mae"], ".4f"), _fmt(r["mae_ms"], ".1f"),
                                 _fmt(r["ssim"], ".4f"), _fmt(r["iou"], ".4f"), _fmt(r["best_epoch"], "d"),
                                 _fmt(r["step_ms"], ".2f")] for r in rows]) + [""]
    if plots:
        lines += ["## Figures", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def axis_range(values: Sequence[float], keep: Sequence[float] = (), factor: float = 8.0,
               min_points: int = 5) -> tuple[float, float] | None:
    """Y limits that leave out far outliers, so that one very different variant (say InversionNet among U-Nets)
    does not squash the differences between the others; None when nothing is left out.

    An outlier lies more than ``factor`` median absolute deviations from the median of ``values`` (only with
    ``min_points`` values or more); ``keep`` (the baseline) always stays inside. Limits pad the kept span by 8 %.
    """
    if len(values) < min_points:
        return None
    mid = statistics.median(values)
    mad = statistics.median(abs(v - mid) for v in values)
    if mad <= 0:
        return None
    kept = [v for v in values if abs(v - mid) <= factor * mad or v in keep]
    if len(kept) == len(values):
        return None
    lo, hi = min(kept + list(keep)), max(kept + list(keep))
    pad = 0.08 * (hi - lo) or 0.08 * abs(hi) or 1.0
    return lo - pad, hi + pad


def _clip_axis(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], keep: Sequence[float] = (),
               spans: Sequence[float] | None = None) -> None:
    """Apply :func:`axis_range` to ``ax``: each point left out is drawn as a triangle on the edge it lies beyond,
    with its label and value, so it is still seen."""
    limits = axis_range(list(ys), keep)
    if limits is None:
        return
    inside = [limits[0] <= y <= limits[1] for y in ys]
    spans = spans or [0.0] * len(ys)
    lo = min([limits[0]] + [y - e for y, e, i in zip(ys, spans, inside) if i])  # kept error bars fit
    hi = max([limits[1]] + [y + e for y, e, i in zip(ys, spans, inside) if i])
    ax.set_ylim(lo, hi)
    for x, y, label, i in zip(xs, ys, labels, inside):
        if i:
            continue
        edge, marker, offset = (hi, "^", -12) if y > hi else (lo, "v", 6)
        ax.plot([x], [edge], marker=marker, color="tab:red", markersize=9, clip_on=False, zorder=5)
        text = f"{label} {y:.3g}" if label else f"{y:.3g}"
        ax.annotate(f"{text} (off scale)", (x, edge), xytext=(0, offset), textcoords="offset points",
                    ha="center", fontsize=7, color="tab:red")


def make_plots(groups: list[dict[str, Any]], abl_dir: Path, baseline: str) -> list[str]:
    """metrics_bars.png (each variant's mean ± std over seeds, against the baseline) and accuracy_vs_time.png
    (atomically); far outliers sit on the axis edge (:func:`_clip_axis`); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [g for g in groups if g["n"] and g.get("mae") is not None]
    if not done:
        return []
    names = [g["variant"] for g in done]
    color = {g["variant"]: "tab:gray" if g["label"] == baseline else "tab:blue" for g in done}
    written = []
    # points with error bars, not bars: the differences are a few per cent of the values, and an axis cut off
    # above zero makes bar heights lie; the dashed line is the baseline's mean
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 0.55 * len(done) * 3), 4.2), constrained_layout=True)
    for ax, (key, title) in zip(axes, (("mae", "MAE (normalised) ↓"), ("ssim", "SSIM ↑"), ("iou", "salt IoU ↑"))):
        for x, g in enumerate(done):
            if g.get(key) is not None:
                ax.errorbar(x, g[key], yerr=g.get(f"{key}_std") or 0.0, fmt="o", color=color[g["variant"]], capsize=3)
                if g["label"] == baseline:
                    ax.axhline(g[key], color=color[g["variant"]], linestyle="--", linewidth=1)
        shown = [(x, g) for x, g in enumerate(done) if g.get(key) is not None]
        _clip_axis(ax, [x for x, _ in shown], [g[key] for _, g in shown], ["" for _ in shown],
                   keep=[g[key] for _, g in shown if g["label"] == baseline],
                   spans=[g.get(f"{key}_std") or 0.0 for _, g in shown])
        ax.set_xticks(range(len(done)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("mean ± std over seeds")
    written.append(_save_fig(fig, abl_dir / "metrics_bars.png"))
    plt.close(fig)

    timed = [g for g in done if g.get("step_ms") is not None]
    if timed:
        fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
        pmax = max((g["params"] or 0) for g in timed) or 1
        for g in timed:
            size = 30 + 470 * (g["params"] or 0) / pmax
            ax.errorbar(g["step_ms"], g["mae"], yerr=g.get("mae_std") or 0.0, fmt="none", ecolor="0.6", capsize=2)
            ax.scatter(g["step_ms"], g["mae"], s=size, alpha=0.6,
                       color=color[g["variant"]], edgecolor="k")
            ax.annotate(g["variant"], (g["step_ms"], g["mae"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        _clip_axis(ax, [g["step_ms"] for g in timed], [g["mae"] for g in timed], [g["variant"] for g in timed],
                   keep=[g["mae"] for g in timed if g["label"] == baseline],
                   spans=[g.get("mae_std") or 0.0 for g in timed])
        ax.set_xlabel("training step time (ms per sample, as each cell logged it under its machine load)")
        ax.set_ylabel("MAE (normalised) ↓")
        ax.set_title("accuracy vs time (marker area ∝ parameters)")
        ax.grid(alpha=0.3)
        written.append(_save_fig(fig, abl_dir / "accuracy_vs_time.png"))
        plt.close(fig)
    return written


def _save_fig(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path.name


def log_summary(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]], abl_dir: Path,
                mode: str, plots: list[str]) -> str | None:
    """A W&B run (job_type summary, the ablation's group) with the ``ablation`` table: one row per cell, one per
    variant (``row`` column: run / variant). Returns its directory."""
    if mode == "disabled":
        return None
    import wandb

    from fwi.tracking import wandb_mode

    numbers = (*METRIC_KEYS, "params", "flops", "step_ms")
    columns = ["row", "variant", "label", "physics", "seed", "n", "status", "source", "factors", *numbers,
               *[f"{k}_std" for k in numbers], "best_epoch", "run"]
    table = wandb.Table(columns=columns, allow_mixed_types=True)
    for r in rows:
        table.add_data("run", r["variant"], r["label"], r["physics"], r["seed"], 1 if r["status"] == "ok" else 0,
                       r["status"], r["source"], r["factors"], *[r.get(k) for k in numbers],
                       *[None for _ in numbers], r["best_epoch"], r["run"])
    for g in groups:
        table.add_data("variant", g["variant"], g["label"], g["physics"], None, g["n"],
                       "ok" if g["n"] else "failed", "/".join(g["sources"]), g["factors"],
                       *[g.get(k) for k in numbers], *[g.get(f"{k}_std") for k in numbers], None, None)
    run = wandb.init(project=info.get("wandb_project") or "fwi", name=f"{info['name']}-summary", group=info["name"],
                     job_type="summary", dir=str(abl_dir), mode=wandb_mode(mode), tags=[f"ablation:{info['name']}"],
                     config={"ablation": info["name"], "preset": info["preset"], "base": info["base"],
                             "baseline": info["baseline"], "spec": info["spec"]},
                     settings=wandb.Settings(silent=True))
    log: dict[str, Any] = {"ablation": table}
    for p in plots:
        log[Path(p).stem] = wandb.Image(str(abl_dir / p))
    run.log(log)
    for g in groups:
        for k in ("mae", "mae_ms", "ssim", "iou"):
            if g.get(k) is not None:
                run.summary[f"{g['variant']}/{k}"] = g[k]
    run_dir = run.dir
    run.finish()
    return run_dir


def _refresh_prose(info: dict[str, Any]) -> None:
    """Take the prose (description, notes, findings) from the spec file as it is now: it is written after the runs
    started, findings once the numbers are in."""
    try:
        spec = read_yaml(Path(info["spec_path"]))
    except (KeyError, OSError, ValueError):
        return
    if isinstance(spec, dict) and spec.get("name") == info["name"]:
        for key in ("description", "notes", "findings"):
            info["spec"][key] = spec.get(key)


def build_report(abl_dir: Path, wandb: str = "disabled") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """results.csv, report.md, the plots (and the W&B summary run unless disabled) from the run directories."""
    info = _read_json(abl_dir / "ablation.json")
    if info is None:
        raise FileNotFoundError(f"{abl_dir / 'ablation.json'} not found: is {abl_dir} an ablation directory "
                                "(written by `python -m fwi.ablate SPEC.yaml`)?")
    info["out"] = str(abl_dir.parent)
    _refresh_prose(info)
    rows = collect(info, abl_dir)
    write_csv(rows, abl_dir / "results.csv")
    rows = read_csv(abl_dir / "results.csv")  # the report uses exactly what the CSV holds
    groups = aggregate(rows)
    plots = make_plots(groups, abl_dir, info["baseline"])
    write_text(abl_dir / "report.md", render_report(info, rows, groups, plots))
    log_summary(info, rows, groups, abl_dir, wandb, plots)
    return rows, groups


# ---------------------------------------------------------------------------------------------------- CLI
def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fwi.ablate", description=__doc__.split("\n\n")[0],
                                epilog="python -m fwi.ablate report ABLATION_DIR  rebuilds results.csv, report.md and "
                                       "the plots from the finished runs (no training)")
    p.add_argument("spec", help="ablation spec (YAML), e.g. configs/ablation/salt70_attention.yaml")
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once (default 1)")
    p.add_argument("--dry-run", action="store_true", help="validate the spec and list the cells; run nothing")
    p.add_argument("--out", default="experiments", help="parent of the ablation folder (default experiments)")
    p.add_argument("--wandb", choices=["online", "offline", "disabled"], default=None,
                   help="W&B mode of the cells and the summary run (default: the spec's, else the base config's)")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false", default=None,
                   help="skip the test-split evaluation of the cells")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only the cells whose run name or variant label matches this shell pattern (repeatable; "
                        "e.g. --only 'ca-*' --only '*-s0'); the report still covers every cell")
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fwi.ablate report",
                                description="Rebuild results.csv, report.md and the plots of an ablation from its "
                                            "finished runs (no training).")
    p.add_argument("ablation_dir", help="e.g. experiments/salt70_attention")
    p.add_argument("--wandb", choices=["online", "offline", "disabled"], default="disabled",
                   help="also log a W&B summary run (default: disabled)")
    return p


def select_cells(cells: list[Cell], patterns: list[str]) -> list[Cell]:
    """The cells whose run name or variant label matches one of the shell ``patterns`` (all without patterns)."""
    if not patterns:
        return list(cells)
    chosen = [c for c in cells if any(fnmatch.fnmatchcase(name, p) for p in patterns for name in (c.run, c.variant))]
    if not chosen:
        raise ValueError(f"--only {' '.join(patterns)} matches no cell; the cells are: "
                         f"{', '.join(c.run for c in cells)}")
    return chosen


def _without_only(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--only":
            skip = True
        elif not arg.startswith("--only="):
            out.append(arg)
    return out


def run_ablation(args: argparse.Namespace, argv: list[str]) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    spec = load_spec(args.spec)
    ablation = build_ablation(spec, args.spec, wandb=args.wandb, out=args.out, evaluate=args.evaluate)
    out = Path(args.out)
    abl_dir = out / ablation.name
    runs_dir = abl_dir / "runs"
    cells = select_cells(ablation.cells, args.only)
    if args.dry_run:
        print(f"{ablation.name}: {len(ablation.cells)} cells, base {ablation.base} (preset "
              f"{ablation.base_cfg.data.preset}), runs in {runs_dir}, W&B {ablation.wandb}, test evaluation "
              f"{'on' if ablation.evaluate and evaluate_available() else 'off'}")
        for cell in cells:
            status = cell_status(runs_dir / cell.run)
            print(f"  [{status:>7}] {cell.run}\n            python -m fwi.train --config {ablation.base} "
                  f"{shlex.join(cell.flags)}")
        return 0
    abl_dir.mkdir(parents=True, exist_ok=True)
    record = abl_dir / "ablation.json"
    command = shlex.join(["python", "-m", "fwi.ablate", *_without_only(argv)])  # how to run all of it
    if args.only and record.exists():  # a partial run keeps the recorded command (its --jobs may differ)
        command = json.loads(record.read_text()).get("command", command)
    write_text(record, json.dumps(ablation.info(str(out), command), indent=1) + "\n")
    status = Runner(ablation, out, args.jobs).run(cells)
    build_report(abl_dir, ablation.wandb)
    failed = [run for run, s in status.items() if s == "failed"]
    print(f"{len(status) - len(failed)}/{len(status)} cells finished; report: {abl_dir / 'report.md'}")
    if failed:
        print(f"{len(failed)} cell(s) failed (see <run>/error.txt): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        args = _report_parser().parse_args(argv[1:])
        abl_dir = Path(args.ablation_dir)
        if not abl_dir.is_dir():
            raise FileNotFoundError(f"ablation directory {abl_dir} does not exist")
        build_report(abl_dir, args.wandb)
        print(f"report: {abl_dir / 'report.md'}")
        return 0
    return run_ablation(_run_parser().parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
