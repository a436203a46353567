"""Training throughput with the physics loss off and on, its cost over bare deepwave, and its peak memory.

    python experiments/bench/bench_train.py [--batch 16] [--repeats 3] [--device auto] [--config configs/default.yaml]

Measured side by side in one run on the salt70 setting (OpenFWI geometry, the default model of the config):
1. training samples/s (forward + loss + backward + AdamW step) with physics_weight 0 and with the physics loss on
   (all shots), interleaved over repeats, median;
2. the physics term alone (FWILoss.physics_loss forward + backward w.r.t. the predicted velocity) against a bare
   deepwave.scalar forward + backward of the same shots with an MSE against the same observed data (target <= 1.2x);
3. peak memory of one training step with the physics loss at the given batch: on CUDA torch's peak allocation, on
   CPU the peak resident set size of a fresh process running that step (minus the same process without physics),
   next to deepwave.estimate_memory's figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import fwi  # noqa: F401  (sets OMP_WAIT_POLICY before torch starts OpenMP)
import deepwave
import torch
from einops import repeat

from fwi.config import load_config
from fwi.data.modelling import model_part
from fwi.data.parts import Part
from fwi.data.presets import get_preset
from fwi.data.store import RunningNormalisation
from fwi.data.transforms import Normalizer
from fwi.distributed import resolve_device
from fwi.losses import FWILoss
from fwi.models.build import build_model


def make_batch(batch: int, device: torch.device):
    preset = get_preset("salt70")
    survey = preset.survey
    arrays = model_part(Part("train", 0, batch), 0, survey, preset.geology)
    stats = RunningNormalisation()
    stats.update(arrays["velocity"], arrays["gathers"])
    norm = Normalizer.from_dict(stats.result())
    b = {"gathers": norm.gathers(torch.from_numpy(arrays["gathers"])).to(device),
         "velocity": norm.velocity(torch.from_numpy(arrays["velocity"])).to(device),
         "salt_mask": torch.from_numpy(arrays["salt_mask"]).float().to(device)}
    return survey, norm, b, torch.from_numpy(arrays["gathers"]).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model, opt, loss_fn, batch):
    pred = model(batch["gathers"])
    loss, _ = loss_fn(pred, batch, epoch=1e9)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def build(config: str, batch_size: int, device: torch.device, physics: bool):
    cfg = load_config(config)
    survey, norm, batch, raw = make_batch(batch_size, device)
    model = build_model(cfg.model, tuple(batch["gathers"].shape[1:]), survey.shape).to(device)
    loss_cfg = replace(cfg.loss, physics_weight=1.0 if physics else 0.0)
    loss_fn = FWILoss(loss_cfg, survey, norm)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, opt, loss_fn, batch, raw, survey, norm


def peak_rss_kib() -> int:
    """High-water mark of this process's resident memory (KiB). ru_maxrss would do, but Linux carries it over from
    the parent across fork + exec, so the child resets and reads VmHWM instead where /proc allows it."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _memory_child(config, batch_size, physics, queue):
    torch.manual_seed(0)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the high-water mark inherited from the parent
    except OSError:
        pass
    model, opt, loss_fn, batch, *_ = build(config, batch_size, torch.device("cpu"), physics)
    before = peak_rss_kib()
    train_step(model, opt, loss_fn, batch)
    queue.put((before, peak_rss_kib()))


