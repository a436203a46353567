"""Train an attention U-Net (or InversionNet) on gathers -> velocity + salt mask.

    python -m fwi.train --attn ca --skip-attn                       # configs/default.yaml (salt70)
    python -m fwi.train --config configs/quick.yaml --attn ca --skip-attn
    torchrun --nproc_per_node=2 -m fwi.train --config configs/tiny.yaml

Writes ``runs/<name>/``: config.yaml (resolved), last.pt, best.pt (lowest validation MAE), metrics.jsonl (one line
per epoch), predictions.png, summary.json. The dataset is generated first when the configured file is missing.
``--resume`` continues from last.pt exactly (same weights as an uninterrupted run). ``--keep-epochs 22`` also keeps
epoch-22.pt; ``--branch-from runs/<trunk>/epoch-22.pt`` starts another run there (e.g. with the physics loss from
epoch 23; see fwi.continuation). A NaN/inf loss stops the run and keeps the last good checkpoint.

The loop, on one screen (`train`): `setup` (data, model, optimiser, restore), then per epoch `train_one_epoch`
(the optimiser steps) and `end_of_epoch` (validation, divergence checks, checkpoints, records, W&B), then `finish`
(the best weights on the validation split, figure, summary). The run directory's preparation and repair after a kill
live in `fwi.continuation`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from fwi import distributed as D
from fwi import viz
from fwi.atomic import write_text
from fwi.checkpoint import load_checkpoint, save_checkpoint
from fwi.cli import friendly_errors
from fwi.config import Config, parse_args, save_config
from fwi.continuation import prepare_run_dir, repair_records, snapshot_name
from fwi.data.dataset import FWIDataset
from fwi.data.generate import ensure_generated
from fwi.data.transforms import Normalizer
from fwi.lock import run_lock
from fwi.losses import FWILoss
from fwi.models.build import build_model
from fwi.models.complexity import count_flops, count_params
from fwi.models.legacy_keys import optimizer_state_for
from fwi.physics import Survey
from fwi.scoring import evaluate_loader
from fwi.tracking import start_wandb

#: Called as ``hook(point, epoch)`` after each checkpoint write of an epoch (``"after-last"``, ``"after-best"``).
CommitHook = Callable[[str, int], None]


class TrainingDiverged(RuntimeError):
    """The loss, a weight or a BatchNorm statistic became NaN or infinite."""


@dataclass
class Trainer:
    """Everything one training holds between epochs (built by `setup`)."""

    cfg: Config
    device: torch.device
    run_dir: Path
    data_path: Path
    train_set: FWIDataset
    val_set: FWIDataset
    sampler: DistributedSampler
    loader: DataLoader
    val_loader: DataLoader
    model: nn.Module  # the bare network (checkpoints, evaluation)
    net: nn.Module  # what the step calls: the model, or its DDP wrapper
    loss_fn: FWILoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    start_epoch: int = 0
    best: float = math.inf
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    wb: Any = None  # the W&B run (rank 0), or None

    @property
    def main(self) -> bool:
        return D.is_main()

    @property
    def survey(self) -> Survey:
        return self.train_set.survey

    @property
    def normalizer(self) -> Normalizer:
        return self.train_set.normalizer

    @functools.cached_property
    def data_shape(self) -> tuple[int, ...]:
        """(S, T', R) of the network input."""
        return tuple(self.train_set[0]["gathers"].shape)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.optim.channels_last else torch.contiguous_format

    @property
    def samples_per_epoch(self) -> int:
        return len(self.loader) * self.loader.batch_size * D.world()[2]

    @property
    def end_epoch(self) -> int:
        epochs, stop_after = self.cfg.optim.epochs, self.cfg.run.stop_after
        return min(epochs, self.start_epoch + stop_after) if stop_after else epochs

    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """The resumable state after ``epoch`` (1-based)."""
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": torch.get_rng_state(), "best": self.best,
                "best_epoch": self.best_epoch, "history": self.history, "config": self.cfg.to_dict(),
                "survey": self.survey.to_dict(), "normalisation": self.normalizer.to_dict(),
                "data_shape": list(self.data_shape), "data": str(self.data_path)}

    def validate(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Mean validation metrics (the loss without its physics term) and the first batch (for figures)."""
        return evaluate_loader(self.model, self.val_loader, self.normalizer, self.survey, self.device,
                               time_decimation=self.cfg.data.time_decimation,
                               misfit_samples=self.cfg.run.misfit_samples,
                               loss_parts=lambda pred, batch: self.loss_fn(pred, batch, with_physics=False)[1])


# ---------------------------------------------------------------------------------------------------- the loop
def train(cfg: Config, on_commit: CommitHook | None = None) -> Path:
    """Run the training described by ``cfg``; returns the run directory. ``on_commit`` is called after each
    checkpoint write (tests inject a kill there)."""
    device = D.resolve_device(cfg.optim.device)
    distributed = D.setup(device)
    torch.manual_seed(cfg.optim.seed)
    run_dir = Path(cfg.run.out) / cfg.run_name()
    lock: ContextManager = run_lock(run_dir) if D.is_main() else nullcontext()
    with lock:
        t = setup(cfg, device, distributed, run_dir)
        for epoch in range(t.start_epoch, t.end_epoch):
            train_metrics = train_one_epoch(t, epoch)
            if t.main:
                end_of_epoch(t, epoch, train_metrics, on_commit or (lambda point, epoch: None))
            D.barrier()
        if t.main:
            finish(t)
    D.cleanup()
    return run_dir


def train_one_epoch(t: Trainer, epoch: int) -> dict[str, float]:
    """One pass of optimiser steps over the training loader; the mean loss parts (``train/<part>``) and the time."""
    t.net.train()
    t.sampler.set_epoch(epoch)
    t.train_set.set_epoch(epoch)
    rank, steps = D.world()[0], len(t.loader)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if t.cfg.optim.bf16 and t.device.type == "cuda"
                else nullcontext())
    sums: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = tqdm(t.loader, desc=f"epoch {epoch + 1}/{t.cfg.optim.epochs}", disable=not (t.main and t.cfg.run.progress),
               dynamic_ncols=True, leave=False)
    for step, batch in enumerate(bar):
        batch = {k: v.to(t.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast:
            pred = t.net(batch["gathers"].contiguous(memory_format=t.memory_format))
        pred = {k: v.float() for k, v in pred.items()}
        loss, parts = t.loss_fn(pred, batch, epoch=epoch + step / steps,
                                generator=step_generator(t.cfg.optim.seed, epoch, step, rank))
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                                   f"stopping. {last_good(t.run_dir, epoch)}; try a lower --lr")
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.optim.grad_clip)
        t.optimizer.step()
        t.scheduler.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return {**{f"train/{k}": v / steps for k, v in sums.items()}, "epoch_time_s": time.perf_counter() - t0}


def end_of_epoch(t: Trainer, epoch: int, train_metrics: dict[str, float], on_commit: CommitHook) -> None:
    """Rank 0 after an epoch: validate, refuse non-finite weights, write snapshot / last.pt (the commit point) /
    best.pt and the metrics line, print, log to W&B."""
    val_metrics, first = t.validate()
    record = {"epoch": epoch + 1, **{k: v for k, v in train_metrics.items() if k != "epoch_time_s"},
              **{f"val/{k}": v for k, v in val_metrics.items()}, "lr": t.scheduler.get_last_lr()[0],
              "epoch_time_s": train_metrics["epoch_time_s"],
              "samples_per_s": t.samples_per_epoch / train_metrics["epoch_time_s"],
              "torch_threads": torch.get_num_threads()}  # the last bits of the curve depend on it
    broken = non_finite_tensors(t.model)
    if broken:
        raise TrainingDiverged(f"after epoch {epoch + 1} (step {len(t.loader)}) the weights hold NaN or inf "
                               f"({', '.join(broken[:4])}{' ...' if len(broken) > 4 else ''}); not saved. "
                               f"{last_good(t.run_dir, epoch)}; try a lower --lr")
    t.history.append(record)
    improved = val_metrics["mae"] < t.best
    if improved:
        t.best, t.best_epoch = val_metrics["mae"], epoch + 1
    if epoch + 1 in t.cfg.run.keep_epochs:  # before last.pt: a kill in between redoes this epoch
        save_checkpoint(snapshot_state(t, epoch + 1, improved), t.run_dir / snapshot_name(epoch + 1))
    save_checkpoint(t.checkpoint_state(epoch + 1), t.run_dir / "last.pt")  # the commit point of the epoch
    on_commit("after-last", epoch + 1)
    if improved:
        save_checkpoint(t.checkpoint_state(epoch + 1), t.run_dir / "best.pt")
    on_commit("after-best", epoch + 1)
    with open(t.run_dir / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"epoch {epoch + 1}/{t.cfg.optim.epochs}  loss {record['train/total']:.4f}  "
          f"val MAE {val_metrics['mae']:.4f}  SSIM {val_metrics['ssim']:.3f}  "
          f"IoU {val_metrics['iou']:.3f}  ({record['samples_per_s']:.1f} samples/s)", flush=True)
    if t.wb is not None:
        log = dict(record)
        if t.cfg.run.images:
            fig = prediction_figure(first, t.normalizer, t.cfg.run.images, t.survey.dx)
            log["val/predictions"] = __import__("wandb").Image(fig)
            viz.plt.close(fig)
        t.wb.log(log, step=epoch + 1)


def finish(t: Trainer) -> None:
    """Rank 0 at the end: after ``--stop-after`` a note; after the last epoch the best weights on the validation
    split, ``predictions.png`` and ``summary.json``."""
    if t.end_epoch < t.cfg.optim.epochs:
        print(f"stopped after epoch {t.end_epoch} of {t.cfg.optim.epochs} (--stop-after); continue with --resume")
        if t.wb is not None:
            t.wb.finish()
        return
    best_state = load_checkpoint(t.run_dir / "best.pt", map_location=t.device)
    t.model.load_state_dict(best_state["model"])
    val_metrics, first = t.validate()
    viz.save(prediction_figure(first, t.normalizer, t.cfg.run.images or 4, t.survey.dx), t.run_dir / "predictions.png")
    summary = {"run": t.run_dir.name, "best_epoch": best_state["epoch"], "params": count_params(t.model),
               "torch_threads": torch.get_num_threads(),  # reductions' order, hence the last bits, depend on it
               "flops": count_flops(t.model, t.val_set[0]["gathers"][None].to(t.device)),
               "data_shape": list(t.data_shape), "survey": t.survey.to_dict(),
               **({"branch_from": t.cfg.run.branch_from} if t.cfg.run.branch_from else {}),
               **{f"val/{k}": v for k, v in val_metrics.items()}}
    (t.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"best epoch {best_state['epoch']}: val MAE {val_metrics['mae']:.4f} "
          f"({val_metrics['mae_ms']:.0f} m/s), RMSE {val_metrics['rmse']:.4f}, SSIM {val_metrics['ssim']:.3f}, "
          f"salt IoU {val_metrics['iou']:.3f}" + (f", data misfit {val_metrics['data_misfit']:.3f}"
                                                   if "data_misfit" in val_metrics else ""))
    print(f"figure: {t.run_dir / 'predictions.png'}")
    if t.wb is not None:
        t.wb.summary.update(summary)
        t.wb.finish()


# ---------------------------------------------------------------------------------------------------- set-up
def setup(cfg: Config, device: torch.device, distributed: bool, run_dir: Path) -> Trainer:
    """Check and prepare the run directory, then build data, model, loss and optimiser, restored from ``--resume``
    / ``--branch-from`` state when given (everything is checked against the config before anything is written)."""
    start = prepare_run_dir(cfg, run_dir) if D.is_main() else None
    data_path = ensure_dataset(cfg)
    train_set, val_set, sampler, loader, val_loader = make_data(cfg, data_path, device)
    if D.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    model = build_model(cfg.model, tuple(train_set[0]["gathers"].shape), train_set.survey.shape).to(device)
    model = model.to(memory_format=torch.channels_last if cfg.optim.channels_last else torch.contiguous_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr,
                                                    total_steps=cfg.optim.epochs * len(loader),
                                                    pct_start=0.1, anneal_strategy="cos")
    t = Trainer(cfg, device, run_dir, data_path, train_set, val_set, sampler, loader, val_loader, model,
                DistributedDataParallel(model) if distributed else model,
                FWILoss(cfg.loss, train_set.survey, train_set.normalizer,
                        data_time_decimation=cfg.data.time_decimation), optimizer, scheduler)
    branching = bool(cfg.run.branch_from) and not cfg.run.resume
    if cfg.run.resume or branching:
        restore(t, start if start is not None else
                load_checkpoint(run_dir / "last.pt" if cfg.run.resume else cfg.run.branch_from), branching)
    if t.main:
        t.wb = start_wandb(cfg, run_dir, {"params": count_params(model), "world_size": D.world()[2]})
        print(f"{run_dir.name}: {count_params(model) / 1e6:.2f} M parameters, {train_set.n_samples} train / "
              f"{len(val_set)} val samples, device {device}, world size {D.world()[2]}")
        if branching:
            start_branch_records(t, start)
    return t


def ensure_dataset(cfg: Config) -> Path:
    """The configured dataset, generated from its preset first when the file does not exist (rank 0 only)."""
    path = Path(cfg.data.data)
    if D.is_main():
        ensure_generated(path, cfg.data.preset, seed=cfg.data.data_seed,
                         workers=cfg.data.generate_workers or (os.cpu_count() or 1), progress=cfg.run.progress)
    D.barrier()
    return path


def make_data(cfg: Config, data_path: Path, device: torch.device):
    """Train / validation datasets and loaders (the train sampler shards the data over torchrun ranks)."""
    rank, _, world_size = D.world()
    cache_gb = cfg.data.cache_gb if cfg.data.num_workers == 0 else 0.0  # a worker's cache would die with it
    train_set = FWIDataset(data_path, "train", time_decimation=cfg.data.time_decimation, mirror=cfg.data.mirror,
                           seed=cfg.optim.seed, cache_gb=cache_gb, limit=cfg.data.train_samples,
                           epoch_samples=cfg.data.epoch_samples)
    val_set = FWIDataset(data_path, "val", time_decimation=cfg.data.time_decimation, cache_gb=cache_gb)
    if len(val_set) == 0:
        raise ValueError(f"{data_path} has an empty 'val' split: training needs validation samples (best.pt is the "
                         "epoch of lowest validation MAE); regenerate the dataset with a validation split")
    per_rank_batch = max(1, cfg.optim.batch_size // world_size)
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.optim.seed,
                                 drop_last=True)
    loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.data.num_workers,
                        drop_last=True, pin_memory=device.type == "cuda")
    val_loader = DataLoader(val_set, batch_size=cfg.optim.eval_batch_size, num_workers=cfg.data.num_workers)
    if len(loader) == 0:
        raise ValueError(f"the train split ({len(train_set)} samples) is smaller than one batch of {per_rank_batch}")
    return train_set, val_set, sampler, loader, val_loader


def restore(t: Trainer, state: dict[str, Any], branching: bool) -> None:
    """Load weights, optimiser, schedule, RNG and records from a checkpoint (own last.pt or a trunk's snapshot)."""
    if t.main and not branching:
        repair_records(t.run_dir, state)
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(optimizer_state_for(t.model, state["model"], state["optimizer"]))  # old key order
    t.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    t.start_epoch, t.best, t.history = state["epoch"], state["best"], list(state["history"])
    t.best_epoch = state.get("best_epoch")
    if t.main:
        print(f"{'branching from ' + t.cfg.run.branch_from if branching else 'resuming ' + str(t.run_dir)} "
              f"after epoch {t.start_epoch}")
        before = t.history[-1].get("torch_threads") if t.history else None
        if before is not None and before != torch.get_num_threads():
            print(f"note: epoch {t.start_epoch} ran with {before} torch thread(s), this process has "
                  f"{torch.get_num_threads()}: float reductions add up in another order, so the curve will not be "
                  f"bit-identical to an uninterrupted run (OMP_NUM_THREADS={before} keeps it)")


def start_branch_records(t: Trainer, state: dict[str, Any]) -> None:
    """A branch's own records start as the trunk's up to the snapshot: best.pt, last.pt (its commit point),
    metrics.jsonl and the W&B history."""
    best_model = state.get("best_model")
    save_checkpoint({**t.checkpoint_state(t.start_epoch),
                     **({"model": best_model, "epoch": t.best_epoch} if best_model is not None else {})},
                    t.run_dir / "best.pt")
    save_checkpoint(t.checkpoint_state(t.start_epoch), t.run_dir / "last.pt")
    write_text(t.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in t.history))
    if t.wb is not None:
        for record in t.history:
            t.wb.log(record, step=record["epoch"])


# ---------------------------------------------------------------------------------------------------- helpers
def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A generator seeded by (seed, keys): draws that depend on the step, not on history (exact resume)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0]))


