"""The one scoring loop: a network's predictions on batches, scored per sample (`fwi.metrics`).

Training (validation each epoch), evaluation (`fwi.evaluate`), the notebook and FWI refinement all score through
`score_batches`; `evaluate_loader` is its sample-weighted mean over a DataLoader (what ``fwi.train`` logs).

A batch is a dict of tensors as `fwi.data.dataset.FWIDataset` yields them (normalised):

* ``gathers``   (B, S, T', R) normalised network input
* ``velocity``  (B, 1, nz, nx) normalised true velocity
* ``salt_mask`` (B, 1, nz, nx) true mask in {0, 1}
* ``index``     (B,) dataset indices (optional)
* ``observed``  (B, S, T', R) raw (un-normalised) decimated gathers for the data misfit (optional; default the
  inverse normalisation of ``gathers``)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from fwi.data.transforms import Normalizer
from fwi.metrics import data_misfit, salt_metrics, velocity_metrics
from fwi.physics import Survey

#: Per-sample metrics in the order they are reported.
METRICS = ("mae", "rmse", "ssim", "mae_ms", "rmse_ms", "mse", "mse_ms", "iou", "dice", "data_misfit")


@dataclass
class ScoredBatch:
    """One scored batch: the batch (on the device), the float32 prediction and (B,) per-sample scores.

    ``scores["data_misfit"]`` covers only the first ``misfit_count`` samples of the batch (see `score_batches`).
    """

    batch: dict[str, Any]
    pred: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor]

    @property
    def size(self) -> int:
        return int(self.batch["velocity"].shape[0])


def sample_scores(pred: Mapping[str, torch.Tensor], velocity: torch.Tensor, salt_mask: torch.Tensor,
                  normalizer: Normalizer) -> dict[str, torch.Tensor]:
    """(B,) MAE / MSE / RMSE / SSIM (normalised and ``*_ms``), IoU and Dice of a prediction against normalised
    targets (B, 1, nz, nx)."""
    return {**velocity_metrics(pred["velocity"], velocity, normalizer, reduction="none"),
            **salt_metrics(pred["salt_logits"], salt_mask, reduction="none")}


def velocity_scores(velocity_ms: torch.Tensor, truth_ms: torch.Tensor, salt_mask: torch.Tensor,
                    salt_logits: torch.Tensor, normalizer: Normalizer) -> dict[str, torch.Tensor]:
    """`sample_scores` of models given in m/s (FWI-refined or external): velocity, true velocity, true salt mask and
    predicted salt logits all (B, nz, nx); returns (B,) scores."""
    pred = {"velocity": normalizer.velocity(velocity_ms[:, None]), "salt_logits": salt_logits[:, None]}
    return sample_scores(pred, normalizer.velocity(truth_ms[:, None]), salt_mask[:, None], normalizer)


@torch.no_grad()
def score_batches(model: nn.Module | Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
                  batches: Iterable[Mapping[str, Any]], normalizer: Normalizer, survey: Survey, device: torch.device,
                  time_decimation: int = 1, misfit_samples: int | None = 0) -> Iterator[ScoredBatch]:
    """Run ``model`` on each batch and score it per sample.

    ``misfit_samples``: the data misfit (`fwi.metrics.data_misfit`, one forward modelling per sample) of the
    prediction is computed for the first that many samples over all batches (None: every sample; 0: none).
    """
    done = 0
    for batch in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        pred = {k: v.float() for k, v in model(batch["gathers"]).items()}
        scores = sample_scores(pred, batch["velocity"], batch["salt_mask"], normalizer)
        n = batch["velocity"].shape[0]
        k = n if misfit_samples is None else max(0, min(n, misfit_samples - done))
        if k:
            observed = batch.get("observed")
            observed = normalizer.gathers_inverse(batch["gathers"][:k]) if observed is None else observed[:k]
            v_ms = normalizer.velocity_inverse(pred["velocity"][:k, 0])
            scores["data_misfit"] = data_misfit(v_ms, observed, survey, time_decimation)
            done += k
        yield ScoredBatch(batch, pred, scores)


#: ``loss_parts(pred, batch) -> {"total": ..., "salt_bce": ..., "salt_dice": ...}``: a training loss's batch means.
LossParts = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], Mapping[str, torch.Tensor]]


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader: Iterable[Mapping[str, Any]], normalizer: Normalizer, survey: Survey,
                    device: torch.device, time_decimation: int = 1, misfit_samples: int = 0,
                    loss_parts: LossParts | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Mean metrics over ``loader`` and the first batch's tensors ``{"pred": ..., "batch": ...}`` (for figures).

    With ``loss_parts`` (training passes its `fwi.losses.FWILoss` without the physics term) the means also hold
    ``loss`` (its ``total``: comparable with train/total when the physics loss is off) and ``salt_bce`` /
    ``salt_dice``, to watch for over-fitting. Means are sample-weighted; ``rmse`` / ``rmse_ms`` are the root of
    the mean MSE over the whole set; ``data_misfit`` (present when ``misfit_samples > 0``) is the mean over the
    first ``misfit_samples`` samples.
    """
    model.eval()
    sums: dict[str, float] = {}
    count, first, misfits = 0, None, []
    for scored in score_batches(model, loader, normalizer, survey, device, time_decimation, misfit_samples):
        n = scored.size
        values = {k: v.double() for k, v in scored.scores.items() if k != "data_misfit"}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        if loss_parts is not None:
            parts = loss_parts(scored.pred, scored.batch)
            for k, name in (("loss", "total"), ("salt_bce", "salt_bce"), ("salt_dice", "salt_dice")):
                sums[k] = sums.get(k, 0.0) + float(parts[name]) * n
        if "data_misfit" in scored.scores:
            misfits += scored.scores["data_misfit"].tolist()
        count += n
        if first is None:
            first = {"pred": scored.pred, "batch": scored.batch}
    metrics = {k: v / max(count, 1) for k, v in sums.items()}
    metrics["rmse"], metrics["rmse_ms"] = metrics["mse"] ** 0.5, metrics["mse_ms"] ** 0.5  # RMSE over the whole set
    if misfits:
        metrics["data_misfit"] = float(np.mean(misfits))
    return metrics, first
