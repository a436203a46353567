"""Which preconditioning points FWI's first step at the truth on fieldsalt? (issue 31: choosing the scheme)

    python experiments/fwi_refine_field/gradient_quality.py [--data data/fieldsalt.h5] [--split val] [--n 8]
        [--start smooth:150 | --start run:RUNDIR] [--threads 1] [--out gradient_quality.md]

The refinement's update direction is the preconditioned negative gradient of the data misfit. A scheme that
corrupts the model (reference_probe.md: the default scheme fits the data while the top kilometre gets 250 m/s
worse) steps where the error is not. This script measures that directly, before any refinement: for ``--n`` models
of ``--split`` (the stored gathers, decoded as every reader does), the raw L2 gradient at the start for each
frequency stage and time gain (one forward + backward each), then every preconditioner of ``PRECONDITIONERS``
applied to it (fwi.invert.precondition.Preconditioner, the refinement's own, incl. the 98th-percentile
normalisation and clip). Reported per scheme, averaged over models:

* the cosine between the update -g and the model error dv = truth - start, over the whole model and per depth band
  (> 0: the first step lowers the error there; the whole-model cosine squared is the fraction of the error's squared
  norm that an optimally sized step along -g could remove);
* the share of the update's squared norm that lands in each band, beside the share of the error's.

Schemes are then tried in full refinements (refine_schemes.py); this is the cheap screen (a few minutes on one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fwi.invert.dataset import read_samples
from fwi.invert.filters import lowpass, time_gain
from fwi.invert.precondition import Preconditioner, source_illumination
from fwi.data.store import read_info
from fwi.data.transforms import decimate_time
from fwi.physics import forward_model

from refine_schemes import BANDS_KM, load_start  # noqa: E402  (this folder: the same starts and depth bands)

HERE = Path(__file__).resolve().parent
STAGES = (3.0, 8.0, None)  # low-pass cut-offs (Hz) of the raw gradients; None = full band
GAINS = (0.0, 1.0, 2.0)  # time-gain powers of the misfit
#: name -> Preconditioner options (illumination: True = source illumination of the start)
PRECONDITIONERS = {
    "default (smooth 1, mute 2)": dict(smooth_sigma=1.0, mute_cells=2),
    "mute 5": dict(smooth_sigma=1.0, mute_cells=5),
    "mute 10": dict(smooth_sigma=1.0, mute_cells=10),
    "smooth 3, mute 5": dict(smooth_sigma=3.0, mute_cells=5),
    "smooth 3, mute 10": dict(smooth_sigma=3.0, mute_cells=10),
    "depth 1, mute 5": dict(smooth_sigma=1.0, mute_cells=5, depth_power=1.0),
    "depth 2, mute 5": dict(smooth_sigma=1.0, mute_cells=5, depth_power=2.0),
    "depth 1, smooth 3, mute 5": dict(smooth_sigma=3.0, mute_cells=5, depth_power=1.0),
    "illumination, mute 5": dict(smooth_sigma=1.0, mute_cells=5, illumination=True),
    "illumination, smooth 3, mute 5": dict(smooth_sigma=3.0, mute_cells=5, illumination=True),
    "illumination, depth 1, smooth 3, mute 5": dict(smooth_sigma=3.0, mute_cells=5, illumination=True,
                                                    depth_power=1.0),
}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def band_rows(nz: int, dz_km: float) -> list[np.ndarray]:
    z = (np.arange(nz) + 0.5) * dz_km
    return [(z >= top) & (z < bottom) for top, bottom in BANDS_KM]


def raw_gradient(start: torch.Tensor, observed: torch.Tensor, survey, k: int, cutoff: float | None,
                 gain: float) -> torch.Tensor:
    """(B, nz, nx) gradient of sum_models ||F(d(v)) - F(d_obs)||^2 / ||F(d_obs)||^2 at ``start`` (F: decimate by k,
    low-pass below ``cutoff``, time gain ``gain``), with the refinement's lossless gradient sampling."""
    dt = survey.dt * k

    def view(d: torch.Tensor) -> torch.Tensor:
        return time_gain(lowpass(d, cutoff, dt), gain)

    v = start.clone().requires_grad_(True)
    modelled = view(decimate_time(forward_model(v, survey, check=False,
                                                gradient_sampling_interval=survey.lossless_gradient_sampling()), k))
    obs = view(observed)
    loss = ((modelled - obs).flatten(1).pow(2).sum(1) / obs.flatten(1).pow(2).sum(1)).sum()
    loss.backward()
    return v.grad.detach()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/fieldsalt.h5")
    p.add_argument("--split", default="val")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--start", default="smooth:150", help="smooth:METRES (the truth smoothed) or run:RUNDIR")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="gradient_quality.md", help="markdown written beside this script")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = read_info(args.data)
    survey, k = info.survey, info.storage.time_decimation
    s = read_samples(args.data, args.split, range(args.n), k)
    start, start_desc = load_start(args.start, s, k, survey)
    truth = s.velocity.numpy()
    error = truth - start.numpy()
    bands = band_rows(survey.nz, survey.dx / 1000)
    error_share = [float((error[:, rows] ** 2).sum() / (error ** 2).sum()) for rows in bands]
    mae = float(np.abs(error).mean())
    t0 = time.perf_counter()
    illumination = source_illumination(start, survey)
    results = {}  # (stage, gain, scheme) -> (cos_all, cos_bands, share_bands)
    for cutoff in STAGES:
        for gain in GAINS:
            g = raw_gradient(start, s.gathers, survey, k, cutoff, gain)
            for name, opts in PRECONDITIONERS.items():
                opts = dict(opts)
                pre = Preconditioner(illumination=illumination if opts.pop("illumination", False) else None,
                                     quantile=0.98, **opts)
                update = -pre(g).numpy()
                per_model = []
                for b in range(args.n):
                    u, e = update[b], error[b]
                    per_model.append([cosine(u, e)] + [cosine(u[rows], e[rows]) for rows in bands]
                                     + [float((u[rows] ** 2).sum() / (u ** 2).sum()) for rows in bands])
                results[(cutoff, gain, name)] = np.mean(per_model, axis=0)
            print(f"stage {cutoff or 'full'} Hz, gain {gain:g}: {time.perf_counter() - t0:.0f} s", flush=True)
    lines = ["# First-step quality of FWI preconditioners at field scale (fieldsalt)", "",
             f"`python experiments/fwi_refine_field/gradient_quality.py --data {args.data} --split {args.split} "
             f"--n {args.n} --start {args.start}`: {args.n} {args.split} models, their stored gathers (decimation "
             f"{k}), start = {start_desc} (MAE {mae:.0f} m/s). Cosine of the update -g with the error "
             f"dv = truth - start (mean over models); > 0 lowers the error. Share = fraction of the squared norm "
             f"in each depth band. Error share by band 0-0.5 / 0.5-1 / 1-1.5 / 1.5-2 km: "
             f"{' / '.join(f'{x:.2f}' for x in error_share)}. {time.perf_counter() - t0:.0f} s on "
             f"{args.threads} thread(s).", "",
             "| stage | time gain | preconditioner | cos (all) | cos by band 0-0.5 / 0.5-1 / 1-1.5 / 1.5-2 km | "
             "update share by band |", "|---|---|---|---|---|---|"]
    for (cutoff, gain, name), r in sorted(results.items(), key=lambda kv: (kv[0][0] or 99, kv[0][1], -kv[1][0])):
        lines.append(f"| {cutoff or 'full'} | {gain:g} | {name} | {r[0]:+.3f} | "
                     f"{' / '.join(f'{x:+.2f}' for x in r[1:5])} | {' / '.join(f'{x:.2f}' for x in r[5:9])} |")
    (HERE / args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
