"""Seconds per FWI iteration per model (fwi.invert.refine with its default scheme, full band) against a bare deepwave
forward + backward of the same shots, and peak memory (process RSS, each case in its own process).

    python experiments/bench/bench_invert.py [--batch 2] [--iterations 3] [--device cpu]

Writes experiments/bench/results/invert_<device>.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"


def _case(kind: str, batch: int, iterations: int, device: str, queue) -> None:
    torch.set_num_threads(2)
    from fwi.invert import RefineConfig, refine
    from fwi.physics import Survey, forward_model

    survey = Survey()  # OpenFWI geometry: 70 x 70, 5 shots, 1000 samples, 70 receivers
    true = torch.full((batch, 70, 70), 2500.0, device=device)
    true[:, 35:] = 3500.0
    observed = forward_model(true, survey)
    start = torch.full((batch, 70, 70), 3000.0, device=device)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "bare":
        v = start.clone().requires_grad_(True)
        forward_model(v, survey).sub(observed).pow(2).sum().backward()  # warm-up
        t = time.perf_counter()
        for _ in range(iterations):
            v.grad = None
            forward_model(v, survey).sub(observed).pow(2).sum().backward()
        seconds = (time.perf_counter() - t) / iterations
    else:
        cfg = RefineConfig(iterations=1, schedule=(None,))
        refine(survey, observed, start, None, cfg, progress=False)  # warm-up
        r = refine(survey, observed, start, None, RefineConfig(iterations=iterations, schedule=(None,)),
                   progress=False)
        seconds = r.seconds / iterations
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((seconds / batch, peak / 1024, (peak - base) / 1024))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    rows = {}
    for kind in ("bare", "refine"):
        q = ctx.Queue()
        proc = ctx.Process(target=_case, args=(kind, args.batch, args.iterations, args.device, q))
        proc.start()
        rows[kind] = q.get()
        proc.join()
    ratio = rows["refine"][0] / rows["bare"][0]
    text = (f"# fwi.invert iteration cost ({args.device})\n\n"
            f"`python experiments/bench/bench_invert.py --batch {args.batch} --iterations {args.iterations} "
            f"--device {args.device}`; OpenFWI geometry (70 x 70, 5 shots, 1000 samples, 2 internal steps each), "
            f"batch {args.batch}, 2 threads on a shared 2-core machine.\n\n"
            "| case | s / iteration / model | peak RSS (MiB) | RSS growth in the case (MiB) |\n|---|---|---|---|\n"
            + "".join(f"| {k} | {s:.3f} | {m:.0f} | {d:.0f} |\n" for k, (s, m, d) in rows.items())
            + f"\nrefine / bare = **{ratio:.2f}x** (target <= 1.1x).\n")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"invert_{args.device}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
