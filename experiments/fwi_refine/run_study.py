"""The recorded FWI-refinement study (experiments/fwi_refine/README.md): starts x methods on salt70-geometry models.

    python experiments/fwi_refine/run_study.py --tag test24 --split test --indices 0:24 --iterations 30 \
        --run unet=runs/salt70_attention-none-nophys-s0 --run ca-skip=runs/salt70_attention-ca-skip-nophys-s0 \
        --methods plain-l2,adam+precond,sgd,sgd+salt-pin,network-prior,salt-fill --refs

Every (start, method) job writes ``results/<tag>/<start>__<method>.json`` (per-model metrics before/after, the
per-iteration history, seconds) and ``<start>__<method>.npz`` (start and refined models, float16) when it finishes; a
job whose JSON exists with the same settings and models is skipped, and an interrupted job resumes from its state file
(``results/<tag>/state/``), so the study completes across sessions. ``results/<tag>/study.csv`` is rebuilt from the
JSON files after every job. Models are refined in chunks of ``--chunk`` (deepwave models a whole chunk in one call;
memory grows with it).

Methods (``METHODS``): each is a set of `fwi.invert.RefineConfig` fields, applied to the network's prediction (or a
reference start); ``salt-fill`` is not FWI: the network's velocity with the confident salt cells set to the salt
velocity, the zero-cost use of the salt head that the physics must beat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fwi.atomic import write_text
from fwi.data.store import read_info
from fwi.invert import RefineConfig, refine_batches
from fwi.invert.core import score
from fwi.invert.dataset import read_samples
from fwi.invert.starts import network_start, smooth_start, trend_start
from fwi.metrics import data_misfit
from fwi.run import load_run

HERE = Path(__file__).resolve().parent
MULTISCALE = dict(schedule=(4.0, 8.0, 12.0, None))
CONTINUATION = (3.0, 5.0, 8.0, None)  # field scale: the 7 Hz Ricker has a fifth of its peak amplitude at 2 Hz
#: The pilot's Adam scheme (the fwi.invert default before this study), every field spelled out so that a change of the
#: library's defaults never changes what a recorded method means.
ADAM = dict(optimizer="adam", lr=0.03, grad_quantile=0.0, smooth_sigma=0.0, mute_cells=0, illumination=False)
PRECOND = dict(smooth_sigma=2.0, mute_cells=2, illumination=True)  # the pilot's preconditioning
#: SGD with momentum on the gradient normalised by its 98th percentile (keeps the gradient's spatial shape; a step
#: of lr km/s for the best-constrained cells), light smoothing and a top mute, no illumination scaling.
SGD = dict(optimizer="sgd", lr=0.05, grad_quantile=0.98, smooth_sigma=1.0, mute_cells=2, illumination=False)
SALT_VELOCITY = 4500.0  # fwi.data.geology draws salt at 4400-4600 m/s
#: name -> RefineConfig fields (plus "start": how the start is changed before FWI: "salt-flood").
#: the network's weights optimised per model (Adam 1e-5, as on salt70) with the field continuation
NETWORK_PRIOR_FIELD = dict(ADAM, schedule=CONTINUATION, smooth_sigma=2.0, mute_cells=2, param="network",
                           network_lr=1e-5)
METHODS: dict[str, dict[str, Any]] = {
    # the failing baseline and the pilot's Adam-based steps
    "plain-l2": dict(ADAM, schedule=(None,)),
    "adam+multiscale": dict(ADAM, **MULTISCALE),
    "adam+precond": dict(ADAM, **MULTISCALE, **PRECOND),
    "lbfgs+precond": dict(ADAM, **MULTISCALE, **PRECOND, optimizer="lbfgs"),
    # normalised-gradient descent, full band and with frequency continuation
    "sgd": dict(SGD, schedule=(None,)),
    "sgd+multiscale": dict(SGD, schedule=(8.0, 12.0, None)),
    "sgd+multiscale-60": dict(SGD, schedule=(8.0, 12.0, None), iterations=60),  # the cost of lbfgs+precond
    "sgd+gain": dict(SGD, schedule=(None,), time_gain=2.0),
    "sgd+tv": dict(SGD, schedule=(None,), tv_weight=1e-3),
    "sgd+envelope": dict(SGD, schedule=(None,), misfit="envelope"),
    # salt guidance on top of the SGD scheme (full band: the val tuning; multiscale: the test study)
    "sgd+salt-pin": dict(SGD, schedule=(None,), param="salt_pin", salt_confidence=0.5),
    "sgd+salt-soft": dict(SGD, schedule=(None,), param="salt_soft"),
    "sgd+salt-flood": dict(SGD, schedule=(None,), start="salt-flood"),
    "sgd+ms+salt-pin": dict(SGD, schedule=(8.0, 12.0, None), param="salt_pin", salt_confidence=0.5),
    "sgd+ms+salt-flood": dict(SGD, schedule=(8.0, 12.0, None), start="salt-flood"),
    # the network as the parameterisation (Adam on its weights)
    "network-prior": dict(ADAM, **MULTISCALE, smooth_sigma=2.0, mute_cells=2, param="network", network_lr=1e-5),
    # not FWI: the salt head alone
    "salt-fill": dict(start="salt-flood", iterations=0),
    # field scale (experiments/fwi_refine_field/): low-frequency continuation from 3 Hz, smaller steps, depth scaling
    "sgd+continuation": dict(SGD, schedule=CONTINUATION),
    "sgd+continuation-lr02": dict(SGD, schedule=CONTINUATION, lr=0.02),
    "sgd+continuation-lr02-72": dict(SGD, schedule=CONTINUATION, lr=0.02, iterations=72),  # partner of the 72-it prior
    "sgd+depth2-lr02": dict(SGD, schedule=CONTINUATION, depth_power=2.0, mute_cells=5, lr=0.02),
    "lbfgs+depth2": dict(SGD, schedule=CONTINUATION, depth_power=2.0, mute_cells=5, optimizer="lbfgs",
                         grad_quantile=0.0),
    "lbfgs+continuation": dict(SGD, schedule=CONTINUATION, optimizer="lbfgs", grad_quantile=0.0),  # no depth scaling
    "network-prior+continuation": NETWORK_PRIOR_FIELD,
    # the same, twice as long (its MAE was still falling at iteration 36)
    "network-prior+continuation-72": dict(NETWORK_PRIOR_FIELD, iterations=72),
    # the same, each model leaving each frequency stage at its iterate of lowest stage misfit (fwi.invert.best): Adam
    # on the weights walked model 29 from 93 to 212 m/s MAE at a flat misfit
    "network-prior+continuation+keep-best": dict(NETWORK_PRIOR_FIELD, keep_best=True),
    "sgd+continuation-tv": dict(SGD, schedule=CONTINUATION, tv_weight=1e-3),
    "sgd+continuation-lr02-tv": dict(SGD, schedule=CONTINUATION, lr=0.02, tv_weight=1e-3),  # TV on the chosen scheme
    "sgd+continuation+salt-pin": dict(SGD, schedule=CONTINUATION, param="salt_pin", salt_confidence=0.5),
    "sgd+continuation+salt-flood": dict(SGD, schedule=CONTINUATION, start="salt-flood"),
    # the chosen field scheme (continuation, lr 0.02) guided by the salt head: its salt cells set to the salt
    # velocity before FWI (flood), or held there while FWI updates the rest (pin)
    "sgd+continuation-lr02+salt-flood": dict(SGD, schedule=CONTINUATION, lr=0.02, start="salt-flood"),
    "sgd+continuation-lr02+salt-pin": dict(SGD, schedule=CONTINUATION, lr=0.02, param="salt_pin",
                                           salt_confidence=0.5),
    # the pin with the salt velocity held at RefineConfig.salt_velocity (4500 m/s): the learnt one drifted to
    # 3792-5000 m/s at field scale
    "sgd+continuation-lr02+salt-pin-fixed": dict(SGD, schedule=CONTINUATION, lr=0.02, param="salt_pin",
                                                 salt_confidence=0.5, learn_salt_velocity=False),
}
REFERENCE_METHOD = "sgd"
SMOOTH_METRES = 50.0  # the smooth-true reference: 5 cells of salt70's 10 m


def salt_flood(start: torch.Tensor, prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The start with the cells the salt head calls salt (p > threshold) set to the salt velocity (m/s)."""
    return torch.where(prob > threshold, torch.full_like(start, SALT_VELOCITY), start)


