"""What an FWI gradient costs at field scale, and what the cheaper ones lose.

    python experiments/bench/bench_gradient.py [--preset fieldsalt] [--batch 2] [--repeat 2] [--threads 1]

One process, one thread by default (the refinement's setting: one thread per process is immune to the 30x
oversubscription slow-down), the cases run side by side on the same models: a forward without gradient, and forward +
backward (the L2 misfit's gradient w.r.t. the velocity) with deepwave's exact wavefield storage, with every k-th step
stored (``model_gradient_sampling_interval``), with 8-bit storage compression, and with denormal floats flushed to
zero (``torch.set_flush_denormal``: the wavefield decays into subnormal numbers, which x86 handles ~100x slower).
Each gradient is compared with the exact one (cosine similarity over the model, outside the top two rows where the
sources sit). Writes experiments/bench/results/gradient_<preset>_cpu.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fwi.data.geology import generate_models
from fwi.data.presets import get_preset
from fwi.invert.precondition import gaussian_smooth
from fwi.physics import forward_model

OUT = Path(__file__).resolve().parent / "results"

#: (label, forward_model keyword arguments, flush denormals)
CASES = [("exact (interval 1)", {}, False), ("exact, denormals flushed", {}, True)]
CASES += [(f"interval {k}", {"gradient_sampling_interval": k}, False) for k in (2, 4, 5, 8, 10, 20)]
CASES += [("interval 5, denormals flushed", {"gradient_sampling_interval": 5}, True),
          ("8-bit storage compression", {"storage_compression": True}, False),
          ("interval 5 + 8-bit compression", {"gradient_sampling_interval": 5, "storage_compression": True}, False)]


def misfit_gradient(start: torch.Tensor, observed: torch.Tensor, survey, **options) -> tuple[torch.Tensor, float]:
    """The L2 misfit's gradient (B, nz, nx) w.r.t. the velocity and the seconds forward + backward took."""
    v = start.clone().requires_grad_(True)
    t0 = time.perf_counter()
    forward_model(v, survey, check=False, **options).sub(observed).pow(2).sum().backward()
    return v.grad.detach(), time.perf_counter() - t0


def cosine(a: torch.Tensor, b: torch.Tensor, mute: int = 2) -> float:
    a, b = a[:, mute:].flatten().double(), b[:, mute:].flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def refined_comparison(survey, true: torch.Tensor, observed: torch.Tensor, start: torch.Tensor,
                       iterations: int) -> list[str]:
    """Refine ``start`` with the exact and with the lossless gradient: MAE before / after and the difference of the
    two refined models (what a cheaper gradient does to the result, not only to one gradient)."""
    from fwi.invert.config import RefineConfig
    from fwi.invert.core import refine

    k = survey.lossless_gradient_sampling()
    rows, refined = [], {}
    for label, interval in (("exact (interval 1)", 1), (f"lossless (interval {k})", k)):
        r = refine(survey, observed, start, None, RefineConfig(iterations=iterations, schedule=(4.0, 8.0, None),
                                                               gradient_sampling=interval), truth=true, progress=False)
        refined[label] = r.velocity
        mae = [float(np.abs(v - true.numpy()).mean()) for v in (r.start, r.velocity)]
        rows.append(f"| {label} | {mae[0]:.1f} | {mae[1]:.1f} | {r.seconds / len(true):.1f} |")
        print(rows[-1], flush=True)
    a, b = refined.values()
    return [f"Refinement of the same start, {iterations} iterations (4 -> 8 Hz -> full band, default SGD scheme):", "",
            "| gradient | MAE before (m/s) | MAE after (m/s) | seconds per model |", "|---|---|---|---|", *rows, "",
            f"The two refined models differ by at most {np.abs(a - b).max():.3g} m/s "
            f"(mean {np.abs(a - b).mean():.3g} m/s)."]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fieldsalt")
    p.add_argument("--batch", type=int, default=2, help="models per call (all their shots in one deepwave call)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--refine-iterations", type=int, default=12,
                   help="also refine the start this many iterations (4 -> 8 Hz -> full band) with the exact and the "
                        "lossless gradient and compare the refined models (0: skip)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    survey = preset.survey
    true, _ = generate_models(7, args.batch, *survey.shape, preset.geology)
    true = torch.from_numpy(true)
    start = gaussian_smooth(true, 150.0 / survey.dx)  # the true model smoothed over 150 m
    with torch.no_grad():
        observed = forward_model(true, survey)
    rows, exact = [], None
    with torch.no_grad():
        forward_model(start, survey)  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            forward_model(start, survey)
        forward_s = (time.perf_counter() - t0) / args.repeat
    for label, options, flush in CASES:
        if survey.nt % options.get("gradient_sampling_interval", 1):
            print(f"{label}: skipped (the interval must divide nt = {survey.nt})")
            continue
        torch.set_flush_denormal(flush)
        times = []
        for _ in range(args.repeat):
            grad, seconds = misfit_gradient(start, observed, survey, **options)
            times.append(seconds)
        torch.set_flush_denormal(False)
        exact = grad if exact is None else exact
        rows.append((label, float(np.median(times)), cosine(grad, exact)))
        print(f"{label:32s} {rows[-1][1]:7.2f} s  1 - cos {1 - rows[-1][2]:.1e}", flush=True)
    lines = [f"# FWI gradient at preset {args.preset} (CPU, {args.threads} thread(s))", "",
             f"{args.batch} models x {survey.n_sources} shots, grid {survey.nz} x {survey.nx} at {survey.dx:g} m, "
             f"{survey.nt} x {survey.dt * 1e3:g} ms ({survey.step_ratio()} internal steps each), "
             f"{survey.freq:g} Hz Ricker; median of {args.repeat}. Forward without gradient: {forward_s:.2f} s.", "",
             f"Sampling interval k stores every k-th of the {survey.nt} steps ({survey.dt * 1e3:g} ms each); it must "
             "divide nt.", "",
             "| case | forward + backward (s) | / forward | / exact | 1 - cosine with exact |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {s:.2f} | {s / forward_s:.2f} | {s / rows[0][1]:.2f} | {1 - c:.1e} |"
              for label, s, c in rows]
    if args.refine_iterations:
        lines += ["", *refined_comparison(survey, true, observed, start, args.refine_iterations)]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"gradient_{args.preset}_cpu.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
