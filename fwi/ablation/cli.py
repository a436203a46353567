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
    test_families:                      # further test sets, never trained on (each gets a report section)
      shifted: {data: data/fieldsalt-shifted.h5, preset: fieldsalt-shifted, seed: 0}   # split: test (default)
    grid:
      variants:
        - {label: none}
        - {label: se-encskip, attn: se, encoder_attn: true, skip_attn: true}
      physics: [false]                  # or [false, true]
      seeds: [0, 1]
    extra:                              # single cells outside the grid
      - {variant: {label: ca-enc, attn: ca, encoder_attn: true}, seeds: [0], physics: false}

Every cell (run ``<ablation>-<label>-<phys|nophys>-s<seed>`` under ``<out>/<ablation>/runs``, group ``<ablation>``)
writes its resolved config as ``<run>/cell.yaml`` and runs ``python -m fwi.train --config <run>/cell.yaml`` as a
subprocess (``--jobs N`` at once, each local child then gets ``OMP_NUM_THREADS = cores // N``; ``--launcher slurm
--partition P --gpus G --time MIN`` submits them as SLURM jobs through submitit, see :mod:`fwi.launch`). Its output
goes to ``<run>/ablate.out.log`` / ``ablate.err.log``. Finished cells (summary.json present) are skipped, so an
interrupted ablation resumes (a cell with a last.pt continues with ``--resume``; one whose checkpoint is gone, e.g. on
a fresh machine, starts anew); a failing cell gets ``<run>/error.txt`` (exit code and the end of its stderr) and the
others go on. Once trained, the cell is evaluated on the test split by `fwi.evaluate` (locally at once, in the slot
that trained it; cells trained by an earlier invocation but not evaluated are evaluated first); the report uses those
test metrics and falls back to the validation metrics of summary.json where there are none (the ``source`` column
says which). Each test family is evaluated too (``fwi.evaluate RUN --data FILE --split test --out
RUN/eval-<family>-test``; a missing file is generated from its preset first): results.csv gains ``<family>/<metric>``
columns and the report a section per family.

Outputs in ``<out>/<ablation>/``: ablation.json (resolved spec and cells), results.csv (one row per cell),
report.md (per variant mean ± std over seeds, differences to the baseline, rankings, failed cells),
metrics_bars.png, accuracy_vs_time.png, and a W&B summary run (``job_type="summary"``, same group) whose
``ablation`` table has one row per cell and one per variant.
"""

from __future__ import annotations


from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import sys
from pathlib import Path

from fwi.ablation.report import build_report
from fwi.ablation.runner import Runner, cell_status, evaluate_available
from fwi.ablation.spec import CELL_CONFIG, Cell, build_ablation, load_spec
from fwi.atomic import write_text
from fwi.cli import ArgumentParser, friendly_errors
from fwi.launch import add_launcher_args, options_from_args


def _run_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.ablate", description=__doc__.split("\n\n")[0],
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
                   help="run only the cells whose run name (with or without the ablation's name in front) or "
                        "variant label (with or without +phys) matches this shell pattern (repeatable; e.g. --only "
                        "'ca-*' --only '*-s0' --only none-n1500-nophys-s0); the report still covers every cell")
    add_launcher_args(p)
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.ablate report",
                                description="Rebuild results.csv, report.md and the plots of an ablation from its "
                                            "finished runs (no training).")
    p.add_argument("ablation_dir", help="e.g. experiments/salt70_attention")
    p.add_argument("--wandb", choices=["online", "offline", "disabled"], default="disabled",
                   help="also log a W&B summary run (default: disabled)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="report only these seeds' cells, into <ablation_dir>/seeds-<a>-<b>/ (e.g. the final "
                        "comparison of variants selected on other seeds)")
    return p


def select_cells(cells: list[Cell], patterns: list[str]) -> list[Cell]:
    """The cells whose run name (with or without the ablation's name in front), spec label or variant (the label
    with ``+phys``) matches one of the shell ``patterns`` (all cells without patterns)."""
    if not patterns:
        return list(cells)
    chosen = [c for c in cells
              if any(fnmatch.fnmatchcase(name, p) for p in patterns for name in (c.run, c.key, c.label, c.variant))]
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
    options = options_from_args(args, args.jobs, Path(args.out) / "submitit")  # checks --jobs and the rest
    spec = load_spec(args.spec)
    ablation = build_ablation(spec, args.spec, wandb=args.wandb, out=args.out, evaluate=args.evaluate)
    out = Path(args.out)
    abl_dir = out / ablation.name
    runs_dir = abl_dir / "runs"
    cells = select_cells(ablation.cells, args.only)
    if args.dry_run:
        print(f"{ablation.name}: {len(ablation.cells)} cells, base {ablation.base} (preset "
              f"{ablation.base_cfg.data.preset}), runs in {runs_dir}, W&B {ablation.wandb}, test evaluation "
              f"{'on' if ablation.evaluate and evaluate_available() else 'off'}"
              + "".join(f", test family {f.name} ({f.data})" for f in ablation.test_families))
        for cell in cells:
            status = cell_status(runs_dir / cell.run)
            print(f"  [{status:>7}] {cell.run}  {cell.factors_text() or '(base config)'}\n"
                  f"            python -m fwi.train --config {runs_dir / cell.run / CELL_CONFIG}")
        return 0
    abl_dir.mkdir(parents=True, exist_ok=True)
    record = abl_dir / "ablation.json"
    command = shlex.join(["python", "-m", "fwi.ablate", *_without_only(argv)])  # how to run all of it
    if args.only and record.exists():  # a partial run keeps the recorded command (its --jobs may differ)
        command = json.loads(record.read_text()).get("command", command)
    write_text(record, json.dumps(ablation.info(str(out), command), indent=1) + "\n")
    status = Runner(ablation, out, launch_options=options).run(cells)
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
        build_report(abl_dir, args.wandb, seeds=args.seeds)
        seeds = "" if args.seeds is None else "seeds-" + "-".join(map(str, sorted(set(args.seeds))))
        print(f"report: {abl_dir / seeds / 'report.md'}")
        return 0
    return run_ablation(_run_parser().parse_args(argv), argv)
