"""Generator throughput against a bare loop of deepwave calls on the same models, and 1 vs 2 workers.

    python experiments/bench/bench_generate.py [--preset salt70] [--n 64] [--repeats 2] [--merge-only]

Everything is measured in this one run, interleaved (bare, 1 worker, 2 workers, bare, ...), and the median of the
repeats is reported. "bare" is deepwave.scalar called directly on pre-generated models in batches of the preset's
part size; "generator" is the full `fwi.data.generate.generate` (geology, modelling, part files, merge, gzip).

The merge is also timed alone on the same parts, two ways: as written today (workers store gzip-compressed parts in
the dataset's layout with their statistics; the merge copies chunks as they are) and from the plain uncompressed
parts earlier versions wrote (the merge decompresses nothing but computes the statistics and compresses everything).
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

import h5py

from fwi.data.generate import generate
from fwi.data.modelling import sample_models
from fwi.data.parts import merge_parts
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


def plain_copy(parts_dir: Path, into: Path) -> None:
    """The parts rewritten as earlier versions stored them: uncompressed arrays, no statistics."""
    into.mkdir()
    (into / "manifest.json").write_bytes((parts_dir / "manifest.json").read_bytes())
    for part in parts_dir.glob("*.h5"):
        with h5py.File(part, "r") as src, h5py.File(into / part.name, "w") as dst:
            for key in src:
                dst.create_dataset(key, data=src[key][()])


def time_merges(preset: str, n: int, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"compressed parts, chunks copied": [], "plain parts (earlier layout)": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.h5"
        generate(out, preset, seed=0, workers=1, sizes={"train": n}, shard=(0, 1), progress=False)
        parts = out.with_name(out.name + ".parts")
        plain = Path(tmp) / "plain.parts"
        plain_copy(parts, plain)
        for _ in range(repeats):
            for name, where in (("compressed parts, chunks copied", parts), ("plain parts (earlier layout)", plain)):
                t0 = time.perf_counter()
                merge_parts(out, [where], cleanup=False)
                times[name].append(time.perf_counter() - t0)
                out.unlink()
    return times


def merge_table(args: argparse.Namespace) -> list[str]:
    times = time_merges(args.preset, args.n, args.repeats)
    fast = statistics.median(times["compressed parts, chunks copied"])
    lines = [f"Merge of the {args.n} models' parts alone ({args.preset}, median of {args.repeats}):", "",
             "| parts | seconds | time over chunk copy |", "|---|---|---|"]
    for name, values in times.items():
        t = statistics.median(values)
        lines.append(f"| {name} | {t:.2f} | {t / fast:.1f}x |")
    return lines


def merge_only(args: argparse.Namespace) -> None:
    command = (f"python experiments/bench/bench_generate.py --merge-only --preset {args.preset} --n {args.n} "
               f"--repeats {args.repeats}")
    text = "\n".join([f"# Dataset merge ({args.preset})", "", f"Command: `{command}`; {os.cpu_count()} CPU cores.",
                      "", *merge_table(args)]) + "\n"
    print(text)
    out = args.out.with_name("merge_cpu.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="salt70")
    p.add_argument("--n", type=int, default=64, help="models per measurement")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generate_cpu.md")
    p.add_argument("--merge-only", action="store_true", help="time only the merge (results/merge_cpu.md)")
    args = p.parse_args()
    if args.merge_only:
        return merge_only(args)
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
    text = "\n".join(lines + [""] + merge_table(args)) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
