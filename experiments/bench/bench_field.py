"""Costs of the field-scale research setting (preset ``fieldsalt``), each measured side by side in one run.

    python experiments/bench/bench_field.py [--n 16] [--repeats 2] [--batch 16] [--steps 5] [--time-decimation 10]
        [--threads 2] [--parts generate,train,memory,storage] [--only REGEX] [--out PATH]

(a) **generation**: seconds per model of the project's generator (`fwi.data.generate.generate`, one worker: geology,
    deepwave, part files, merge, gzip) against a bare loop of deepwave calls on the same models (bench_generate's
    ``bare_deepwave``), interleaved over ``--repeats``, median; the issue's target is <= 1.1x.
(b) **training**: samples/s of one training step (forward, MSE + BCE loss, backward, Adam; channels-last) per
    network at the fieldsalt input (B, 15, T, 151) -> 101 x 151 with T = ceil(1250 / time decimation), against the
    plain base-16 U-Net measured in the same run (bench_models' ``Runner`` and ``interleave``: every step paired
    with a plain step just before it, rotating the start; ratio = median of the per-pair ratios), and the hours of
    a 25-epoch cell on 4000 models at that rate (steps only: no data reading, validation or evaluation).
(c) **memory**: peak resident memory increase of one training step per network, each in a fresh process (on CUDA:
    torch's peak allocation).
(d) **storage**: bytes per stored sample of the generated float32 file (gzip) and of its compact conversions
    (`convert --time-decimation k --dtype int16|float16`, zstd), and read+decode samples/s of the int16 file.

Writes a markdown table to experiments/bench/results/field_<device>.md (``--out``). The timings mean something only
on quiet cores; a smoke run: ``--n 2 --repeats 1 --steps 1 --batch 2 --out /tmp/field.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import multiprocessing as mp
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]
for path in (ROOT, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import deepwave  # noqa: E402
import torch  # noqa: E402

from bench_generate import bare_deepwave  # noqa: E402
from bench_models import Runner, interleave, pick_device  # noqa: E402
from bench_read import rate, split_bytes  # noqa: E402
from bench_train import peak_rss_kib  # noqa: E402
from fwi.data.convert import convert  # noqa: E402
from fwi.data.dataset import FWIDataset  # noqa: E402
from fwi.data.generate import generate  # noqa: E402
from fwi.data.modelling import sample_models  # noqa: E402
from fwi.data.codec import GatherStorage  # noqa: E402
from fwi.data.presets import PRESETS, get_preset  # noqa: E402
from fwi.models.config import ModelConfig  # noqa: E402

PRESET = "fieldsalt"
PARTS = ("generate", "train", "memory", "storage")


def field_variants(base: ModelConfig) -> list[tuple[str, ModelConfig]]:
    """The networks of the field-scale ablation (plain base-16 U-Net first: the reference) plus the base-32 U-Net and
    the mix decoder fused at its default width (64; the ablation fuses at 16)."""
    plain = base
    return [("unet base16 (plain)", plain),
            ("unet base32", dataclasses.replace(plain, base_channels=2 * plain.base_channels)),
            ("inversionnet", dataclasses.replace(plain, arch="inversionnet")),
            ("ca skip", dataclasses.replace(plain, attn="ca", skip_attn=True)),
            ("se encoder+skip", dataclasses.replace(plain, attn="se", encoder_attn=True, skip_attn=True)),
            ("nl bottleneck", dataclasses.replace(plain, attn="nl", bottleneck_attn=True)),
            ("mix decoder", dataclasses.replace(plain, decoder="mix")),
            ("mix decoder fused at 16", dataclasses.replace(plain, decoder="mix", mix_fuse_dim=plain.base_channels))]


def selected(args: argparse.Namespace) -> list[tuple[str, ModelConfig]]:
    chosen = field_variants(ModelConfig(depth=4, base_channels=16))
    if args.only:  # the plain U-Net (first) is always kept: it is the reference
        pattern = re.compile(args.only)
        chosen = chosen[:1] + [v for v in chosen[1:] if pattern.search(v[0])]
    return chosen


def input_shape(k: int) -> tuple[tuple[int, int, int], tuple[int, int]]:
    survey = get_preset(PRESET).survey
    return (survey.n_sources, math.ceil(survey.nt / k), survey.n_receivers), survey.shape


# ---------------------------------------------------------------------------------------------------- (a)


def bench_generation(args: argparse.Namespace, tmp: Path) -> tuple[list[str], Path]:
    """Generator vs bare deepwave, interleaved; returns the table and the last generated file (for (d))."""
    preset = get_preset(PRESET)
    survey = preset.survey
    velocity = torch.from_numpy(sample_models("train", range(args.n), 0, survey, preset.geology)[0])
    times: dict[str, list[float]] = {"bare deepwave loop": [], "generator, 1 worker": []}
    last = tmp / "gen.h5"
    for r in range(args.repeats):
        t0 = time.perf_counter()
        bare_deepwave(velocity, survey, preset.samples_per_part)
        times["bare deepwave loop"].append(time.perf_counter() - t0)
        if last.exists():
            last.unlink()
        t0 = time.perf_counter()
        generate(last, PRESET, seed=0, workers=1, sizes={"train": args.n}, progress=False)
        times["generator, 1 worker"].append(time.perf_counter() - t0)
        print(f"generation round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    bare = statistics.median(times["bare deepwave loop"])
    lines = [f"## (a) Generation ({args.n} models, median of {args.repeats}, {torch.get_num_threads()} torch "
             f"thread(s), internal step ratio {survey.step_ratio()})", "",
             "| what | seconds | s/model | time over bare deepwave |", "|---|---:|---:|---:|"]
    for name, values in times.items():
        t = statistics.median(values)
        lines.append(f"| {name} | {t:.2f} | {t / args.n:.3f} | {t / bare:.3f}x |")
    total = sum(preset.sizes.values()) + sum(get_preset(f"{PRESET}-shifted").sizes.values())
    per_model = statistics.median(times["generator, 1 worker"]) / args.n
    lines += ["", f"At this rate the {total} models of fieldsalt + fieldsalt-shifted take "
              f"{total * per_model / 3600:.1f} h in one process of {torch.get_num_threads()} thread(s).", ""]
    return lines, last


# ---------------------------------------------------------------------------------------------------- (b)


def bench_training(args: argparse.Namespace, device: torch.device) -> list[str]:
    data_shape, grid = input_shape(args.time_decimation)
    runners = [Runner(cfg, args.batch, device, data_shape, grid=grid) for _, cfg in selected(args)]
    labels = [label for label, _ in selected(args)]
    ratios = interleave(runners, args.steps, args.warmup)
    lines = [f"## (b) Training step (batch {args.batch}, input {data_shape} -> {grid}, {args.warmup} warm-up, "
             f"{args.steps} interleaved rounds)", "",
             "| network | params | GFLOPs/sample | ms/step (median) | samples/s | x plain (step time) | "
             "h per 25 x 4000 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for i, (label, r) in enumerate(zip(labels, runners)):
        ms = 1e3 * statistics.median(r.times)
        sps = args.batch / (ms / 1e3)
        lines.append(f"| {label} | {r.params:,} | {r.flops / 1e9:.2f} | {ms:.0f} | {sps:.1f} | "
                     f"{statistics.median(ratios[i]):.2f} | {25 * 4000 / sps / 3600:.2f} |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------------- (c)


def _memory_child(cfg: ModelConfig, batch: int, k: int, device: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the high-water mark inherited from the parent
    except OSError:
        pass
    data_shape, grid = input_shape(k)
    runner = Runner(cfg, batch, torch.device(device), data_shape, grid=grid)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        runner.step()
        queue.put((before, torch.cuda.max_memory_allocated()))
        return
    before = peak_rss_kib() * 1024
    runner.step()
    queue.put((before, peak_rss_kib() * 1024))


def bench_memory(args: argparse.Namespace, device: torch.device) -> list[str]:
    what = "peak allocation" if device.type == "cuda" else "peak RSS increase"
    lines = [f"## (c) Memory of one training step (batch {args.batch}, fresh process each, {what})", "",
             f"| network | {what} (GiB) |", "|---|---:|"]
    ctx = mp.get_context("spawn")
    for label, cfg in selected(args):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(cfg, args.batch, args.time_decimation, str(device),
                                                        torch.get_num_threads(), queue))
        proc.start()
        before, after = queue.get()
        proc.join()
        lines.append(f"| {label} | {(after - before) / 2**30:.2f} |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------------- (d)


def bench_storage(args: argparse.Namespace, tmp: Path, compact: Path | None) -> list[str]:
    """Bytes per sample: float32 at the full rate (the default storage), its float16 conversion, and the int16
    file fieldsalt's generation writes directly (``compact``: the file of (a), else generated here)."""
    preset = get_preset(PRESET)
    if compact is None or not compact.exists():
        compact = generate(tmp / "store.h5", PRESET, seed=0, workers=1, sizes={"train": args.n}, progress=False)
    full_rate = f"{PRESET}-float32-bench"
    if full_rate not in PRESETS.names():
        PRESETS.register(full_rate, dataclasses.replace(preset, storage=GatherStorage()))
    source = generate(tmp / "f32.h5", full_rate, seed=0, workers=1, sizes={"train": args.n}, progress=False)
    k = preset.storage.time_decimation
    survey = preset.survey
    raw = 4 * survey.n_sources * survey.nt * survey.n_receivers
    files = {"float32, full rate (gzip; the default storage)": source,
             f"float16, decimated x{k} (zstd; convert)": convert(source, tmp / "float16.h5", time_decimation=k,
                                                                  encoding="float16", progress=False),
             f"int16, decimated x{k} (zstd; what fieldsalt's generation writes)": compact}
    total = sum(get_preset(PRESET).sizes.values())
    lines = [f"## (d) Storage ({args.n} models; uncompressed float32 gathers: {raw / 2**20:.2f} MiB per model)", "",
             f"| storage | bytes/sample (arrays) | smaller by | {total} models (GB) | samples/s read+decoded |",
             "|---|---:|---:|---:|---:|"]
    base = None
    for name, path in files.items():
        nbytes, n = split_bytes(path)
        per = nbytes / n
        base = base or per
        speed = rate(FWIDataset(path, "train", time_decimation=k))
        lines.append(f"| {name} | {per:,.0f} | {base / per:.1f}x | {per * total / 1e9:.1f} | {speed:.0f} |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=16, help="models generated for (a) and (d)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats of (a)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="interleaved rounds of (b)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--time-decimation", type=int, default=10, help="of the network input and the compact files")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto, for (b) and (c)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--only", default=None, help="regex on network labels for (b) and (c) (plain always kept)")
    p.add_argument("--out", type=Path, default=None, help="markdown output (default results/field_<device>.md)")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown --parts {unknown}; choose from {', '.join(PARTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    command = "python " + shlex.join(["experiments/bench/bench_field.py", *(sys.argv[1:] if argv is None else argv)])
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or platform.machine())
    survey = get_preset(PRESET).survey
    lines = [f"# Field-scale costs (preset {PRESET}: {survey.nz} x {survey.nx} x {survey.dx:g} m, "
             f"{survey.n_sources} shots, {survey.nt} x {survey.dt * 1e3:g} ms, {survey.n_receivers} receivers)", "",
             f"- command: `{command}`",
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; deepwave "
             f"{deepwave.__version__}; device {device.type} ({dev_name}); {torch.get_num_threads()} torch thread(s)",
             ""]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        generated = None
        if "generate" in parts:
            table, generated = bench_generation(args, tmp)
            lines += table
        if "train" in parts:
            lines += bench_training(args, device)
        if "memory" in parts:
            lines += bench_memory(args, device)
        if "storage" in parts:
            lines += bench_storage(args, tmp, generated)
    text = "\n".join(lines)
    out = args.out or BENCH / "results" / f"field_{device.type}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
