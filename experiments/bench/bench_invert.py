"""Seconds per FWI iteration per model (fwi.invert.refine, full band) against a bare deepwave forward + backward of
the same shots and a forward without gradient, with the exact gradient (every time step stored) and with the
survey's lossless gradient sampling (refine's default, `Survey.lossless_gradient_sampling`); peak memory (process
RSS, each case in its own process).

    python experiments/bench/bench_invert.py [--preset salt70|fieldsalt] [--batch 2] [--iterations 3] [--threads 1]

Writes experiments/bench/results/invert_<preset>_<device>.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"


def _models(preset_name: str, batch: int, device: str):
    """The survey, observed gathers (B, S, T, R) of generated true models and a smoothed start (B, nz, nx)."""
    from fwi.data.geology import generate_models
    from fwi.data.presets import get_preset
    from fwi.invert.precondition import gaussian_smooth
    from fwi.physics import forward_model

    preset = get_preset(preset_name)
    true = torch.from_numpy(generate_models(7, batch, *preset.survey.shape, preset.geology)[0]).to(device)
    with torch.no_grad():
        observed = forward_model(true, preset.survey)
    return preset.survey, observed, gaussian_smooth(true, 150.0 / preset.survey.dx)


def _case(kind: str, preset: str, batch: int, iterations: int, threads: int, device: str, queue) -> None:
    torch.set_num_threads(threads)
    from fwi.invert.config import RefineConfig
    from fwi.invert.core import refine
    from fwi.physics import forward_model

    survey, observed, start = _models(preset, batch, device)
    interval = survey.lossless_gradient_sampling() if kind.endswith("lossless") else 1
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "forward":
        with torch.no_grad():
            forward_model(start, survey)  # warm-up
            t = time.perf_counter()
            for _ in range(iterations):
                forward_model(start, survey)
        seconds = (time.perf_counter() - t) / iterations
    elif kind.startswith("bare"):
        def step() -> None:
            v = start.clone().requires_grad_(True)
            forward_model(v, survey, gradient_sampling_interval=interval).sub(observed).pow(2).sum().backward()
        step()  # warm-up
        t = time.perf_counter()
        for _ in range(iterations):
            step()
        seconds = (time.perf_counter() - t) / iterations
    else:
        config = dict(schedule=(None,), gradient_sampling=interval)
        refine(survey, observed, start, None, RefineConfig(iterations=1, **config), progress=False)  # warm-up
        r = refine(survey, observed, start, None, RefineConfig(iterations=iterations, **config), progress=False)
        seconds = r.seconds / iterations
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((seconds / batch, peak / 1024, (peak - base) / 1024, interval))


CASES = ("forward", "bare, exact", "refine, exact", "bare, lossless", "refine, lossless")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="salt70")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    rows = {}
    for kind in CASES:
        q = ctx.Queue()
        proc = ctx.Process(target=_case, args=(kind, args.preset, args.batch, args.iterations, args.threads,
                                               args.device, q))
        proc.start()
        rows[kind] = q.get()
        proc.join()
        print(kind, rows[kind], flush=True)
    fwd = rows["forward"][0]
    table = "".join(f"| {k} | {s:.3f} | {s / fwd:.2f} | {m:.0f} | {d:.0f} |\n" for k, (s, m, d, _) in rows.items())
    k = rows["bare, lossless"][3]
    text = (f"# fwi.invert iteration cost, preset {args.preset} ({args.device}, {args.threads} thread(s))\n\n"
            f"`python experiments/bench/bench_invert.py --preset {args.preset} --batch {args.batch} --iterations "
            f"{args.iterations} --threads {args.threads}`; {args.batch} generated models, start = truth smoothed over "
            f"150 m, all shots in one deepwave call, full band. *exact*: every time step stored for the gradient; "
            f"*lossless*: every {k}-th (`Survey.lossless_gradient_sampling`, refine's default).\n\n"
            "| case | s / model | / forward | peak RSS (MiB) | RSS growth in the case (MiB) |\n|---|---|---|---|---|\n"
            + table
            + f"\nrefine / bare: exact **{rows['refine, exact'][0] / rows['bare, exact'][0]:.2f}x**, lossless "
              f"**{rows['refine, lossless'][0] / rows['bare, lossless'][0]:.2f}x** (target <= 1.1x); "
              f"an iteration before / after: {rows['refine, exact'][0]:.2f} -> {rows['refine, lossless'][0]:.2f} s "
              f"per model ({rows['refine, exact'][0] / rows['refine, lossless'][0]:.1f}x faster).\n")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"invert_{args.preset}_{args.device}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