def load_models(data: str, split: str, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw gathers (B, S, T', R) at the file's time decimation (decoded as every reader does: compact files too), true
    velocity (B, nz, nx) and salt mask (B, nz, nx) of ``indices`` of ``split``."""
    s = read_samples(data, split, indices, read_info(data).storage.time_decimation)
    return s.gathers, s.velocity, s.salt_mask


def job_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def starting_models(run, start_name: str, data: str, observed: torch.Tensor, truth: torch.Tensor,
                    smooth_metres: float = SMOOTH_METRES
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Start velocity (B, nz, nx) m/s, salt probability and salt logits (None for the reference starts)."""
    info = read_info(data)
    if start_name == "smooth-true":
        return smooth_start(truth, smooth_metres / info.survey.dx), None, None
    if start_name == "trend":
        return trend_start(data, len(truth)), None, None
    return network_start(run, observed, time_decimation=info.storage.time_decimation)


def run_job(run, start_name: str, method: str, data: str, split: str, indices: list[int], iterations: int,
            out: Path, chunk: int, smooth_metres: float = SMOOTH_METRES) -> dict[str, Any]:
    """Refine the models of ``indices`` from ``start_name`` with ``method``; per-model results and history."""
    fields = dict(METHODS[method])
    start_kind = fields.pop("start", None)
    iters = fields.pop("iterations", iterations)
    observed, truth, mask = load_models(data, split, indices)
    info = read_info(data)
    survey, k = info.survey, info.storage.time_decimation
    start, prob, logits = starting_models(run, start_name, data, observed, truth, smooth_metres)
    changed = salt_flood(start, prob) if start_kind == "salt-flood" else start
    if iters == 0:  # not FWI: score the changed start against the start
        t0 = time.perf_counter()
        before, after = (score(v, truth, mask, run.normalizer, logits) for v in (start, changed))
        res = {"misfit_before": data_misfit(start, observed, survey, k).numpy(),
               "misfit_after": data_misfit(changed, observed, survey, k).numpy(),
               **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()}}
        seconds, history, refined = time.perf_counter() - t0, [], changed.numpy()
    else:
        cfg = RefineConfig(iterations=iters, time_decimation=k, **fields)
        r = refine_batches(run, observed, changed, prob, cfg, batch_size=chunk, truth=truth, truth_mask=mask,
                           normalizer=run.normalizer, start_salt_logits=logits,
                           state_dir=out / "state" / f"{start_name}__{method}", desc=f"{start_name} {method}")
        # "before" is the network's start, also for a changed start (salt flood): what the method is measured against
        before = score(start, truth, mask, run.normalizer, logits)
        res = {"misfit_before": data_misfit(start, observed, survey, k).numpy(), "misfit_after": r.misfit_after,
               **{f"{k}_before": v for k, v in before.items()},
               **{f"{k}_after": v for k, v in r.metrics_after.items()}}
        seconds, history, refined = r.seconds, r.history, r.velocity
    np.savez_compressed(out / f"{start_name}__{method}.npz", velocity=np.asarray(refined, dtype=np.float16),
                        start=np.asarray(start, dtype=np.float16), indices=np.asarray(indices))
    per_model = {k: np.asarray(v, dtype=float).tolist() for k, v in res.items()}
    return {"per_model": per_model, "history": history, "seconds": seconds,
            "seconds_per_model": seconds / len(indices), "iterations": iters}


def summarise(result: dict[str, Any]) -> dict[str, float]:
    pm = result["per_model"]
    out = {k: float(np.mean(v)) for k, v in pm.items()}
    out["misfit_ratio"] = out["misfit_before"] / max(out["misfit_after"], 1e-12)
    out["mae_change"] = out["mae_ms_after"] / out["mae_ms_before"] - 1
    # paired standard error of the MAE change over the models
    d = np.asarray(pm["mae_ms_after"]) - np.asarray(pm["mae_ms_before"])
    out["mae_delta_se"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return out


CSV_FIELDS = ["start", "method", "n", "iterations", "mae_ms_before", "mae_ms_after", "mae_change", "mae_delta_se",
              "ssim_before", "ssim_after", "iou_before", "iou_after", "misfit_before", "misfit_after",
              "misfit_ratio", "seconds_per_model"]


def write_csv(out: Path) -> None:
    rows = []
    for path in sorted(out.glob("*__*.json")):
        r = json.loads(path.read_text())
        s = summarise(r)
        rows.append({"start": r["start"], "method": r["method"], "n": len(r["indices"]),
                     "iterations": r["iterations"], "seconds_per_model": r["seconds_per_model"],
                     **{k: s[k] for k in CSV_FIELDS if k in s}})
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (r["start"] in ("smooth-true", "trend"), r["start"], order.get(r["method"], 99)))
    lines = [",".join(CSV_FIELDS)]
    for r in rows:
        lines.append(",".join(f"{r[k]:.5g}" if isinstance(r[k], float) else str(r[k]) for k in CSV_FIELDS))
    write_text(out / "study.csv", "\n".join(lines) + "\n")


def parse_indices(text: str) -> list[int]:
    if ":" in text:
        a, b = text.split(":")
        return list(range(int(a), int(b)))
    return [int(t) for t in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR of a network start (repeatable)")
    p.add_argument("--data", default="data/ablation70.h5")
    p.add_argument("--split", default="test")
    p.add_argument("--indices", default="0:24")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--refs", action="store_true", help="also the smoothed true model and the 1D trend as starts")
    p.add_argument("--ref-methods", default=REFERENCE_METHOD, help="methods for the reference starts")
    p.add_argument("--ref-starts", default="smooth-true,trend", help="which reference starts --refs adds")
    p.add_argument("--tag", required=True, help="results/<tag>/: one study (e.g. val8-tune, test24)")
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smooth-metres", type=float, default=SMOOTH_METRES,
                   help=f"smoothing of the smooth-true reference start (m; default {SMOOTH_METRES:g})")
    p.add_argument("--out", default=None, help="results folder (default results/<tag> beside this script)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out) / args.tag if args.out else HERE / "results" / args.tag
    out.mkdir(parents=True, exist_ok=True)
    indices = parse_indices(args.indices)
    runs = dict(item.split("=", 1) for item in args.run)
    jobs = [(label, m) for label in runs for m in args.methods.split(",") if m]
    if args.refs:
        unknown = set(args.ref_starts.split(",")) - {"smooth-true", "trend", ""}
        if unknown:
            raise SystemExit(f"error: unknown reference start(s) {sorted(unknown)}; valid: smooth-true, trend")
        jobs += [(ref, m) for ref in args.ref_starts.split(",") if ref for m in args.ref_methods.split(",") if m]
    first_run = load_run(next(iter(runs.values())))
    for start_name, method in jobs:
        if method not in METHODS:
            raise SystemExit(f"error: unknown method {method!r}; valid: {', '.join(METHODS)}")
        run = load_run(runs[start_name]) if start_name in runs else first_run
        settings = {"start": start_name, "run": str(runs.get(start_name, "")), "method": method,
                    "fields": {k: list(v) if isinstance(v, tuple) else v for k, v in METHODS[method].items()},
                    "data": args.data, "split": args.split, "indices": indices, "iterations": args.iterations}
        if args.smooth_metres != SMOOTH_METRES and start_name == "smooth-true":  # recorded keys stay valid
            settings["smooth_metres"] = args.smooth_metres
        path = out / f"{start_name}__{method}.json"
        if path.exists() and json.loads(path.read_text()).get("key") == job_key(settings):
            print(f"{path.name}: done, skipped", flush=True)
            continue
        result = run_job(run, start_name, method, args.data, args.split, indices, args.iterations, out, args.chunk,
                         args.smooth_metres)
        write_text(path, json.dumps({**settings, "key": job_key(settings), **result}))
        write_csv(out)
        s = summarise(result)
        print(f"{start_name} {method}: MAE {s['mae_ms_before']:.1f} -> {s['mae_ms_after']:.1f} m/s "
              f"({100 * s['mae_change']:+.1f} %), IoU {s['iou_before']:.3f} -> {s['iou_after']:.3f}, misfit "
              f"{s['misfit_before']:.3f} -> {s['misfit_after']:.3f} ({s['misfit_ratio']:.2f}x), "
              f"{result['seconds_per_model']:.1f} s/model", flush=True)


if __name__ == "__main__":
    main()
