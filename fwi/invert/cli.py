"""``python -m fwi.invert``: refine starting models by FWI against one split of an fwi dataset.

    python -m fwi.invert --data data/quick.h5 --split test --indices 0:24 --start run:runs/unet-ca-skip-s0 \
        --out out/refine --iterations 30 --schedule 8,12,full --optimizer sgd --lr 0.05 --grad-quantile 0.98

Starts: ``run:RUNDIR`` (the network's prediction, and its salt head for --param salt_pin / salt_soft / network),
``smooth:SIGMA`` (the true model smoothed by SIGMA cells), ``file:PATH`` (.npy / .h5 / .sgy / .mat, as fwi.evaluate
reads them, --key for the array inside a plain HDF5 / .mat file; velocities in m/s, km/s or ft/s are refused),
``trend`` (the train split's mean v(z)). The gathers are read as fwi.evaluate reads them (compact float16 / int16
files decoded; a file stored decimated in time by k is observed at k, i.e. a data step of k * dt).
Outputs in --out: refined.npy, refined.h5 (/<split>/velocity and salt_mask in the dataset layout, with the start and
true models beside them; `fwi.invert.outputs.load_refinement` reads it all back), metrics.json, history.jsonl,
convergence.png, comparison.png (truth / start / refined / update / error change), before.png, after.png, optional
SEG-Y (--segy); all written atomically, at the end, metrics.json last. One process owns --out (a lock beside it; a
second one refuses at once, naming the holder); a new run first removes the previous run's results and temporary files
of a killed writer there, so the files always agree with metrics.json. The models are refined --batch-size at a time
(deepwave's memory grows with the models refined at once; Adam and SGD give the same models whatever the size, L-BFGS
couples the models of a batch through its line search), each batch with its resumable state in state/: a rerun
continues.
Bad input (grid, NaN, out-of-range velocity, gathers that do not match the survey, iterations <= 0, a cut-off above
Nyquist) prints one ``error:`` line, exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from fwi.cli import ArgumentParser, friendly_errors
from fwi.data.transforms import Normalizer
from fwi.distributed import resolve_device
from fwi.invert.batches import refine_batches
from fwi.invert.checks import check_inputs
from fwi.invert.config import RefineConfig
from fwi.invert.dataset import dataset_config, read_samples
from fwi.invert.outputs import check_out, clear_outputs, out_lock, write_outputs
from fwi.invert.parsing import START_FORMS, parse_indices, parse_schedule, parse_start
from fwi.invert.starts import StartContext, load_start


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.invert", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--indices", default="0:1", help="FIRST:STOP or I,J,K (default 0:1)")
    p.add_argument("--start", required=True, help=START_FORMS.replace(", or", " or"))
    p.add_argument("--key", default=None, help="the array inside a plain HDF5 / .mat file given by --start file:PATH")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=8,
                   help="models per deepwave call (memory grows with it; ~0.5 GB per salt70 model)")
    p.add_argument("--schedule", default=None, help="low-pass cut-offs in Hz, 'full' for the full band (default "
                   "8,12,full)")
    p.add_argument("--segy", action="store_true", help="also write one SEG-Y velocity file per model")
    p.add_argument("--overwrite", action="store_true", help="discard the resumable states of a previous run")
    defaults = RefineConfig()
    for f in dataclasses.fields(RefineConfig):
        if f.name == "schedule":
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if f.name == "time_decimation":
            p.add_argument(flag, type=int, default=None, help="observe the gathers decimated in time by this factor "
                           "(default: as the dataset stores them)")
        elif isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif value is None:
            p.add_argument(flag, default=None, type=(float if f.name == "vmax" else int if "segments" in f.name
                                                     else str))
        else:
            p.add_argument(flag, type=type(value), default=value)
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = check_out(args.out)
    parse_start(args.start)
    schedule = RefineConfig().schedule if args.schedule is None else parse_schedule(args.schedule)
    config = RefineConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RefineConfig)
                             if f.name not in ("schedule", "time_decimation")}, schedule=schedule)
    config, info = dataset_config(config, args.data, args.time_decimation)
    survey = info.survey
    if args.split not in info.sizes:
        raise ValueError(f"{args.data} has no {args.split!r} split (it has {', '.join(info.sizes) or 'none'})")
    idx = parse_indices(args.indices, info.sizes[args.split])
    samples = read_samples(args.data, args.split, idx, config.time_decimation)
    start = load_start(args.start, StartContext(Path(args.data), args.split, samples, config.time_decimation,
                                                args.key, device))
    if start.run is not None and start.run.survey.shape != survey.shape:
        raise ValueError(f"the run's grid {start.run.survey.shape} does not match the dataset's {survey.shape}")
    check_inputs(survey, samples.gathers, start.velocity, start.salt_prob, config)  # all checked before any write
    with out_lock(out):
        out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            shutil.rmtree(out / "state", ignore_errors=True)
        clear_outputs(out)
        normalizer = start.run.normalizer if start.run is not None else Normalizer.from_dict(info.normalisation)
        result = refine_batches(start.run if start.run is not None else survey, samples.gathers, start.velocity,
                                start.salt_prob, config, batch_size=args.batch_size, truth=samples.velocity,
                                truth_mask=samples.salt_mask, normalizer=normalizer,
                                start_salt_logits=start.salt_logits, state_dir=out / "state", device=device,
                                desc="fwi.invert")
        write_outputs(out, result, args.split, idx, survey, samples.velocity.numpy(), samples.salt_mask.numpy(),
                      args.segy)
    s = result.summary()
    print(f"{len(idx)} model(s), {result.iterations} iterations, {s['seconds_per_model']:.1f} s/model: data misfit "
          f"{s['misfit_before']:.3f} -> {s['misfit_after']:.3f}, MAE {s['mae_ms_before']:.0f} -> "
          f"{s['mae_ms_after']:.0f} m/s, SSIM {s['ssim_before']:.3f} -> {s['ssim_after']:.3f}, IoU "
          f"{s['iou_before']:.3f} -> {s['iou_after']:.3f}")
    print(f"results: {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
