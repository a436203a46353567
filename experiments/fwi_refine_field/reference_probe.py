"""Reference probe of FWI at field scale (issue 31): how far `fwi.invert.refine` takes known good starts on fieldsalt.

    python experiments/fwi_refine_field/reference_probe.py [--n 4] [--iterations 36] [--threads 1]

The first ``--n`` models of the fieldsalt *test* split (`fwi.data.modelling.sample_models`: the dataset's own test
models, without reading the file), their gathers modelled and decimated 10x in time as the dataset stores them
(without the int16 rounding), and two starts that bracket what a network gives: the true model smoothed over 150 m
and over 300 m. Two schedules: fwi.invert's default (8 -> 12 Hz -> full band) and a low-frequency continuation
from 3 Hz (3 -> 5 -> 8 Hz -> full band), both with the default SGD scheme and the lossless gradient sampling.
Writes ``reference_probe.md`` beside this file: MAE / SSIM / salt IoU before and after, data misfit ratio, seconds
per model. These are references (known starts), not the study: the study starts from the networks of issue 30.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fwi.data.modelling import sample_models
from fwi.data.presets import get_preset
from fwi.data.transforms import decimate_time
from fwi.invert.config import RefineConfig
from fwi.invert.core import refine
from fwi.invert.starts import smooth_start
from fwi.physics import forward_model

HERE = Path(__file__).resolve().parent
SCHEDULES = {"default 8-12-full": (8.0, 12.0, None), "continuation 3-5-8-full": (3.0, 5.0, 8.0, None)}
STARTS_M = (150.0, 300.0)  # smoothing length of the true model, metres


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--iterations", type=int, default=36)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset("fieldsalt")
    survey, k = preset.survey, preset.storage.time_decimation
    true_np, mask_np = sample_models("test", range(args.n), 0, survey, preset.geology)
    true, mask = torch.from_numpy(true_np), torch.from_numpy(mask_np).float()
    with torch.no_grad():
        observed = decimate_time(forward_model(true, survey), k)
    rows = []
    for metres in STARTS_M:
        start = smooth_start(true, metres / survey.dx)
        for name, schedule in SCHEDULES.items():
            config = RefineConfig(iterations=args.iterations, schedule=schedule, time_decimation=k)
            t0 = time.perf_counter()
            r = refine(survey, observed, start, None, config, truth=true, truth_mask=mask, progress=False)
            s = r.summary()
            rows.append((f"smoothed {metres:g} m", name, s, (time.perf_counter() - t0) / args.n))
            print(f"{rows[-1][0]:16s} {name:24s} MAE {s['mae_ms_before']:.1f} -> {s['mae_ms_after']:.1f} m/s "
                  f"({100 * (s['mae_ms_after'] / s['mae_ms_before'] - 1):+.1f} %), IoU {s['iou_before']:.3f} -> "
                  f"{s['iou_after']:.3f}, misfit {s['misfit_before']:.3f} -> {s['misfit_after']:.3f}", flush=True)
    lines = ["# FWI from known starts at field scale (fieldsalt): a reference probe", "",
             f"`python experiments/fwi_refine_field/reference_probe.py --n {args.n} --iterations {args.iterations} "
             f"--threads {args.threads}`: the first {args.n} fieldsalt test models, data decimated {k}x in time as "
             f"stored, {args.iterations} iterations of fwi.invert's default SGD scheme split over the stages, the "
             f"lossless gradient sampling (every {survey.lossless_gradient_sampling()}-th step). Means over models.",
             "", "| start | schedule | MAE before -> after (m/s) | change | SSIM before -> after | salt IoU before -> "
             "after | data misfit before -> after | s/model |", "|---|---|---|---|---|---|---|---|"]
    for start, name, s, seconds in rows:
        change = 100 * (s["mae_ms_after"] / s["mae_ms_before"] - 1)
        lines.append(f"| {start} | {name} | {s['mae_ms_before']:.1f} -> {s['mae_ms_after']:.1f} | {change:+.1f} % | "
                     f"{s['ssim_before']:.3f} -> {s['ssim_after']:.3f} | {s['iou_before']:.3f} -> "
                     f"{s['iou_after']:.3f} | {s['misfit_before']:.3f} -> {s['misfit_after']:.3f} | {seconds:.0f} |")
    (HERE / "reference_probe.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'reference_probe.md'}")


if __name__ == "__main__":
    main()
