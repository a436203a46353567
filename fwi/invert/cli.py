"""``python -m fwi.invert``: refine starting models by FWI against one split of an fwi dataset.

    python -m fwi.invert --data data/quick.h5 --split test --indices 0:24 --start run:runs/unet-ca-skip-s0 \
        --out out/refine --iterations 30 --schedule 8,12,full --optimizer sgd --lr 0.05 --grad-quantile 0.98

Starts: ``run:RUNDIR`` (the network's prediction, and its salt head for --param salt_pin / salt_soft / network),
``smooth:SIGMA`` (the true model smoothed by SIGMA cells), ``file:PATH`` (.npy / .h5 / .sgy, as fwi.evaluate reads
them), ``trend`` (the train split's mean v(z)). Outputs in --out: refined.npy, refined.h5 (/<split>/velocity and
salt_mask in the dataset layout), metrics.json, history.jsonl, convergence.png, before.png, after.png, optional
SEG-Y (--segy); all written atomically, at the end. The models are refined --batch-size at a time (deepwave's memory
grows with the models refined at once; Adam and SGD give the same models whatever the size, L-BFGS couples the models
of a batch through its line search), each batch with its resumable state in state/: a rerun continues.
Bad input (grid, NaN, out-of-range velocity, gathers that do not match the survey, iterations <= 0, a cut-off above
Nyquist) prints one ``error:`` line, exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from fwi.atomic import atomic_path, write_text
from fwi.cli import ArgumentParser, friendly_errors
from fwi.data.store import read_info
from fwi.data.transforms import Normalizer
from fwi.distributed import resolve_device
from fwi.invert.batches import refine_batches
from fwi.invert.core import RefineConfig, check_inputs
from fwi.invert.starts import network_start, smooth_start, trend_start
from fwi.io.velocity_files import load_velocity_file
from fwi.run import load_run


def parse_indices(text: str, n: int) -> list[int]:
    if ":" in text:
        a, b = text.split(":", 1)
        idx = list(range(int(a or 0), int(b) if b else n))
    else:
        idx = [int(t) for t in text.split(",") if t]
    if not idx or any(not 0 <= i < n for i in idx):
        raise ValueError(f"--indices {text!r} selects nothing or leaves the split (0 .. {n - 1})")
    return idx


def parse_schedule(text: str) -> tuple[float | None, ...]:
    out: list[float | None] = []
    for t in text.split(","):
        t = t.strip().lower()
        out.append(None if t in ("full", "none", "0") else float(t))
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.invert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--indices", default="0:1")
    p.add_argument("--start", required=True, help="run:RUNDIR | smooth:SIGMA | file:PATH | trend")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=8,
                   help="models per deepwave call (memory grows with it; ~0.5 GB per salt70 model)")
    p.add_argument("--schedule", type=parse_schedule, default=RefineConfig().schedule,
                   help="low-pass cut-offs in Hz, 'full' for the full band (default 8,12,full)")
    p.add_argument("--segy", action="store_true", help="also write one SEG-Y velocity file per model")
    p.add_argument("--overwrite", action="store_true", help="discard the resumable states of a previous run")
    defaults = RefineConfig()
    for f in dataclasses.fields(RefineConfig):
        if f.name in ("schedule",):
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif value is None:
            p.add_argument(flag, default=None, type=(float if f.name == "vmax" else int if "segments" in f.name
                                                     else str))
        else:
            p.add_argument(flag, type=type(value), default=value)
    return p


def _start(spec: str, data: Path, split: str, idx: list[int], gathers: torch.Tensor, velocity: torch.Tensor,
           device: torch.device):
    kind, _, arg = spec.partition(":")
    if kind == "run":
        run = load_run(arg, device)
        v, prob, logits = network_start(run, gathers)
        return run, v, prob, logits
    if kind == "smooth":
        return None, smooth_start(velocity, float(arg)), None, None
    if kind == "file":
        arr, _ = load_velocity_file(arg, split=split)
        if len(arr) not in (1, len(idx)):
            raise ValueError(f"{arg} holds {len(arr)} models, expected 1 or {len(idx)} (one per index)")
        arr = np.broadcast_to(arr, (len(idx), *arr.shape[1:])) if len(arr) == 1 else arr
        return None, torch.from_numpy(np.ascontiguousarray(arr)), None, None
    if kind == "trend":
        return None, trend_start(data, len(idx)), None, None
    raise ValueError(f"--start {spec!r}: use run:RUNDIR, smooth:SIGMA, file:PATH or trend")


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    config = RefineConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RefineConfig)
                             if f.name != "schedule"}, schedule=args.schedule)
    info = read_info(args.data)
    survey = info.survey
    config.validate(survey)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if config.time_decimation != 1:
        raise ValueError("--time-decimation: the dataset holds full-rate gathers; use 1")
    idx = parse_indices(args.indices, info.sizes.get(args.split, 0)) if args.split in info.sizes else None
    if idx is None:
        raise ValueError(f"{args.data} has no {args.split!r} split")
    with h5py.File(args.data, "r") as f:
        gathers = torch.from_numpy(f[args.split]["gathers"][idx])
        velocity = torch.from_numpy(f[args.split]["velocity"][idx][:, 0])
        mask = torch.from_numpy(f[args.split]["salt_mask"][idx][:, 0]).float()
    run, start, prob, logits = _start(args.start, Path(args.data), args.split, idx, gathers, velocity, device)
    if run is not None and run.survey.shape != survey.shape:
        raise ValueError(f"the run's grid {run.survey.shape} does not match the dataset's {survey.shape}")
    check_inputs(survey, gathers, start, prob, config)  # everything is checked before anything is written
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    states = out / "state"
    if args.overwrite:
        shutil.rmtree(states, ignore_errors=True)
    normalizer = Normalizer.from_dict(info.normalisation) if run is None else run.normalizer
    result = refine_batches(run if run is not None else survey, gathers, start, prob, config,
                            batch_size=args.batch_size, truth=velocity, truth_mask=mask, normalizer=normalizer,
                            start_salt_logits=logits, state_dir=states, device=device, desc="fwi.invert")
    write_outputs(out, result, args.split, idx, survey, velocity.numpy(), mask.numpy(), args.segy)
    s = result.summary()
    print(f"{len(idx)} model(s), {result.iterations} iterations, {s['seconds_per_model']:.1f} s/model: data misfit "
          f"{s['misfit_before']:.3f} -> {s['misfit_after']:.3f}, MAE {s['mae_ms_before']:.0f} -> "
          f"{s['mae_ms_after']:.0f} m/s, SSIM {s['ssim_before']:.3f} -> {s['ssim_after']:.3f}, IoU "
          f"{s['iou_before']:.3f} -> {s['iou_after']:.3f}")
    print(f"results: {out / 'metrics.json'}")
    return 0


def write_outputs(out: Path, result, split: str, idx: list[int], survey, truth: np.ndarray, mask: np.ndarray,
                  segy: bool = False) -> None:
    """Refined models (.npy, .h5, optional SEG-Y), history, figures, then metrics.json (last), all atomic."""
    from fwi import viz
    from fwi.data.dataset import SALT_THRESHOLD

    v = result.velocity.astype(np.float32)
    with atomic_path(out / "refined.npy") as tmp:
        np.save(tmp, v)
    salt = (result.salt_prob > 0.5) if result.salt_prob is not None else (v >= SALT_THRESHOLD)
    with atomic_path(out / "refined.h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["survey"] = survey.to_json()
            f.attrs["indices"] = json.dumps(idx)
            g = f.create_group(split)
            g["velocity"] = v[:, None]
            g["salt_mask"] = salt[:, None].astype(np.uint8)
    if segy:
        from fwi.io.segy import write_velocity

        for i, model in zip(idx, v):
            with atomic_path(out / f"refined-{i}.sgy") as tmp:
                write_velocity(tmp, model, survey.dx, overwrite=True)
    write_text(out / "history.jsonl", "".join(json.dumps(h) + "\n" for h in result.history))
    fig = viz.fwi_convergence(result.history, f"FWI of {len(v)} model(s)")
    with atomic_path(out / "convergence.png") as tmp:
        viz.save(fig, tmp)
    k = min(4, len(v))
    for name, models in (("before", result.start[:k]), ("after", v[:k])):
        fig = viz.velocity_panels(truth[:k], models, mask[:k], None, titles=[f"#{i} {name}" for i in idx[:k]],
                                  dx=survey.dx)
        with atomic_path(out / f"{name}.png") as tmp:
            viz.save(fig, tmp)
    write_text(out / "metrics.json", json.dumps({**result.summary(), "indices": idx}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
