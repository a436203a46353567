"""Train an attention U-Net (or InversionNet) on gathers -> velocity + salt mask.

    python -m fwi.train --attn ca --skip-attn                       # configs/default.yaml (salt70)
    python -m fwi.train --config configs/quick.yaml --attn ca --skip-attn
    torchrun --nproc_per_node=2 -m fwi.train --config configs/tiny.yaml

Writes ``runs/<name>/``: config.yaml (resolved), last.pt, best.pt (lowest validation MAE), metrics.jsonl (one line
per epoch), predictions.png, summary.json. The dataset is generated first when the configured file is missing.
``--resume`` continues from last.pt exactly (same weights as an uninterrupted run). ``--keep-epochs 22`` also keeps
epoch-22.pt; ``--branch-from runs/<trunk>/epoch-22.pt`` starts another run there (e.g. with the physics loss from
epoch 23; see fwi.continuation). A NaN/inf loss stops the run and keeps the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from fwi import distributed as D
from fwi.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fwi.atomic import write_text
from fwi.cli import friendly_errors
from fwi.config import Config, parse_args, save_config
from fwi.continuation import check_branch, resume_conflicts, snapshot_name
from fwi.data.dataset import FWIDataset
from fwi.data.generate import ensure_generated
from fwi.lock import run_lock
from fwi.losses import FWILoss
from fwi.scoring import evaluate_loader
from fwi.models.build import build_model
from fwi.models.complexity import count_flops, count_params
from fwi.models.legacy_keys import optimizer_state_for
from fwi import viz
from fwi.tracking import start_wandb


class TrainingDiverged(RuntimeError):
    """The loss, a weight or a BatchNorm statistic became NaN or infinite."""


def ensure_dataset(cfg: Config) -> Path:
    """The configured dataset, generated from its preset first when the file does not exist (rank 0 only)."""
    path = Path(cfg.data.data)
    if D.is_main():
        ensure_generated(path, cfg.data.preset, seed=cfg.data.data_seed,
                         workers=cfg.data.generate_workers or (os.cpu_count() or 1), progress=cfg.run.progress)
    D.barrier()
    return path


def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A generator seeded by (seed, keys): draws that depend on the step, not on history (exact resume)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0]))


def prediction_figure(first: dict, normalizer, n: int, dx: float):
    pred, batch = first["pred"], first["batch"]
    n = min(n, pred["velocity"].shape[0])
    return viz.velocity_panels(normalizer.velocity_inverse(batch["velocity"][:n, 0]),
                               normalizer.velocity_inverse(pred["velocity"][:n, 0]),
                               batch["salt_mask"][:n, 0], (pred["salt_logits"][:n, 0] > 0).float(),
                               titles=[f"#{int(i)}" for i in batch["index"][:n]], dx=dx,
                               vrange=(normalizer.v_min, normalizer.v_max))


def batch_example(dataset: FWIDataset, device: torch.device) -> torch.Tensor:
    """One sample's gathers as a (1, S, T, R) batch (for FLOP counting)."""
    return dataset[0]["gathers"][None].to(device)


def check_resume(cfg: Config, checkpoint: Path) -> dict[str, Any]:
    """The checkpoint to resume from, after checking that ``cfg`` would continue the same run (else an error)."""
    state = load_checkpoint(checkpoint)
    conflicts = resume_conflicts(cfg.to_dict(), state.get("config", {}))
    if conflicts:
        raise CheckpointError(
            f"--resume would not continue {checkpoint.parent.name} as it was trained: {', '.join(conflicts)}. "
            "Drop these flags to continue it (the learning-rate schedule is fixed by its epochs and batch size), "
            "or start another run with --name (or --overwrite)")
    return state


def remove_debris(run_dir: Path) -> None:
    """Temporary files of a killed writer (``.*.tmp.pt``, ``.*.tmp.*``) in a run directory we hold the lock of."""
    for path in run_dir.glob(".*.tmp*"):
        if path.is_file():
            path.unlink()


def load_branch(cfg: Config) -> dict[str, Any]:
    """The trunk's snapshot ``--branch-from`` names, after checking that ``cfg`` trained its epochs as the trunk did."""
    path = Path(cfg.run.branch_from)
    state = load_checkpoint(path)
    check_branch(cfg.to_dict(), state, path)
    return state


