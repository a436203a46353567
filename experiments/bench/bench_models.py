"""Side-by-side training-step cost of the model variants at the salt70 size.

    python experiments/bench/bench_models.py [--batch 16] [--repeats 5] [--warmup 1] [--device auto] [--out PATH]
        [--layout nhwc|nchw] [--base 32] [--nt 1000] [--only REGEX]

Variants (all base 32, depth 4 unless said): plain U-Net; every registered attention block in encoder+skip;
ca in each single place; the mix-attention decoder; the attention gate(s) on the skips; InversionNet.
With ``--layout nhwc`` (training's default, optim.channels_last) the plain U-Net also runs in the NCHW layout as
one more variant, so the table gives the layout's gain side by side. ``--base 16 --nt 125 --batch 32`` is the
ablation's setting (base-16 U-Net, gathers decimated 8x in time).

One step = forward + loss (MSE on velocity + BCE on the salt logits) + backward + Adam step, on fixed random
gathers (B, 5, 1000, 70) and targets on a 70 x 70 grid. Timings are interleaved so machine noise hits all
variants alike: each round runs one step of every variant in turn (starting at a different variant each round),
and each variant's step is immediately preceded by a step of the plain U-Net (a pair). The table reports the
median and minimum step time over rounds, and the ratio to the plain U-Net as the median over rounds of the
per-pair ratio (on a shared machine, slow phases of seconds hit both members of a pair alike, while they can
dominate a plain median-over-median ratio when there are few rounds).

Writes a markdown table to experiments/bench/results/models_<device>.md (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fwi.models.attention.registry import list_attn, list_gates  # noqa: E402
from fwi.models.build import build_model  # noqa: E402
from fwi.models.config import PLACE_FLAGS, ModelConfig  # noqa: E402
from fwi.models.complexity import count_flops, count_params  # noqa: E402
from fwi.models.summary import describe  # noqa: E402

GRID = (70, 70)
# Targets from the issue: step time over the plain U-Net.
TARGETS = {**{f"unet {a}@encoder+skip": 1.10 for a in ("se", "eca", "ca", "cbam", "scse")}, "unet mix-decoder": 1.5}


def variants(base: ModelConfig) -> list[ModelConfig]:
    """The variants benchmarked, the plain U-Net first."""
    plain = dataclasses.replace(base, name="unet", attn="none", skip_gate="none", decoder="unet",
                                **{f: False for f in PLACE_FLAGS})
    out = [plain]
    out += [dataclasses.replace(plain, attn=a, encoder_attn=True, skip_attn=True) for a in list_attn() if a != "none"]
    out += [dataclasses.replace(plain, attn="ca", **{place: True}) for place in PLACE_FLAGS]
    out.append(dataclasses.replace(plain, decoder="mix"))
    out += [dataclasses.replace(plain, skip_gate=g) for g in list_gates()]
    out.append(dataclasses.replace(plain, arch="inversionnet"))
    return out


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Runner:
    """A model with its optimizer and fixed batch; ``step()`` returns the wall time of one training step."""

    def __init__(self, cfg: ModelConfig, batch: int, device: torch.device, data_shape: tuple[int, int, int],
                 channels_last: bool = True, seed: int = 0, grid: tuple[int, int] = GRID):
        torch.manual_seed(seed)
        self.cfg, self.label, self.device = cfg, describe(cfg) + ("" if channels_last else " (NCHW)"), device
        self.model = build_model(cfg, data_shape, grid)
        self.params = count_params(self.model)
        self.flops = count_flops(self.model, torch.zeros(1, *data_shape))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(device, memory_format=fmt).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, *data_shape, generator=g).to(device).contiguous(memory_format=fmt)
        self.vel = (torch.rand(batch, 1, *grid, generator=g) * 2 - 1).to(device)
        self.mask = (torch.rand(batch, 1, *grid, generator=g) > 0.7).float().to(device)
        self.times: list[float] = []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> float:
        self._sync()
        t0 = time.perf_counter()
        out = self.model(self.x)
        loss = F.mse_loss(out["velocity"], self.vel) + F.binary_cross_entropy_with_logits(out["salt_logits"], self.mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._sync()
        return time.perf_counter() - t0


def interleave(runners: list[Runner], repeats: int, warmup: int) -> dict[int, list[float]]:
    """Time ``runners`` (the reference first) in interleaved rounds, each step paired with a reference step just
    before it, rotating the start; fills each runner's ``times`` and returns runner index -> per-pair ratios."""
    n = len(runners)
    for _ in range(warmup):
        for r in runners:
            r.step()
    plain = runners[0]
    ratios: dict[int, list[float]] = {i: [] for i in range(n)}
    for rep in range(repeats):
        for k in range(n):
            i = (rep + k) % n  # rotate the starting variant each round
            if i == 0:
                plain.times.append(plain.step())
                ratios[0].append(1.0)
                continue
            t_plain = plain.step()
            t = runners[i].step()
            plain.times.append(t_plain)
            runners[i].times.append(t)
            ratios[i].append(t / t_plain)
        print(f"round {rep + 1}/{repeats} done", file=sys.stderr, flush=True)
    return ratios


