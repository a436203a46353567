"""How much of a training step the physics term moves, and where: gradients of the loss terms at a checkpoint.

    python experiments/physics_sweep/gradient_share.py [CHECKPOINT] [--branch RUN] [--batches 4]
        [--physics-weight W] [--physics-depth-power P] [--depth-powers 1,2,3]

At ``CHECKPOINT`` (default: the sweep trunk's ``epoch-22.pt``, where the physics branches start) and with the loss of
``--branch`` (default: the weight-10 branch's config), for a few training batches of the run's dataset (the first
``--batches`` batches of 32 in the training split's order, network in training mode as in a step), prints:

- the gradient norm over the network's weights of the supervised terms (velocity + SSIM + salt) and of the weighted
  physics term, their ratio and cosine: what the physics adds to a step, and whether it pulls along or across;
- the same in output space (gradient w.r.t. the predicted velocity of the physics-sampled models), and the share of
  the physics gradient's energy in the top third of the model, in the salt (true mask) and below the top of salt:
  where the waveform misfit asks the network to change the velocity;
- whether that change points toward the truth: the cosine of the physics gradient with the prediction's error
  (predicted - true velocity; a gradient step moves the prediction by -g, so a positive cosine means the physics
  step reduces the error), over all cells and inside the salt, for the gradient as it is and reweighted with depth by
  (z / z_max)^p for each ``--depth-powers`` p (the preconditioning that `fwi.invert --depth-power` applies, here
  applied to the training gradient in output space). The supervised gradient's cosine is the reference.

Deterministic for a checkpoint (fixed batches, fixed generator for the physics shot and sample draw).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from einops import rearrange

from fwi.config import from_dict
from fwi.data.dataset import FWIDataset
from fwi.losses import FWILoss
from fwi.losses.config import LossConfig
from fwi.physics.depth import depth_weights
from fwi.run import load_run

RUNS = Path(__file__).resolve().parent / "runs"


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads if g is not None])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-30))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default=RUNS / "physics_sweep-nophys-nophys-s0" / "epoch-22.pt", type=Path)
    p.add_argument("--branch", type=Path, default=RUNS / "physics_sweep-w10-last3-phys-s0",
                   help="run whose loss settings (physics weight, shots, samples) are used")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--physics-weight", type=float, help="override the branch's physics weight")
    p.add_argument("--physics-depth-power", type=float, help="override the branch's loss.physics_depth_power")
    p.add_argument("--depth-powers", default="1,2,3", help="comma-separated depth-weighting powers p to score")
    args = p.parse_args()
    powers = [float(x) for x in args.depth_powers.split(",") if x.strip()]

    run = load_run(args.checkpoint)
    loss_cfg = from_dict(LossConfig, yaml.safe_load((args.branch / "config.yaml").read_text())["loss"], "loss")
    if args.physics_weight is not None:
        loss_cfg = replace(loss_cfg, physics_weight=args.physics_weight)
    if args.physics_depth_power is not None:
        loss_cfg = replace(loss_cfg, physics_depth_power=args.physics_depth_power)
    weight = loss_cfg.physics_weight
    loss_fn = FWILoss(loss_cfg, run.survey, run.normalizer, run.time_decimation)
    supervised_fn = FWILoss(replace(loss_cfg, physics_weight=0.0), run.survey, run.normalizer, run.time_decimation)
    data = FWIDataset(run.config["data"]["data"], "train", time_decimation=run.time_decimation)
    model = run.model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    generator = torch.Generator().manual_seed(0)
    batch_size = int(run.config["optim"]["batch_size"])
    rows = []
    for b in range(args.batches):
        items = [data[i] for i in range(b * batch_size, (b + 1) * batch_size)]
        batch = {k: torch.stack([it[k] for it in items]) for k in ("gathers", "velocity", "salt_mask")}
        pred = model(batch["gathers"])
        supervised, _ = supervised_fn(pred, batch)
        total, parts = loss_fn(pred, batch, epoch=1e9, generator=generator)
        physics = total - supervised  # the weighted physics term (the other terms are the same computation)
        g_sup_w = flat(torch.autograd.grad(supervised, params, retain_graph=True))
        g_phy_w = flat(torch.autograd.grad(physics, params, retain_graph=True))
        g_sup_v = torch.autograd.grad(supervised, pred["velocity"], retain_graph=True)[0]
        g_phy_v = torch.autograd.grad(physics, pred["velocity"])[0]
        idx = loss_fn.last_samples if loss_fn.last_samples is not None else torch.arange(batch_size)
        e_phy = g_phy_v[idx, 0].pow(2)  # (n, nz, nx)
        mask = batch["salt_mask"][idx, 0] > 0.5
        nz = e_phy.shape[1]
        depth = torch.arange(nz)[None, :, None].expand_as(e_phy)
        top_of_salt = torch.where(mask.any(1), mask.float().argmax(1), nz)  # (n, nx): first salt row per column
        below_top = depth >= rearrange(top_of_salt, "n x -> n 1 x")
        total_e = e_phy.sum().clamp_min(1e-30)
        error = (pred["velocity"] - batch["velocity"]).detach()[idx, 0]  # (n, nz, nx), normalised units
        toward = {}
        for name, g in [("supervised gradient", g_sup_v[idx, 0]), ("physics gradient", g_phy_v[idx, 0])] + [
                (f"physics gradient x (z/z_max)^{q:g}", g_phy_v[idx, 0] * depth_weights(nz, q)) for q in powers]:
            toward[f"cos({name}, pred - true)"] = cosine(g.reshape(-1), error.reshape(-1))
            toward[f"cos({name}, pred - true) in salt"] = cosine(g[mask], error[mask])
        rows.append({
            "weights: |g_phys| / |g_sup|": float(g_phy_w.norm() / g_sup_w.norm()),
            "weights: cos(g_phys, g_sup)": cosine(g_phy_w, g_sup_w),
            "output: |g_phys| / |g_sup| (sampled models)": float(g_phy_v[idx].norm() / g_sup_v[idx].norm()),
            "output: cos(g_phys, g_sup) (sampled models)": cosine(g_phy_v[idx].reshape(-1), g_sup_v[idx].reshape(-1)),
            "physics energy in top third": float(e_phy[:, : nz // 3].sum() / total_e),
            "physics energy in salt": float(e_phy[mask].sum() / total_e),
            "physics energy below top of salt": float(e_phy[below_top].sum() / total_e),
            "salt share of the sampled models' cells": float(mask.float().mean()),
            "physics term (unweighted)": float(parts["physics"]),
            **toward,
        })
    print(f"checkpoint {args.checkpoint}, physics weight {weight}, depth power {loss_cfg.physics_depth_power:g}, "
          f"{args.batches} batches of {batch_size}")
    print("| quantity | " + " | ".join(f"batch {i}" for i in range(len(rows))) + " | mean |")
    print("|---" * (len(rows) + 2) + "|")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"| {key} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {sum(values) / len(values):.4f} |")


if __name__ == "__main__":
    main()