def prepare_run_dir(cfg: Config) -> tuple[Path, dict[str, Any] | None]:
    """The run directory, made ready for this run (the caller holds its lock), and the state to continue from
    (its own last.pt with ``--resume``, the trunk's snapshot with ``--branch-from``, else None)."""
    run_dir = Path(cfg.run.out) / cfg.run_name()
    if run_dir.exists():
        remove_debris(run_dir)
    if cfg.run.resume:
        if not (run_dir / "last.pt").exists():
            raise CheckpointError(f"--resume: no checkpoint {run_dir / 'last.pt'} to resume from")
        return run_dir, check_resume(cfg, run_dir / "last.pt")
    branch = load_branch(cfg) if cfg.run.branch_from else None  # checked before anything is removed
    if (run_dir / "last.pt").exists():  # a directory without a checkpoint holds nothing worth keeping
        if not cfg.run.overwrite:
            raise FileExistsError(f"run directory {run_dir} exists; use --resume to continue it, --overwrite to "
                                  "replace it, or --name for a new run")
        shutil.rmtree(run_dir)
    else:  # records of an earlier run whose checkpoint is gone (a fresh machine): this run starts them anew
        stale = [run_dir / n for n in ("metrics.jsonl", "summary.json") if (run_dir / n).exists()]
        stale += sorted(p for p in run_dir.glob("eval-*") if p.is_dir())  # evaluations of the earlier weights
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if stale:
            print(f"note: {run_dir} had no checkpoint; its earlier records ({', '.join(p.name for p in stale)}) "
                  "were removed and the run starts from epoch 1", file=sys.stderr)
    return run_dir, branch


def repair_records(run_dir: Path, state: dict[str, Any]) -> None:
    """Make the side files agree with the checkpoint (the source of truth) after a kill at any point.

    ``metrics.jsonl`` is rewritten from the history inside ``last.pt``; a ``best.pt`` that lags the best epoch
    recorded there (a kill between the two checkpoint writes) is restored from ``last.pt``, which is that epoch.
    """
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
    best_epoch = state.get("best_epoch")
    if best_epoch is None:
        return
    best_path = run_dir / "best.pt"
    on_disk = load_checkpoint(best_path)["epoch"] if best_path.exists() else None
    if on_disk != best_epoch and best_epoch == state["epoch"]:
        shutil.copyfile(run_dir / "last.pt", best_path)
        print(f"note: {best_path} lagged the best epoch {best_epoch} recorded in last.pt; restored", file=sys.stderr)