def run(args: argparse.Namespace) -> tuple[list[dict], str]:
    device = pick_device(args.device)
    base = ModelConfig(depth=4, base_channels=args.base)
    cfgs = variants(base)
    if args.only:  # the plain U-Net (first) is always kept: it is the reference
        pattern = re.compile(args.only)
        cfgs = cfgs[:1] + [c for c in cfgs[1:] if pattern.search(describe(c))]
    nhwc = args.layout == "nhwc"
    shape = (5, args.nt, 70)
    runners = [Runner(cfg, args.batch, device, shape, channels_last=nhwc) for cfg in cfgs]
    if nhwc:
        runners.insert(1, Runner(cfgs[0], args.batch, device, shape, channels_last=False))
    ratios = interleave(runners, args.repeats, args.warmup)
    plain = runners[0]
    rows = []
    for i, r in enumerate(runners):
        ratio = statistics.median(ratios[i])
        target = TARGETS.get(r.label)
        rows.append({"variant": r.label, "params": r.params, "gflops": r.flops / 1e9,
                     "ms": 1e3 * statistics.median(r.times), "min": 1e3 * min(r.times), "ratio": ratio,
                     "ratio_min": min(r.times) / min(plain.times),
                     "target": "" if target is None
                     else (f"<= {target:.2f} " + ("ok" if ratio <= target else "MISSED"))})
    return rows, device.type


def to_markdown(rows: list[dict], args: argparse.Namespace, device: str, command: str) -> str:
    dev_name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    head = [
        f"# Model step-time benchmark ({device})",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; "
        f"device {device} ({dev_name}); threads {torch.get_num_threads()}",
        f"- input: gathers (B, S, T, R) = ({args.batch}, 5, {args.nt}, 70), grid {GRID[0]} x {GRID[1]}; "
        f"U-Nets base {args.base}, depth 4; memory layout {args.layout.upper()}",
        f"- step = forward + MSE/BCE loss + backward + Adam step; {args.warmup} warm-up step(s), then {args.repeats} "
        "interleaved rounds (each variant's step paired with a plain U-Net step just before it, rotating start)",
        "- FLOPs: forward, per sample, FlopCounterMode (conv/linear/matmul/attention only)",
        "- x plain: median over rounds of (variant step / the plain step run just before it); x plain (min): "
        "min step / plain's min step; targets from the issue (checked on x plain)",
        "",
        "| variant | params | GFLOPs/sample | ms/step (median) | ms/step (min) | x plain | x plain (min) | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    body = [f"| {r['variant']} | {r['params']:,} | {r['gflops']:.3f} | {r['ms']:.1f} | {r['min']:.1f} | "
            f"{r['ratio']:.3f} | {r['ratio_min']:.3f} | {r['target']} |" for r in rows]
    return "\n".join(head + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", type=Path, default=None, help="markdown output (default results/models_<device>.md)")
    p.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc",
                   help="memory layout of every variant (nhwc = training's default; adds a plain NCHW row)")
    p.add_argument("--base", type=int, default=32, help="U-Net base width (the ablation uses 16)")
    p.add_argument("--nt", type=int, default=1000, help="time samples per trace (the ablation's decimated data: 125)")
    p.add_argument("--only", default=None, help="regex on variant labels to run a subset (plain U-Net always kept)")
    args = p.parse_args(argv)
    command = "python " + shlex.join([str(Path(sys.argv[0]).resolve().relative_to(ROOT))
                                      if Path(sys.argv[0]).resolve().is_relative_to(ROOT) else sys.argv[0]]
                                     + (sys.argv[1:] if argv is None else argv))
    rows, device = run(args)
    text = to_markdown(rows, args, device, command)
    out = args.out or Path(__file__).resolve().parent / "results" / f"models_{device}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
