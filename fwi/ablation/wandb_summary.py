"""The W&B summary run of an ablation (job_type ``summary``, the ablation's group) with its ``ablation`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fwi.ablation.results import METRIC_KEYS, row_family_columns


def log_summary(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]], abl_dir: Path,
                mode: str, plots: list[str]) -> str | None:
    """A W&B run (job_type summary, the ablation's group) with the ``ablation`` table: one row per cell, one per
    variant (``row`` column: run / variant). Returns its directory."""
    if mode == "disabled":
        return None
    import wandb

    from fwi.tracking import wandb_mode

    numbers = (*METRIC_KEYS, *row_family_columns(rows), "params", "flops", "step_ms")
    columns = ["row", "variant", "label", "physics", "seed", "n", "status", "source", "factors", *numbers,
               *[f"{k}_std" for k in numbers], "best_epoch", "run"]
    table = wandb.Table(columns=columns, allow_mixed_types=True)
    for r in rows:
        table.add_data("run", r["variant"], r["label"], r["physics"], r["seed"], 1 if r["status"] == "ok" else 0,
                       r["status"], r["source"], r["factors"], *[r.get(k) for k in numbers],
                       *[None for _ in numbers], r["best_epoch"], r["run"])
    for g in groups:
        table.add_data("variant", g["variant"], g["label"], g["physics"], None, g["n"],
                       "ok" if g["n"] else "failed", "/".join(g["sources"]), g["factors"],
                       *[g.get(k) for k in numbers], *[g.get(f"{k}_std") for k in numbers], None, None)
    run = wandb.init(project=info.get("wandb_project") or "fwi", name=f"{info['name']}-summary", group=info["name"],
                     job_type="summary", dir=str(abl_dir), mode=wandb_mode(mode), tags=[f"ablation:{info['name']}"],
                     config={"ablation": info["name"], "preset": info["preset"], "base": info["base"],
                             "baseline": info["baseline"], "spec": info["spec"]},
                     settings=wandb.Settings(silent=True))
    log: dict[str, Any] = {"ablation": table}
    for p in plots:
        log[Path(p).stem] = wandb.Image(str(abl_dir / p))
    run.log(log)
    for g in groups:
        for k in ("mae", "mae_ms", "ssim", "iou"):
            if g.get(k) is not None:
                run.summary[f"{g['variant']}/{k}"] = g[k]
    run_dir = run.dir
    run.finish()
    return run_dir