def non_finite_tensors(module: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers (BatchNorm running statistics included) holding NaN or inf."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [n for n, t in named if t.is_floating_point() and not torch.isfinite(t).all()]


def kill_hook(point: str, epoch: int) -> None:
    """Test hook: ``FWI_KILL_AT=<point>:<epoch>`` SIGKILLs this process there (e.g. ``after-last:1``)."""
    if os.environ.get("FWI_KILL_AT") == f"{point}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def _last_good(run_dir: Path, epoch: int) -> str:
    if epoch == 0 or not (run_dir / "last.pt").exists():
        return "No checkpoint was written yet (it diverged in the first epoch)"
    return f"The last good checkpoint ({run_dir / 'last.pt'}, epoch {epoch}) is kept"


def train(cfg: Config) -> Path:
    """Run the training described by ``cfg``; returns the run directory."""
    device = D.resolve_device(cfg.optim.device)
    distributed = D.setup(device)
    torch.manual_seed(cfg.optim.seed)
    run_dir = Path(cfg.run.out) / cfg.run_name()
    lock = run_lock(run_dir) if D.is_main() else nullcontext()
    with lock:
        return _train(cfg, device, distributed, run_dir)


def _train(cfg: Config, device: torch.device, distributed: bool, run_dir: Path) -> Path:
    rank, _, world_size = D.world()
    main = rank == 0
    start = prepare_run_dir(cfg)[1] if main else None  # checked against the config before anything is written
    branching = bool(cfg.run.branch_from) and not cfg.run.resume
    data_path = ensure_dataset(cfg)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    cache_gb = cfg.data.cache_gb if cfg.data.num_workers == 0 else 0.0  # a worker's cache would die with it
    train_set = FWIDataset(data_path, "train", time_decimation=cfg.data.time_decimation, mirror=cfg.data.mirror,
                           seed=cfg.optim.seed, cache_gb=cache_gb, limit=cfg.data.train_samples,
                           epoch_samples=cfg.data.epoch_samples)
    val_set = FWIDataset(data_path, "val", time_decimation=cfg.data.time_decimation, cache_gb=cache_gb)
    survey, normalizer = train_set.survey, train_set.normalizer
    data_shape = tuple(train_set[0]["gathers"].shape)
    per_rank_batch = max(1, cfg.optim.batch_size // world_size)
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.optim.seed,
                                 drop_last=True)
    loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.data.num_workers,
                        drop_last=True, pin_memory=device.type == "cuda")
    val_loader = DataLoader(val_set, batch_size=cfg.optim.eval_batch_size, num_workers=cfg.data.num_workers)
    if len(loader) == 0:
        raise ValueError(f"the train split ({len(train_set)} samples) is smaller than one batch of {per_rank_batch}")

    model = build_model(cfg.model, data_shape, survey.shape).to(device)
    memory_format = torch.channels_last if cfg.optim.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    loss_fn = FWILoss(cfg.loss, survey, normalizer, data_time_decimation=cfg.data.time_decimation)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    total_steps = cfg.optim.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=total_steps,
                                                    pct_start=0.1, anneal_strategy="cos")
    start_epoch, best, best_epoch, history = 0, math.inf, None, []
    if cfg.run.resume or branching:
        if start is not None:
            state = start
        else:
            state = load_checkpoint(run_dir / "last.pt" if cfg.run.resume else cfg.run.branch_from)
        if main and cfg.run.resume:
            repair_records(run_dir, state)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(optimizer_state_for(model, state["model"], state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch, best, history = state["epoch"], state["best"], list(state["history"])
        best_epoch = state.get("best_epoch")
        if main:
            print(f"{'branching from ' + cfg.run.branch_from if branching else 'resuming ' + str(run_dir)} "
                  f"after epoch {start_epoch}")
    n_params = count_params(model)
    net = DistributedDataParallel(model) if distributed else model
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.optim.bf16 and device.type == "cuda"
                else nullcontext())
    wb = start_wandb(cfg, run_dir, {"params": n_params, "world_size": world_size}) if main else None
    if main:
        print(f"{run_dir.name}: {n_params / 1e6:.2f} M parameters, {train_set.n_samples} train / {len(val_set)} val "
              f"samples, device {device}, world size {world_size}")

    def checkpoint_state(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "best": best,
                "best_epoch": best_epoch,
                "history": history, "config": cfg.to_dict(), "survey": survey.to_dict(),
                "normalisation": normalizer.to_dict(), "data_shape": list(data_shape), "data": str(data_path)}

    def snapshot_state(epoch: int, improved: bool) -> dict[str, Any]:
        """The state after ``epoch`` plus, when an earlier epoch is the best so far, that epoch's weights (a branch
        from this snapshot needs them for its own best.pt)."""
        snap = checkpoint_state(epoch)
        if not improved and best_epoch is not None:
            snap["best_model"] = load_checkpoint(run_dir / "best.pt")["model"]
        return snap

    if main and branching:  # the branch's own records start as the trunk's up to the snapshot
        best_model = state.get("best_model")
        save_checkpoint({**checkpoint_state(start_epoch), **({"model": best_model, "epoch": best_epoch}
                                                               if best_model is not None else {})},
                        run_dir / "best.pt")
        save_checkpoint(checkpoint_state(start_epoch), run_dir / "last.pt")  # the commit point of the branch
        write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        if wb is not None:
            for record in history:
                wb.log(record, step=record["epoch"])

    end_epoch = cfg.optim.epochs if not cfg.run.stop_after else min(cfg.optim.epochs, start_epoch + cfg.run.stop_after)
    for epoch in range(start_epoch, end_epoch):
        net.train()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=not (main and cfg.run.progress),
                   dynamic_ncols=True, leave=False)
        for step, batch in enumerate(bar):
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast:
                pred = net(batch["gathers"].contiguous(memory_format=memory_format))
            pred = {k: v.float() for k, v in pred.items()}
            loss, parts = loss_fn(pred, batch, epoch=epoch + step / len(loader),
                                  generator=step_generator(cfg.optim.seed, epoch, step, rank))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                                       f"stopping. {_last_good(run_dir, epoch)}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        train_time = time.perf_counter() - t0
        train_metrics = {f"train/{k}": v / len(loader) for k, v in sums.items()}
        if main:
            val_metrics, first = evaluate_loader(model, val_loader, loss_fn, device, cfg.run.misfit_samples)
            record = {"epoch": epoch + 1, **train_metrics, **{f"val/{k}": v for k, v in val_metrics.items()},
                      "lr": scheduler.get_last_lr()[0], "epoch_time_s": train_time,
                      "samples_per_s": len(loader) * per_rank_batch * world_size / train_time}
            broken = non_finite_tensors(model)
            if broken:
                raise TrainingDiverged(f"after epoch {epoch + 1} (step {len(loader)}) the weights hold NaN or inf "
                                       f"({', '.join(broken[:4])}{' ...' if len(broken) > 4 else ''}); not saved. "
                                       f"{_last_good(run_dir, epoch)}; try a lower --lr")
            history.append(record)
            improved = val_metrics["mae"] < best
            if improved:
                best, best_epoch = val_metrics["mae"], epoch + 1
            if epoch + 1 in cfg.run.keep_epochs:  # before last.pt: a kill in between redoes this epoch
                save_checkpoint(snapshot_state(epoch + 1, improved), run_dir / snapshot_name(epoch + 1))
            save_checkpoint(checkpoint_state(epoch + 1), run_dir / "last.pt")  # the commit point of the epoch
            kill_hook("after-last", epoch + 1)
            if improved:
                save_checkpoint(checkpoint_state(epoch + 1), run_dir / "best.pt")
            kill_hook("after-best", epoch + 1)
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"epoch {epoch + 1}/{cfg.optim.epochs}  loss {train_metrics['train/total']:.4f}  "
                  f"val MAE {val_metrics['mae']:.4f}  SSIM {val_metrics['ssim']:.3f}  "
                  f"IoU {val_metrics['iou']:.3f}  ({record['samples_per_s']:.1f} samples/s)", flush=True)
            if wb is not None:
                log = dict(record)
                if cfg.run.images:
                    fig = prediction_figure(first, normalizer, cfg.run.images, survey.dx)
                    log["val/predictions"] = __import__("wandb").Image(fig)
                    viz.plt.close(fig)
                wb.log(log, step=epoch + 1)
        D.barrier()

    if main and end_epoch < cfg.optim.epochs:
        print(f"stopped after epoch {end_epoch} of {cfg.optim.epochs} (--stop-after); continue with --resume")
        if wb is not None:
            wb.finish()
    elif main:
        best_state = load_checkpoint(run_dir / "best.pt", map_location=device)
        model.load_state_dict(best_state["model"])
        val_metrics, first = evaluate_loader(model, val_loader, loss_fn, device, cfg.run.misfit_samples)
        viz.save(prediction_figure(first, normalizer, cfg.run.images or 4, survey.dx), run_dir / "predictions.png")
        summary = {"run": run_dir.name, "best_epoch": best_state["epoch"], "params": n_params,
                   "torch_threads": torch.get_num_threads(),  # reductions' order, hence the last bits, depend on it
                   "flops": count_flops(model, batch_example(val_set, device)), "data_shape": list(data_shape),
                   "survey": survey.to_dict(),
                   **({"branch_from": cfg.run.branch_from} if cfg.run.branch_from else {}),
                   **{f"val/{k}": v for k, v in val_metrics.items()}}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"best epoch {best_state['epoch']}: val MAE {val_metrics['mae']:.4f} "
              f"({val_metrics['mae_ms']:.0f} m/s), RMSE {val_metrics['rmse']:.4f}, SSIM {val_metrics['ssim']:.3f}, "
              f"salt IoU {val_metrics['iou']:.3f}" + (f", data misfit {val_metrics['data_misfit']:.3f}"
                                                       if "data_misfit" in val_metrics else ""))
        print(f"figure: {run_dir / 'predictions.png'}")
        if wb is not None:
            wb.summary.update(summary)
            wb.finish()
    D.cleanup()
    return run_dir


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv, description=__doc__)
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
