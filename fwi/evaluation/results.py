"""The evaluated set: per-sample metrics, predictions and figure helpers (`Evaluation`), and their summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fwi import viz
from fwi.physics import Survey
from fwi.run import LoadedRun


#: Metrics drawn in the histogram.
HISTOGRAM_METRICS = ("mae_ms", "rmse_ms", "ssim", "iou", "data_misfit")
HIGHER_IS_BETTER = {"ssim", "iou", "dice"}


def summarize(index: np.ndarray, metrics: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean, std (ddof 0), pooled RMSE (root of the mean MSE, not the mean of per-sample RMSEs) and the per-sample
    list of per-sample metrics (JSON-ready); ``index`` gives each sample's dataset index."""
    per_sample = [{"index": int(index[i]), **{k: float(v[i]) for k, v in metrics.items()}}
                  for i in range(len(index))]
    mean = {k: float(np.mean([s[k] for s in per_sample])) for k in metrics}
    pooled = {}
    if "mse" in mean:
        pooled = {"rmse": math.sqrt(mean["mse"]), "rmse_ms": math.sqrt(mean["mse_ms"])}
    return {"mean": mean, "std": {k: float(np.std(v)) for k, v in metrics.items()}, "pooled": pooled,
            "per_sample": per_sample}


@dataclass
class Evaluation:
    """Per-sample metrics and predictions of one evaluated set (a split or one external model file).

    Arrays are indexed by *position* 0..N-1; ``index`` maps a position to the dataset index (or the model number in
    an external file). Velocities are in m/s, masks in {0, 1}.
    """

    name: str
    run: LoadedRun = field(repr=False)
    survey: Survey = field(repr=False)  # the survey that made the observed data (used to re-model predictions)
    index: np.ndarray
    metrics: dict[str, np.ndarray]
    true_velocity: np.ndarray = field(repr=False)
    pred_velocity: np.ndarray = field(repr=False)
    true_mask: np.ndarray = field(repr=False)
    pred_mask: np.ndarray = field(repr=False)
    inputs: Callable[[Sequence[int]], torch.Tensor] = field(repr=False)  # positions -> normalised gathers
    observed: Callable[[Sequence[int]], torch.Tensor] = field(repr=False)  # positions -> raw decimated gathers
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    # -------------------------------------------------------------- statistics
    def mean(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.metrics.items()}

    def std(self) -> dict[str, float]:
        """Population standard deviation (ddof 0) of each per-sample metric."""
        return {k: float(np.std(v)) for k, v in self.metrics.items()}

    def order(self, metric: str = "mae") -> np.ndarray:
        """Positions from best to worst by ``metric`` (ties keep the position order)."""
        values = self.metrics[metric]
        return np.argsort(-values if metric in HIGHER_IS_BETTER else values, kind="stable")

    def ranked(self, metric: str = "mae") -> dict[str, int]:
        """Positions of the worst, median and best samples by ``metric``."""
        order = self.order(metric)
        return {"worst": int(order[-1]), "median": int(order[(len(order) - 1) // 2]), "best": int(order[0])}

    def per_sample(self) -> list[dict[str, Any]]:
        return [{"index": int(self.index[i]), **{k: float(v[i]) for k, v in self.metrics.items()}}
                for i in range(len(self))]

    def to_dict(self) -> dict[str, Any]:
        s = summarize(self.index, self.metrics)
        return {**self.meta, "name": self.name, "checkpoint": str(self.run.checkpoint), "epoch": self.run.epoch,
                "n": len(self), "mean": s["mean"], "std": s["std"], "pooled": s["pooled"],
                "ranked_by_mae": {k: int(self.index[p]) for k, p in self.ranked("mae").items()},
                "per_sample": s["per_sample"]}

    def table(self) -> str:
        """A short text table: mean, std, min and max of each metric."""
        lines = [f"{self.name}: {len(self)} sample(s), {self.run.name} epoch {self.run.epoch}",
                 f"{'metric':<12}{'mean':>11}{'std':>11}{'min':>11}{'max':>11}"]
        for k, v in self.metrics.items():
            lines.append(f"{k:<12}{np.mean(v):>11.4g}{np.std(v):>11.4g}{np.min(v):>11.4g}{np.max(v):>11.4g}")
        return "\n".join(lines)

    # -------------------------------------------------------------- gathers
    def gathers(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Observed and modelled (from the predicted velocity) raw decimated gathers (S, T', R) of one sample."""
        observed = self.observed([position])[0].cpu()
        modelled = self.run.model_data(torch.from_numpy(self.pred_velocity[position:position + 1]), self.survey,
                                       clamp=True)[0].cpu()
        return observed, modelled

    # -------------------------------------------------------------- figures
    def _title(self, position: int, label: str = "") -> str:
        i = int(self.index[position])
        scores = f"MAE {self.metrics['mae_ms'][position]:.0f} m/s, IoU {self.metrics['iou'][position]:.2f}"
        return f"{label + ' ' if label else ''}#{i} ({scores})"

    def velocity_figure(self, positions: Sequence[int], labels: Sequence[str] | None = None):
        """True / predicted / error velocity with salt outlines, one row per position."""
        positions = list(positions)
        labels = labels or [""] * len(positions)
        nz = self.run.normalizer
        return viz.velocity_panels(self.true_velocity[positions], self.pred_velocity[positions],
                                   self.true_mask[positions], self.pred_mask[positions],
                                   titles=[self._title(p, lab) for p, lab in zip(positions, labels)],
                                   dx=self.survey.dx, vrange=(nz.v_min, nz.v_max))

    def mask_figure(self, positions: Sequence[int]):
        """True and predicted salt masks and their disagreement, with the IoU in the titles."""
        positions = list(positions)
        return viz.mask_panels(self.true_mask[positions], self.pred_mask[positions],
                               titles=[f"#{int(self.index[p])}" for p in positions], dx=self.survey.dx)

    def gather_figure(self, position: int, shot: int | None = None, label: str = ""):
        """Observed vs modelled (from the prediction) gathers and their residual for one shot (default: middle)."""
        observed, modelled = self.gathers(position)
        shot = observed.shape[0] // 2 if shot is None else shot
        return viz.gather_panels(observed[shot], modelled[shot], self.survey.dt * self.run.time_decimation,
                                 shot=shot, title=self._title(position, label))

    def histogram_figure(self, metrics: Sequence[str] = HISTOGRAM_METRICS):
        return viz.metric_histogram({k: self.metrics[k] for k in metrics if k in self.metrics},
                                    title=f"{self.name}: {len(self)} sample(s)")
