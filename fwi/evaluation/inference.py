"""The network over batches of an evaluated set: batches in the `fwi.scoring` layout, inverted and scored into the
arrays of an `Evaluation`."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from fwi.physics import Survey
from fwi.run import LoadedRun
from fwi.scoring import METRICS, score_batches


def score_network(run: LoadedRun, batches: Iterable[dict[str, Any]], survey: Survey, misfit: bool) -> dict[str, Any]:
    """Invert and score batches (`fwi.scoring` layout plus ``velocity_ms`` (B, nz, nx) and ``mask`` (B, nz, nx)):
    per-sample metrics and the arrays the figures need."""
    normalizer = run.normalizer
    out: dict[str, list] = {"index": [], "true_v": [], "pred_v": [], "true_m": [], "pred_m": []}
    values: dict[str, list] = {}
    for scored in score_batches(run.predict, batches, normalizer, survey, run.device, run.time_decimation,
                                None if misfit else 0):
        b, pred = scored.batch, scored.pred
        for k, v in scored.scores.items():
            values.setdefault(k, []).append(v.detach().cpu().double().numpy())
        out["index"].append(np.asarray(b["index"]))
        out["true_v"].append(b["velocity_ms"].cpu().float().numpy())
        out["pred_v"].append(normalizer.velocity_inverse(pred["velocity"][:, 0]).cpu().numpy())
        out["true_m"].append(b["mask"].cpu().numpy().astype(np.uint8))
        out["pred_m"].append((pred["salt_logits"][:, 0] > 0).cpu().numpy().astype(np.uint8))
    if not out["index"]:
        raise ValueError("nothing to evaluate: the set is empty")
    metrics = {k: np.concatenate(values[k]) for k in METRICS if k in values}
    return {"index": np.concatenate(out["index"]), "metrics": metrics,
            **{k: np.concatenate(out[k]) for k in ("true_v", "pred_v", "true_m", "pred_m")}}


def scoring_batch(index, raw: torch.Tensor, velocity_ms: torch.Tensor, mask: torch.Tensor,
                  normalizer) -> dict[str, Any]:
    """A `fwi.scoring` batch of raw decimated gathers (B, S, T', R), velocity (B, nz, nx) m/s and mask (B, nz, nx)."""
    velocity_ms, mask = velocity_ms.float(), mask.float()
    return {"index": index, "gathers": normalizer.gathers(raw), "observed": raw,
            "velocity": normalizer.velocity(velocity_ms)[:, None], "salt_mask": mask[:, None],
            "velocity_ms": velocity_ms, "mask": mask}


def progress_bar(iterable, total: int, desc: str, progress: bool | None):
    # disable=None: a bar only on a terminal (quiet in logs, tests and notebooks without widgets).
    return tqdm(iterable, total=total, desc=desc, disable=None if progress is None else not progress,
                dynamic_ncols=True, leave=False)


def resolve_batch_size(run: LoadedRun, batch_size: int | None) -> int:
    size = batch_size or int(run.config.get("optim", {}).get("eval_batch_size", 32))
    if size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {size}")
    return size