def peak_memory_cpu(config, batch_size, physics) -> int:
    """Peak RSS increase (bytes) of one training step in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(config, batch_size, physics, queue))
    proc.start()
    before, after = queue.get()
    proc.join()
    return (after - before) * 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement (CPU)")
    args = p.parse_args()
    if args.memory_only:
        peaks = {name: peak_memory_cpu(args.config, args.batch, name == "physics on")
                 for name in ("physics off", "physics on")}
        gib = 1024 ** 3
        text = (f"# Peak memory of one training step (cpu, salt70 setting, batch {args.batch})\n\n"
                f"Command: `python experiments/bench/bench_train.py --memory-only --batch {args.batch}`; peak RSS "
                f"increase of one step in a fresh process (VmHWM reset in the child).\n\n"
                f"| physics loss | peak RSS increase |\n|---|---|\n"
                f"| off | {peaks['physics off'] / gib:.2f} GiB |\n"
                f"| on (5 shots/sample) | {peaks['physics on'] / gib:.2f} GiB |\n")
        print(text)
        out = args.out or Path(__file__).parent / "results" / "train_memory_cpu.md"
        out.write_text(text)
        return
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model, opt, loss_off, batch, raw, survey, norm = build(args.config, args.batch, device, physics=False)
    loss_on = FWILoss(replace(loss_off.cfg, physics_weight=1.0), survey, norm)

    # 1. training steps, interleaved
    steps = {"physics off": [], "physics on": []}
    train_step(model, opt, loss_off, batch)  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("physics off", loss_off), ("physics on", loss_on)):
            sync(device)
            t0 = time.perf_counter()
            train_step(model, opt, fn, batch)
            sync(device)
            steps[name].append(time.perf_counter() - t0)

    # 2. physics term vs bare deepwave on the same shots
    s = survey.n_sources
    wavelet = survey.wavelet().to(device)
    src, rec = survey.source_cells().to(device), survey.receiver_cells().to(device)
    observed = batch["gathers"]

    def physics_term():
        v = batch["velocity"].clone().requires_grad_(True)
        loss_on.physics_loss(v, observed).backward()

    def bare():
        v = norm.velocity_inverse(batch["velocity"][:, 0]).clone().requires_grad_(True)
        out = deepwave.scalar(repeat(v, "b z x -> (b s) z x", s=s), survey.dx, survey.dt,
                              source_amplitudes=repeat(wavelet, "t -> n 1 t", n=len(v) * s),
                              source_locations=src.repeat(len(v), 1, 1), receiver_locations=rec.repeat(len(v), 1, 1),
                              accuracy=survey.accuracy, pml_width=survey.pml_width, pml_freq=survey.freq,
                              max_vel=survey.max_velocity)
        modelled = out.receiver_amplitudes.reshape(len(v), s, survey.n_receivers, -1).transpose(2, 3)
        (modelled - raw).pow(2).mean().backward()

    cost = {"bare deepwave fwd+bwd": [], "physics loss fwd+bwd": []}
    for _ in range(args.repeats):
        for name, fn in (("bare deepwave fwd+bwd", bare), ("physics loss fwd+bwd", physics_term)):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            cost[name].append(time.perf_counter() - t0)

    # 3. peak memory
    estimate = loss_on.memory_estimate(args.batch, device=device)
    if device.type == "cuda":
        peaks = {}
        for name, fn in (("physics off", loss_off), ("physics on", loss_on)):
            torch.cuda.reset_peak_memory_stats()
            train_step(model, opt, fn, batch)
            peaks[name] = torch.cuda.max_memory_allocated()
        mem_note = "torch.cuda.max_memory_allocated of one step"
    else:
        peaks = {name: peak_memory_cpu(args.config, args.batch, name == "physics on")
                 for name in ("physics off", "physics on")}
        mem_note = "peak RSS increase of one step in a fresh process"

    med = {k: statistics.median(v) for k, v in {**steps, **cost}.items()}
    gib = 1024 ** 3
    lines = [f"# Training benchmark ({device.type}, salt70 setting, batch {args.batch}, median of {args.repeats})", "",
             f"Command: `python experiments/bench/bench_train.py --batch {args.batch} --repeats {args.repeats} "
             f"--device {args.device}`; config `{args.config}` (model: {load_config(args.config).model.arch}, "
             f"base {load_config(args.config).model.base_channels}); torch {torch.__version__}, "
             f"deepwave {deepwave.__version__}, {torch.get_num_threads()} threads; internal step ratio "
             f"{survey.step_ratio()} (dt 1 ms, max velocity {survey.max_velocity:g} m/s).", "",
             "| measurement | seconds | samples/s | ratio |", "|---|---|---|---|",
             f"| training step, physics off | {med['physics off']:.3f} | "
             f"{args.batch / med['physics off']:.2f} | 1.00 |",
             f"| training step, physics on (5 shots/sample) | {med['physics on']:.3f} | "
             f"{args.batch / med['physics on']:.2f} | {med['physics on'] / med['physics off']:.2f}x |",
             f"| bare deepwave forward+backward | {med['bare deepwave fwd+bwd']:.3f} | "
             f"{args.batch / med['bare deepwave fwd+bwd']:.2f} | 1.00 |",
             f"| physics loss forward+backward | {med['physics loss fwd+bwd']:.3f} | "
             f"{args.batch / med['physics loss fwd+bwd']:.2f} | "
             f"{med['physics loss fwd+bwd'] / med['bare deepwave fwd+bwd']:.3f}x (target <= 1.2x) |", "",
             f"Peak memory ({mem_note}): physics off {peaks['physics off'] / gib:.2f} GiB, physics on "
             f"{peaks['physics on'] / gib:.2f} GiB; deepwave.estimate_memory for the physics call: "
             f"{estimate['total_bytes_lower_bound'] / gib:.2f} GiB (of which wavefield history for the gradient "
             f"{estimate['backward_storage_bytes'] / gib:.2f} GiB).", ""]
    text = "\n".join(lines)
    print(text)
    out = args.out or Path(__file__).parent / "results" / f"train_{device.type}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
