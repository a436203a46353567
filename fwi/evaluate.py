"""Evaluate a trained run on a data split or on external velocity models.

    python -m fwi.evaluate runs/unet-ca-skip-s0                       # test split -> runs/unet-ca-skip-s0/eval-test/
    python -m fwi.evaluate runs/r1/last.pt --split val --data data/other.h5 --out /tmp/eval
    python -m fwi.evaluate runs/r1 --models marmousi.sgy salt.npy --resample

Split mode (default) writes ``<out>/metrics.json`` (mean, std and the per-sample list of MAE / MSE / RMSE / SSIM on
the normalised scale and in m/s, salt IoU / Dice and the data misfit of the prediction re-modelled with the run's
survey) and figures of the worst, median and best samples by MAE (``worst.png`` / ``worst-gathers.png``, ...) and
``histogram.png`` (per-sample metric distribution). ``<out>`` defaults to ``<run_dir>/eval-<split>/``.

External mode (``--models FILE ...``) evaluates only the given models, not the split: each is forward-modelled with
the run's survey, decimated and normalised as in training, inverted by the network and scored against itself (salt
mask = velocity >= 4400 m/s); results go to ``<out>/external/<file stem>/``. Accepted files: ``.npy`` ((nz, nx),
(N, nz, nx) or (N, 1, nz, nx) in m/s), ``.h5`` / ``.hdf5`` (an fwi dataset: the velocity of ``--split``; or a plain
HDF5 file with one 2D/3D/4D dataset, or the one named by ``--key``) and SEG-Y (``.sgy`` / ``.segy``, as written by
`fwi.io.segy.write_velocity`). Models of another size are an error unless ``--resample`` (bilinear) is given.

Refinement (``--refine``): after the network-only evaluation of the split, the network's predictions are refined
by FWI (`fwi.invert.refine`; start: the prediction, observed: the split's gathers as stored, survey: the
dataset's) and scored with the same metrics; ``<out>/metrics.json`` gains a ``refined`` section (``before``: the
network-only numbers of the same samples, ``mean`` / ``std`` / ``pooled`` / ``per_sample`` after FWI, the settings,
seconds per model), ``<out>/refined.md`` the side-by-side table, plus refined.npy and refined-before / -after /
-comparison (truth / start / refined / update / error change) / -convergence figures. The method is fwi.invert's
default (`RefineConfig`); ``--refine-iterations``, ``--refine-schedule 4,8,12,full``, ``--refine-method`` and
``--refine-indices 0:24`` (a subset: FWI costs ~0.6 s per iteration and salt70 model on a CPU) change it.

``--no-misfit`` skips the data misfit (one forward modelling per sample), ``--no-figures`` writes metrics.json only.
A progress bar over the batches shows on a terminal. Library use (notebooks, the ablation runner): `load_run`
(`fwi.run`), `evaluate_split` / `evaluate_models` (an `Evaluation` with per-sample metrics, predictions and figure
helpers, scored by `fwi.scoring`) and `write_report`, each imported from its module in `fwi.evaluation` (this module
is only the CLI). Model files are read by `fwi.io.velocity_files`.

Problems with the input (missing or damaged checkpoint, shape mismatch, NaN in a model, refinement settings the data
cannot take: iterations <= 0, indices outside the split, a cut-off above Nyquist) print one ``error:`` line
and exit with status 2; metrics.json is written last, atomically, so a failed run leaves no half-written results.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Sequence

from fwi.cli import ArgumentParser, friendly_errors
from fwi.evaluation.external import evaluate_models, prepare_external
from fwi.evaluation.refine_settings import REFINE_METHODS, parse_refine_schedule, prepare_refinement, refine_config
from fwi.evaluation.refinement import refine_split
from fwi.evaluation.report import write_report
from fwi.evaluation.split import evaluate_split
from fwi.invert import RefineConfig
from fwi.lock import run_lock
from fwi.run import LoadedRun, load_run


def _unique_dirs(paths: Sequence[Path]) -> list[str]:
    names, seen = [], set()
    for p in paths:
        name = p.stem if p.stem not in seen else f"{p.stem}-{p.suffix.lstrip('.')}"
        k = 2
        while name in seen:
            name, k = f"{p.stem}-{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (uses its best.pt) or checkpoint file")
    p.add_argument("--split", default="test", help="split to evaluate (default: test); with --models, the split "
                   "read from fwi-dataset .h5 model files")
    p.add_argument("--data", default=None, help="dataset file (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default=None, help="output directory (default: <run_dir>/eval-<split>/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's eval_batch_size")
    p.add_argument("--models", nargs="+", default=None, metavar="FILE",
                   help="external velocity models (.npy, .h5, .sgy) to evaluate instead of the split")
    p.add_argument("--key", default=None, help="dataset inside a plain HDF5 model file")
    p.add_argument("--resample", action="store_true", help="bilinearly resample models of another size to the grid")
    p.add_argument("--no-misfit", dest="misfit", action="store_false",
                   help="skip the data misfit (saves one forward modelling per sample)")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write metrics.json only")
    defaults = RefineConfig()
    r = p.add_argument_group("FWI refinement (fwi.invert) of the network's predictions; defaults: fwi.invert's")
    r.add_argument("--refine", action="store_true",
                   help="after the network-only evaluation, refine its predictions by FWI and report both side by side "
                        "(refined.md, a 'refined' section in metrics.json)")
    r.add_argument("--refine-iterations", type=int, default=None, metavar="N",
                   help=f"FWI iterations per model, over all frequency stages (default {defaults.iterations})")
    r.add_argument("--refine-schedule", default=None, metavar="HZ,...",
                   help="low-pass cut-offs of the frequency stages, 'full' = full band (default "
                        f"{','.join('full' if f is None else f'{f:g}' for f in defaults.schedule)})")
    r.add_argument("--refine-method", default=None, metavar="|".join(REFINE_METHODS),
                   help="what FWI updates: the velocity cells, a salt-pinned or soft-salt model (fwi.invert.params), "
                        f"or the network's weights (default {defaults.param})")
    r.add_argument("--refine-indices", default=None, metavar="A:B|I,J,...",
                   help="dataset indices to refine (default: every sample of the split; ~0.6 s per iteration and "
                        "salt70 model on a CPU)")
    r.add_argument("--refine-lr", type=float, default=None, metavar="KM_S",
                   help=f"largest step per iteration in km/s (default {defaults.lr:g}; fieldsalt: 0.02, "
                        "experiments/fwi_refine_field/README.md)")
    r.add_argument("--refine-depth-power", type=float, default=None, metavar="P",
                   help=f"gradient x (z / z_max)^P (default {defaults.depth_power:g})")
    r.add_argument("--refine-mute-cells", type=int, default=None, metavar="ROWS",
                   help=f"rows below the surface FWI does not update (default {defaults.mute_cells})")
    r.add_argument("--refine-keep-best", action="store_const", const=True, default=None,
                   help="leave each frequency stage at each model's iterate of lowest stage misfit (fwi.invert.best; "
                        "guards the network prior against drifting at a flat misfit)")
    return p


REFINE_FLAGS = ("refine_iterations", "refine_schedule", "refine_method", "refine_indices", "refine_lr",
                "refine_depth_power", "refine_mute_cells", "refine_keep_best")


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_flags(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    run = load_run(args.run, args.device)
    out = Path(args.out) if args.out else run.run_dir / f"eval-{args.split}"
    inside = out.resolve().is_relative_to(run.run_dir.resolve())
    with run_lock(run.run_dir) if inside else contextlib.nullcontext():  # a training of the run must not run now
        return _evaluate(args, run, out)


def _check_flags(args: argparse.Namespace) -> None:
    given = ["--" + f.replace("_", "-") for f in REFINE_FLAGS if getattr(args, f) is not None]
    if given and not args.refine:
        raise ValueError(f"{' '.join(given)} without --refine: add --refine to refine the predictions by FWI")
    if args.refine and args.models:
        raise ValueError("--refine refines the predictions of a split; it does not work with --models")
    if args.refine and not args.misfit:
        raise ValueError("--refine reports the data misfit before and after FWI; drop --no-misfit")


def _evaluate(args: argparse.Namespace, run: LoadedRun, out: Path) -> int:
    if args.refine:  # every setting is checked before anything runs
        schedule = None if args.refine_schedule is None else parse_refine_schedule(args.refine_schedule)
        config = refine_config(args.refine_iterations, schedule, args.refine_method, lr=args.refine_lr,
                               depth_power=args.refine_depth_power, mute_cells=args.refine_mute_cells,
                               keep_best=args.refine_keep_best)
        config, indices = prepare_refinement(run, args.split, args.data, config, args.refine_indices)
    if args.models:
        paths = [Path(m) for m in args.models]
        prepared = [prepare_external(p, run, args.key, args.split, args.resample) for p in paths]  # all checked first
        for name, (velocity, meta) in zip(_unique_dirs(paths), prepared):
            evaluation = evaluate_models(run, velocity, name, args.batch_size, args.misfit, meta=meta)
            report = write_report(evaluation, out / "external" / name, args.figures)
            print(evaluation.table())
            print(f"results: {report}")
        return 0
    evaluation = evaluate_split(run, args.split, args.data, args.batch_size, args.misfit)
    refinement = refine_split(evaluation, config, indices) if args.refine else None
    report = write_report(evaluation, out, args.figures, refinement)
    print(evaluation.table())
    if refinement is not None:
        print(f"\nFWI refinement: {refinement.describe()}\n{refinement.table()}")
        print(f"refinement: {out / 'refined.md'}")
    print(f"results: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
