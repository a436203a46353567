"""Reference probe of FWI at field scale (issue 31): how far `fwi.invert.refine` takes known good starts on fieldsalt.

    python experiments/fwi_refine_field/reference_probe.py [--n 4] [--iterations 36] [--threads 1]
        [--starts 150,300] [--methods default,continuation] [--out reference_probe.md]

The first ``--n`` models of the fieldsalt *test* split (`fwi.data.modelling.sample_models`: the dataset's own test
models, without reading the file), their gathers modelled and decimated 10x in time as the dataset stores them
(without the int16 rounding), and two starts that bracket what a network gives: the true model smoothed over 150 m
and over 300 m. Methods (``METHODS``): fwi.invert's default (8 -> 12 Hz -> full band), a low-frequency continuation
from 3 Hz (3 -> 5 -> 8 Hz -> full band), and that continuation with a 5x smaller step, source-illumination
preconditioning and 5 muted rows (100 m); all with the default SGD scheme and the lossless gradient sampling.
Writes ``--out`` beside this file: MAE / SSIM / salt IoU before and after, the MAE change by depth band, data misfit,
seconds per model. These are references (known starts), not the study: the study starts from the networks of issue 30.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fwi.data.modelling import sample_models
from fwi.data.presets import get_preset
from fwi.data.transforms import decimate_time
from fwi.invert.config import RefineConfig
from fwi.invert.core import refine
from fwi.invert.starts import smooth_start
from fwi.physics import forward_model

HERE = Path(__file__).resolve().parent
METHODS = {  # name -> RefineConfig fields
    "default": {"schedule": (8.0, 12.0, None)},
    "continuation": {"schedule": (3.0, 5.0, 8.0, None)},
    "continuation-gentle": {"schedule": (3.0, 5.0, 8.0, None), "lr": 0.01, "illumination": True, "mute_cells": 5},
}
BANDS_KM = ((0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.1))


def band_change(start: np.ndarray, refined: np.ndarray, true: np.ndarray, dz_km: float) -> list[float]:
    """MAE after minus MAE before (m/s) in each depth band of ``BANDS_KM`` (models (B, nz, nx))."""
    z = (np.arange(true.shape[1]) + 0.5) * dz_km
    out = []
    for top, bottom in BANDS_KM:
        rows = (z >= top) & (z < bottom)
        after, before = np.abs(refined[:, rows] - true[:, rows]).mean(), np.abs(start[:, rows] - true[:, rows]).mean()
        out.append(float(after - before))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--iterations", type=int, default=36)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--starts", default="150,300", help="smoothing lengths of the true model (m), comma-separated")
    p.add_argument("--methods", default="default,continuation", help=f"comma-separated of {', '.join(METHODS)}")
    p.add_argument("--out", default="reference_probe.md", help="markdown written beside this script")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset("fieldsalt")
    survey, k = preset.survey, preset.storage.time_decimation
    true_np, mask_np = sample_models("test", range(args.n), 0, survey, preset.geology)
    true, mask = torch.from_numpy(true_np), torch.from_numpy(mask_np).float()
    with torch.no_grad():
        observed = decimate_time(forward_model(true, survey), k)
    rows = []
    for metres in (float(m) for m in args.starts.split(",")):
        start = smooth_start(true, metres / survey.dx)
        for name in args.methods.split(","):
            config = RefineConfig(iterations=args.iterations, time_decimation=k, **METHODS[name])
            t0 = time.perf_counter()
            r = refine(survey, observed, start, None, config, truth=true, truth_mask=mask, progress=False)
            s = r.summary()
            bands = band_change(r.start, r.velocity, true_np, survey.dx / 1000)
            rows.append((f"smoothed {metres:g} m", name, s, (time.perf_counter() - t0) / args.n, bands))
            print(f"{rows[-1][0]:16s} {name:24s} MAE {s['mae_ms_before']:.1f} -> {s['mae_ms_after']:.1f} m/s "
                  f"({100 * (s['mae_ms_after'] / s['mae_ms_before'] - 1):+.1f} %), IoU {s['iou_before']:.3f} -> "
                  f"{s['iou_after']:.3f}, misfit {s['misfit_before']:.3f} -> {s['misfit_after']:.3f}", flush=True)
    lines = ["# FWI from known starts at field scale (fieldsalt): a reference probe", "",
             f"`python experiments/fwi_refine_field/reference_probe.py --n {args.n} --iterations {args.iterations} "
             f"--threads {args.threads} --starts {args.starts} --methods {args.methods} --out {args.out}`: the first "
             f"{args.n} fieldsalt test models, data decimated {k}x in time as "
             f"stored, {args.iterations} iterations of fwi.invert's default SGD scheme split over the stages, the "
             f"lossless gradient sampling (every {survey.lossless_gradient_sampling()}-th step). Means over models.",
             f"Methods: {'; '.join(f'{n}: {f}' for n, f in METHODS.items())}.",
             "", "| start | method | MAE before -> after (m/s) | change | MAE change by depth, 0-0.5 / 0.5-1 / 1-1.5 "
             "/ 1.5-2 km (m/s) | SSIM before -> after | salt IoU before -> after | data misfit before -> after | "
             "s/model |", "|---|---|---|---|---|---|---|---|---|"]
    for start, name, s, seconds, bands in rows:
        change = 100 * (s["mae_ms_after"] / s["mae_ms_before"] - 1)
        lines.append(f"| {start} | {name} | {s['mae_ms_before']:.1f} -> {s['mae_ms_after']:.1f} | {change:+.1f} % | "
                     f"{' / '.join(f'{b:+.0f}' for b in bands)} | "
                     f"{s['ssim_before']:.3f} -> {s['ssim_after']:.3f} | {s['iou_before']:.3f} -> "
                     f"{s['iou_after']:.3f} | {s['misfit_before']:.3f} -> {s['misfit_after']:.3f} | {seconds:.0f} |")
    (HERE / args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / args.out}")


if __name__ == "__main__":
    main()
