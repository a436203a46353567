"""Collecting an ablation's results: per-run metrics (test split, else validation), the metrics on each test family
of the spec, FLOPs, step time, the metrics before and after FWI refinement where a run has them, and results.csv (one
row per cell) written and read back."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from fwi.ablation.runner import cell_status
from fwi.ablation.spec import Cell, TestFamily, families_of
from fwi.atomic import write_text
from fwi.config import load_config

#: Metrics in results.csv / the report: (key, heading, higher is better, format).
METRICS = (("mae", "MAE", False, ".4f"), ("mae_ms", "MAE (m/s)", False, ".1f"), ("rmse", "RMSE", False, ".4f"),
           ("rmse_ms", "RMSE (m/s)", False, ".1f"), ("ssim", "SSIM", True, ".4f"), ("iou", "IoU", True, ".4f"),
           ("dice", "Dice", True, ".4f"), ("data_misfit", "data misfit", False, ".4f"))
METRIC_KEYS = tuple(m[0] for m in METRICS)
COLUMNS = ("run", "variant", "label", "physics", "seed", "kind", "factors", "status", "source", *METRIC_KEYS,
           "params", "flops", "step_ms", "best_epoch", "epochs")
#: Metrics before (the network) and after FWI refinement (``python -m fwi.evaluate RUN --refine``, the ``refined``
#: section of ``<run>/eval-test/metrics.json``), on the refined models only: (key, heading, higher is better, format).
REFINED_METRICS = (("mae_ms", "MAE (m/s)", False, ".1f"), ("ssim", "SSIM", True, ".4f"), ("iou", "IoU", True, ".4f"),
                   ("data_misfit", "data misfit", False, ".4f"))
#: Columns results.csv gains when some run has a refined evaluation (``fwi_<metric>_before`` / ``_after``; fwi_n:
#: models refined, fwi_setup: method, iterations, frequency stages and models, fwi_s_per_model: FWI seconds).
#: Metrics on each test family of the spec (columns ``<family>/<metric>``; ``fwi.evaluate RUN --data FILE``):
#: (key, heading, higher is better, format).
FAMILY_METRICS = (("mae_ms", "MAE (m/s)", False, ".1f"), ("ssim", "SSIM", True, ".4f"), ("iou", "IoU", True, ".4f"),
                  ("data_misfit", "data misfit", False, ".4f"))
REFINED_COLUMNS = ("fwi_n", "fwi_setup", *[f"fwi_{m[0]}_{tag}" for m in REFINED_METRICS for tag in ("before", "after")],
                   "fwi_s_per_model")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_metrics(run_dir: Path) -> tuple[dict[str, float], str]:
    """The run's metrics and their source: the test split (fwi.evaluate) when present, else validation."""
    ev = read_json(run_dir / "eval-test" / "metrics.json")
    if ev and isinstance(ev.get("mean"), dict):
        mean = {k.split("/")[-1]: v for k, v in ev["mean"].items()}
        mean.update({k.split("/")[-1]: v for k, v in (ev.get("pooled") or {}).items()})  # data-set RMSE
        return {k: float(mean[k]) for k in METRIC_KEYS if isinstance(mean.get(k), (int, float))}, "test"
    summary = read_json(run_dir / "summary.json") or {}
    return {k: float(summary[f"val/{k}"]) for k in METRIC_KEYS if isinstance(summary.get(f"val/{k}"), (int, float))}, \
        "val"


def family_columns(info: dict[str, Any]) -> list[str]:
    """The results.csv columns of the ablation's test families (``<family>/<metric>``; none without families)."""
    return [f"{name}/{key}" for name in info.get("test_families") or {} for key, *_ in FAMILY_METRICS]


def family_metrics(run_dir: Path, family: TestFamily) -> dict[str, float]:
    """The run's mean metrics on ``family`` (``<run>/<family.out_dir>/metrics.json``), as ``<name>/<metric>``; empty
    when it was not evaluated there."""
    name = family.name
    ev = read_json(run_dir / family.out_dir / "metrics.json") or {}
    mean = {k.split("/")[-1]: v for k, v in (ev.get("mean") or {}).items()}
    return {f"{name}/{k}": float(mean[k]) for k, *_ in FAMILY_METRICS if isinstance(mean.get(k), (int, float))}