def snapshot_state(t: Trainer, epoch: int, improved: bool) -> dict[str, Any]:
    """The state after ``epoch`` plus, when an earlier epoch is the best so far, that epoch's weights (a branch from
    this snapshot needs them for its own best.pt)."""
    snap = t.checkpoint_state(epoch)
    if not improved and t.best_epoch is not None:
        snap["best_model"] = load_checkpoint(t.run_dir / "best.pt")["model"]
    return snap


def non_finite_tensors(module: nn.Module) -> list[str]:
    """Names of parameters and buffers (BatchNorm running statistics included) holding NaN or inf."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [n for n, t in named if t.is_floating_point() and not torch.isfinite(t).all()]


def last_good(run_dir: Path, epoch: int) -> str:
    """Which checkpoint a diverged run keeps."""
    if epoch == 0 or not (run_dir / "last.pt").exists():
        return "No checkpoint was written yet (it diverged in the first epoch)"
    return f"The last good checkpoint ({run_dir / 'last.pt'}, epoch {epoch}) is kept"


def prediction_figure(first: dict, normalizer: Normalizer, n: int, dx: float):
    """Truth / prediction panels of the first ``n`` samples of a scored batch (``{"pred", "batch"}``)."""
    pred, batch = first["pred"], first["batch"]
    n = min(n, pred["velocity"].shape[0])
    return viz.velocity_panels(normalizer.velocity_inverse(batch["velocity"][:n, 0]),
                               normalizer.velocity_inverse(pred["velocity"][:n, 0]),
                               batch["salt_mask"][:n, 0], (pred["salt_logits"][:n, 0] > 0).float(),
                               titles=[f"#{int(i)}" for i in batch["index"][:n]], dx=dx,
                               vrange=(normalizer.v_min, normalizer.v_max))


def kill_at_from_env() -> CommitHook | None:
    """Test hook: ``FWI_KILL_AT=<point>:<epoch>`` (e.g. ``after-last:1``) SIGKILLs the process at that commit."""
    target = os.environ.get("FWI_KILL_AT")
    if not target:
        return None

    def kill(point: str, epoch: int) -> None:
        if f"{point}:{epoch}" == target:
            os.kill(os.getpid(), signal.SIGKILL)
    return kill


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv, description=__doc__)
    train(cfg, on_commit=kill_at_from_env())
    return 0


if __name__ == "__main__":
    sys.exit(main())
