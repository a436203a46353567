"""Generator throughput against a bare loop of deepwave calls on the same models, and 1 vs 2 workers.

    python experiments/bench/bench_generate.py [--preset salt70] [--n 64] [--repeats 2]

Everything is measured in this one run, interleaved (bare, 1 worker, 2 workers, bare, ...), and the median of the
repeats is reported. "bare" is deepwave.scalar called directly on pre-generated models in batches of the preset's
part size; "generator" is the full `fwi.data.generate.generate` (geology, modelling, part files, merge, gzip).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import deepwave
import torch
from einops import repeat

from fwi.data.generate import generate, sample_models
from fwi.data.presets import get_preset


def bare_deepwave(velocity: torch.Tensor, survey, batch: int) -> None:
    s = survey.n_sources
    src, rec = survey.source_cells(), survey.receiver_cells()
    wavelet = survey.wavelet()
    for start in range(0, len(velocity), batch):
        v = velocity[start:start + batch]
        b = len(v)
        deepwave.scalar(repeat(v, "b z x -> (b s) z x", s=s), survey.dx, survey.dt,
                        source_amplitudes=repeat(wavelet, "t -> n 1 t", n=b * s),
                        source_locations=src.repeat(b, 1, 1), receiver_locations=rec.repeat(b, 1, 1),
                        accuracy=survey.accuracy, pml_width=survey.pml_width, pml_freq=survey.freq,
                        max_vel=survey.max_velocity)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="salt70")
    p.add_argument("--n", type=int, default=64, help="models per measurement")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generate_cpu.md")
    args = p.parse_args()
    preset = get_preset(args.preset)
    survey = preset.survey
    velocity = torch.from_numpy(sample_models("train", range(args.n), 0, survey, preset.geology)[0])
    times: dict[str, list[float]] = {"bare deepwave loop": [], "generator, 1 worker": [], "generator, 2 workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            t0 = time.perf_counter()
            bare_deepwave(velocity, survey, preset.samples_per_part)
            times["bare deepwave loop"].append(time.perf_counter() - t0)
            for workers in (1, 2):
                out = Path(tmp) / f"w{workers}-{r}.h5"
                t0 = time.perf_counter()
                generate(out, args.preset, seed=0, workers=workers, sizes={"train": args.n}, progress=False)
                times[f"generator, {workers} worker{'s' if workers > 1 else ''}"].append(time.perf_counter() - t0)
                out.unlink()
    bare = statistics.median(times["bare deepwave loop"])
    lines = [f"# Dataset generation throughput ({args.preset}, {args.n} models, median of {args.repeats})", "",
             f"Command: `python experiments/bench/bench_generate.py --preset {args.preset} --n {args.n} "
             f"--repeats {args.repeats}`; {os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"deepwave {deepwave.__version__}, internal step ratio {survey.step_ratio()}.", "",
             "| what | seconds | models/s | time over bare deepwave |", "|---|---|---|---|"]
    for name, values in times.items():
        t = statistics.median(values)
        lines.append(f"| {name} | {t:.2f} | {args.n / t:.2f} | {t / bare:.3f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