def refined_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics before and after FWI refinement (`REFINED_COLUMNS`), from the ``refined`` section of its
    test evaluation; empty when it has none."""
    ev = read_json(run_dir / "eval-test" / "metrics.json") or {}
    refined = ev.get("refined")
    if not isinstance(refined, dict) or not isinstance(refined.get("mean"), dict) or \
            not isinstance((refined.get("before") or {}).get("mean"), dict):
        return {}
    out: dict[str, Any] = {"fwi_n": int(refined.get("n", 0)), "fwi_setup": refined_setup(refined),
                           "fwi_s_per_model": refined.get("seconds_per_model")}
    for key, *_ in REFINED_METRICS:
        for tag, mean in (("before", refined["before"]["mean"]), ("after", refined["mean"])):
            value = mean.get(key)
            out[f"fwi_{key}_{tag}"] = float(value) if isinstance(value, (int, float)) else None
    return out


def refined_setup(refined: dict[str, Any]) -> str:
    """What was refined, in one short line: method, iterations, frequency stages (Hz) and the models."""
    stages = "/".join("full" if f is None else f"{f:g}" for f in refined.get("schedule") or [])
    idx = [int(i) for i in refined.get("indices") or []]
    models = f"{idx[0]}-{idx[-1]}" if idx and idx == list(range(idx[0], idx[-1] + 1)) else " ".join(map(str, idx))
    return f"{refined.get('method', '?')} {refined.get('iterations', '?')} it {stages} Hz models {models}"


def step_ms(run_dir: Path) -> float | None:
    """Mean training time per sample (ms) over the epochs after the first (the only one if there is one)."""
    epochs: dict[int, float] = {}
    try:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("samples_per_s"):
                epochs[int(rec["epoch"])] = 1000.0 / float(rec["samples_per_s"])
    except (OSError, ValueError):
        return None
    values = [epochs[k] for k in sorted(epochs)]
    values = values[1:] or values
    return statistics.fmean(values) if values else None


def run_flops(run_dir: Path) -> int | None:
    """FLOPs of one forward pass of the run's model on one sample of its data shape."""
    import torch

    from fwi.checkpoint import load_checkpoint
    from fwi.models.build import build_model
    from fwi.models.complexity import count_flops
    from fwi.physics import Survey

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary.get("flops"):  # recorded by fwi.train since the summary has carried it
            return int(summary["flops"])
        cfg = load_config(run_dir / "config.yaml")
        state = summary if "data_shape" in summary else load_checkpoint(run_dir / "best.pt")
        shape = tuple(int(s) for s in state["data_shape"])
        model = build_model(cfg.model, shape, Survey.from_dict(state["survey"]).shape)
        return count_flops(model, torch.zeros(1, *shape))
    except Exception as exc:  # noqa: BLE001 - a report should survive one unreadable run
        print(f"warning: FLOPs of {run_dir.name}: {exc}", file=sys.stderr)
        return None


def collect(info: dict[str, Any], abl_dir: Path) -> list[dict[str, Any]]:
    """One row per cell (in spec order) from the run directories."""
    rows = []
    families = families_of(info)
    for c in info["cells"]:
        cell = Cell.from_dict(c)
        run_dir = abl_dir / "runs" / cell.run
        status = cell_status(run_dir)
        row: dict[str, Any] = {"run": cell.run, "variant": cell.variant, "label": cell.label,
                               "physics": "on" if cell.physics else "off", "seed": cell.seed, "kind": cell.kind,
                               "factors": cell.factors_text(), "status": status, "source": ""}
        row.update({k: None for k in (*COLUMNS, *family_columns(info), *REFINED_COLUMNS) if k not in row})
        if status == "ok":
            metrics, row["source"] = run_metrics(run_dir)
            row.update(metrics)
            for family in families:
                row.update(family_metrics(run_dir, family))
            row.update(refined_metrics(run_dir))
            summary = read_json(run_dir / "summary.json") or {}
            row["params"], row["best_epoch"] = summary.get("params"), summary.get("best_epoch")
            row["flops"], row["step_ms"] = run_flops(run_dir), step_ms(run_dir)
            cfg = _read_yaml(run_dir / "config.yaml")
            row["epochs"] = (cfg.get("optim") or {}).get("epochs") if cfg else None
        rows.append(row)
    return rows


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def has_refined(rows: list[dict[str, Any]]) -> bool:
    """Whether some row holds metrics after FWI refinement."""
    return any(r.get("fwi_n") is not None for r in rows)


def row_family_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The test-family columns (``<family>/<metric>``) the rows carry, in order."""
    return [k for k in (rows[0] if rows else {}) if "/" in k]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """results.csv: `COLUMNS`, the test families' columns when the spec has test families, and `REFINED_COLUMNS`
    only when some run has a refined evaluation."""
    columns = (*COLUMNS, *row_family_columns(rows), *(REFINED_COLUMNS if has_refined(rows) else ()))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, Any]]:
    """results.csv back as rows (numbers as float/int, empty cells as None)."""
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    row[k] = None
                elif k in (*METRIC_KEYS, "step_ms") or "/" in k or \
                        (k.startswith("fwi_") and k not in ("fwi_n", "fwi_setup")):
                    row[k] = float(v)
                elif k in ("seed", "params", "flops", "best_epoch", "epochs", "fwi_n"):
                    row[k] = int(float(v))
                else:
                    row[k] = v
            rows.append(row)
    return rows

