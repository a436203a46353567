"""The recorded FWI-refinement study (experiments/fwi_refine/README.md): methods x starts on salt70-geometry test models.

    python experiments/fwi_refine/run_study.py --run /tmp/study/runs/unet-ca-skip-s0 --n 4 --iterations 8

Appends one row per (start, method) to results/study.csv and writes results/<start>-<method>.json as it goes.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from fwi.invert import RefineConfig, refine
from fwi.invert.starts import network_start, smooth_start, trend_start

OUT = Path(__file__).resolve().parent / "results"
PRE = dict(smooth_sigma=2.0, mute_cells=2, illumination=True)
METHODS = {
    "plain-l2": dict(schedule=(None,)),
    "+multiscale": dict(schedule=(4.0, 8.0, 12.0, None)),
    "+precond": dict(schedule=(4.0, 8.0, 12.0, None), **PRE),
    "+salt-pin": dict(schedule=(4.0, 8.0, 12.0, None), **PRE, param="salt_pin", salt_confidence=0.5),
    "network-prior": dict(schedule=(4.0, 8.0, 12.0, None), smooth_sigma=2.0, mute_cells=2, param="network",
                          network_lr=1e-5),
    "+precond-lbfgs": dict(schedule=(4.0, 8.0, 12.0, None), **PRE, optimizer="lbfgs"),
}
DEFAULT_METHODS = ["plain-l2", "+multiscale", "+precond", "+salt-pin", "network-prior"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True)
    p.add_argument("--data", default="data/quick.h5")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--refs", action="store_true")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    args = p.parse_args()
    torch.set_num_threads(2)
    try:
        from fwi.run import load_run
    except ImportError:
        from fwi.evaluate import load_run

    run = load_run(args.run)
    with h5py.File(args.data, "r") as f:
        g = torch.from_numpy(f["test/gathers"][:args.n])
        v = torch.from_numpy(f["test/velocity"][:args.n, 0])
        m = torch.from_numpy(f["test/salt_mask"][:args.n, 0]).float()
    start, prob, logits = network_start(run, g)
    jobs = [(run.name, name, start, METHODS[name]) for name in args.methods.split(",") if name]
    if args.refs:
        jobs += [("smooth-true", "+precond", smooth_start(v, 5.0), METHODS["+precond"]),
                 ("trend", "+precond", trend_start(args.data, args.n), METHODS["+precond"])]
    OUT.mkdir(parents=True, exist_ok=True)
    csv_path = OUT / "study.csv"
    fields = ["start", "method", "n", "iterations", "mae_before", "mae_after", "ssim_before", "ssim_after",
              "iou_before", "iou_after", "misfit_before", "misfit_after", "misfit_ratio", "s_per_model"]
    new = not csv_path.exists()
    for start_name, method, s0, kw in jobs:
        cfg = RefineConfig(iterations=args.iterations, **kw)
        net = start_name == run.name
        t = time.time()
        r = refine(run, g, s0, prob if net else None, cfg, truth=v, truth_mask=m,
                   start_salt_logits=logits if net else None, progress=False)
        s = r.summary()
        row = {"start": start_name, "method": method, "n": args.n, "iterations": args.iterations,
               "mae_before": s["mae_ms_before"], "mae_after": s["mae_ms_after"], "ssim_before": s["ssim_before"],
               "ssim_after": s["ssim_after"], "iou_before": s["iou_before"], "iou_after": s["iou_after"],
               "misfit_before": s["misfit_before"], "misfit_after": s["misfit_after"],
               "misfit_ratio": s["misfit_before"] / max(s["misfit_after"], 1e-12),
               "s_per_model": (time.time() - t) / args.n}
        with open(csv_path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            if new:
                w.writeheader()
                new = False
            w.writerow({k: (f"{x:.4g}" if isinstance(x, float) else x) for k, x in row.items()})
        (OUT / f"{start_name}-{method}.json").write_text(json.dumps({**s, "history": r.history}, indent=1))
        print(row, flush=True)


if __name__ == "__main__":
    main()
