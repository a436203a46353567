"""FWI refinement (`fwi.invert.refine`) of the network's predictions of an evaluated split, scored as the network's
(`refine_split`, `Refinement`, `score_models`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from fwi import viz
from fwi.data.dataset import SALT_THRESHOLD
from fwi.evaluation.results import Evaluation, summarize
from fwi.invert.batches import refine_batches
from fwi.invert.config import RefineConfig
from fwi.invert.dataset import dataset_config, read_samples
from fwi.metrics import data_misfit
from fwi.scoring import METRICS, velocity_scores


#: Models per `fwi.invert.refine` call (`fwi.invert.refine_batches`): deepwave keeps the wavefields of every shot of the
#: batch for the gradient (about 0.5 GB per salt70 model), and Adam steps each model on its own, so the size does not
#: change the result.
REFINE_BATCH = 4
#: Metrics of the side-by-side table: (key, heading, higher is better, format).
REFINE_TABLE = (("mae_ms", "MAE (m/s)", False, ".1f"), ("rmse_ms", "RMSE (m/s)", False, ".1f"),
                ("ssim", "SSIM", True, ".4f"), ("iou", "salt IoU", True, ".4f"), ("dice", "salt Dice", True, ".4f"),
                ("data_misfit", "data misfit", False, ".4f"))


@torch.no_grad()
def score_models(evaluation: Evaluation, positions: Sequence[int], velocity_ms: torch.Tensor,
                 salt_logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample metrics of other models (B, nz, nx) in m/s of the evaluated samples at ``positions``, computed as
    for the network's predictions: `fwi.scoring.velocity_scores` against the true velocity and mask, the salt mask
    ``salt_logits > 0``, and (when the evaluation has it) the data misfit against the observed gathers at the run's
    time decimation."""
    run = evaluation.run
    positions = list(positions)
    v = torch.as_tensor(velocity_ms, dtype=torch.float32).to(run.device)
    logits = torch.as_tensor(salt_logits, dtype=torch.float32).to(run.device)
    truth = torch.from_numpy(evaluation.true_velocity[positions]).float().to(run.device)
    mask = torch.from_numpy(evaluation.true_mask[positions]).float().to(run.device)
    scores = velocity_scores(v, truth, mask, logits, run.normalizer)
    if "data_misfit" in evaluation.metrics:
        observed = evaluation.observed(positions).to(run.device)
        scores["data_misfit"] = data_misfit(v, observed, evaluation.survey, run.time_decimation)
    return {k: scores[k].detach().cpu().double().numpy() for k in METRICS if k in scores}


@dataclass
class Refinement:
    """FWI refinement of some samples of an evaluated split: the network-only metrics of those samples (``before``,
    the evaluation's own numbers) and the refined models' (``after``, same names, scored the same way)."""

    evaluation: Evaluation = field(repr=False)
    positions: np.ndarray  # positions in the evaluation
    index: np.ndarray  # dataset indices
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    velocity: np.ndarray = field(repr=False)  # (k, nz, nx) refined models, m/s
    start: np.ndarray = field(repr=False)  # (k, nz, nx) the starts: the network's predictions clamped into the bounds
    salt_mask: np.ndarray = field(repr=False)  # (k, nz, nx) their salt mask in {0, 1}
    config: RefineConfig
    seconds: float  # wall time of the FWI iterations, all models
    iterations: int
    history: list[dict[str, Any]] = field(repr=False)  # per iteration, per-model values of all models
    salt_rule: str = ""

    def __len__(self) -> int:
        return len(self.index)

    @property
    def seconds_per_model(self) -> float:
        return self.seconds / max(1, len(self))

    def describe(self) -> str:
        """One line: how many models, which method, iterations and frequency stages, cost."""
        c = self.config
        stages = ", ".join("full band" if f is None else f"{f:g} Hz" for f in c.schedule)
        return (f"{len(self)} model(s) of the {self.evaluation.name} split (indices {_ranges(self.index)}), "
                f"parameterisation `{c.param}`, {self.iterations} iterations over the frequency stages {stages} "
                f"({c.optimizer}, {c.misfit} misfit, lr {c.lr:g} km/s); {self.seconds_per_model:.1f} s per model "
                f"(FWI iterations) on {self.evaluation.run.device}")

    def to_dict(self) -> dict[str, Any]:
        after, before = summarize(self.index, self.after), summarize(self.index, self.before)
        return {"n": len(self), "indices": [int(i) for i in self.index], "method": self.config.param,
                "iterations": self.iterations, "schedule": list(self.config.schedule), "seconds": self.seconds,
                "seconds_per_model": self.seconds_per_model, "salt_mask": self.salt_rule,
                "settings": self.config.to_dict(), **after, "before": before}

    def table(self) -> str:
        """Markdown table: mean ± std of each metric for the network and after FWI, the change of the mean and in
        how many models FWI improved it."""
        rows = []
        for key, title, higher, spec in REFINE_TABLE:
            if key not in self.after or key not in self.before:
                continue
            b, a = self.before[key], self.after[key]
            mb, ma = float(np.mean(b)), float(np.mean(a))
            change = format(ma - mb, "+" + spec) if higher else (f"{100 * (ma - mb) / mb:+.1f} %" if mb else "–")
            better = int(np.sum(a > b)) if higher else int(np.sum(a < b))
            rows.append(f"| {title} | {format(mb, spec)} ± {format(float(np.std(b)), spec)} | {format(ma, spec)} ± "
                        f"{format(float(np.std(a)), spec)} | {change} | {better}/{len(self)} |")
        return "\n".join(["| metric | network | after FWI | change | improved |", "|---|---|---|---|---|", *rows])

    def markdown(self) -> str:
        """refined.md: what was refined, the side-by-side table, how the numbers are defined."""
        ev = self.evaluation
        return "\n".join([
            f"# FWI refinement of `{ev.run.name}` (epoch {ev.run.epoch}) on the {ev.name} split", "",
            self.describe() + ".", "", self.table(), "",
            "- network: the run's prediction, as in the network-only evaluation (metrics.json, same samples); after "
            "FWI: `fwi.invert.refine` started from that prediction (clamped into the velocity bounds) against the "
            "split's gathers " + ("at full time sampling" if self.config.time_decimation == 1 else
                                  f"as the dataset stores them, decimated in time by {self.config.time_decimation}")
            + ", with the dataset's survey",
            "- mean ± std over the models; change: of the mean (relative for errors, absolute for SSIM / IoU / Dice); "
            "improved: models where FWI made the metric better",
            f"- data misfit: ||d(v) - d_obs|| / ||d_obs||, the model re-modelled at the run's time decimation "
            f"({ev.run.time_decimation}) as in the network-only evaluation",
            f"- salt mask: network = its salt head (p > 0.5); after FWI = {self.salt_rule}",
            "- every setting of the refinement: metrics.json -> refined.settings (`fwi.invert.RefineConfig`)", ""])

    def figures(self, count: int = 4) -> dict[str, Any]:
        """Before / after velocity panels of the first ``count`` refined models, truth / start / refined / update /
        error change side by side, and the convergence curves."""
        ev, k = self.evaluation, min(count, len(self))
        pos = list(self.positions[:k])
        vrange = (ev.run.normalizer.v_min, ev.run.normalizer.v_max)

        def titles(label: str, metrics: dict[str, np.ndarray]) -> list[str]:
            return [f"#{int(self.index[j])} {label} (MAE {metrics['mae_ms'][j]:.0f} m/s, IoU {metrics['iou'][j]:.2f})"
                    for j in range(k)]

        return {"refined-before.png": viz.velocity_panels(ev.true_velocity[pos], ev.pred_velocity[pos],
                                                          ev.true_mask[pos], ev.pred_mask[pos],
                                                          titles("network", self.before), ev.survey.dx, vrange),
                "refined-after.png": viz.velocity_panels(ev.true_velocity[pos], self.velocity[:k], ev.true_mask[pos],
                                                         self.salt_mask[:k], titles("after FWI", self.after),
                                                         ev.survey.dx, vrange),
                "refined-comparison.png": viz.refinement_panels(
                    ev.true_velocity[pos], self.start[:k], self.velocity[:k], ev.true_mask[pos],
                    [f"#{int(i)}" for i in self.index[:k]], ev.survey.dx, vrange),
                "refined-convergence.png": self.convergence_figure()}

    def convergence_figure(self):
        """Mean stage misfit (the low-passed data of each frequency stage) and mean MAE per iteration."""
        return viz.fwi_convergence(self.history, f"{self.evaluation.run.name}: FWI from the network's prediction "
                                                 f"({len(self)} model(s))")


def _ranges(index: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    values = [int(i) for i in index]
    if not values:
        return ""
    parts: list[str] = []
    start = prev = values[0]
    for i in values[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    return ", ".join(parts)


def refine_split(evaluation: Evaluation, config: RefineConfig | None = None, indices: Sequence[int] | None = None,
                 batch_size: int = REFINE_BATCH, progress: bool | None = None) -> Refinement:
    """Refine the network's predictions of an evaluated split by FWI (`fwi.invert.refine`) and score them.

    Start: the run's prediction of each sample (clamped into the refinement's velocity bounds) and its salt head (for
    the salt parameterisations); observed: the split's gathers as the dataset stores them (decoded, at its time
    decimation); the survey: the dataset's. ``indices``: dataset indices to refine (default every evaluated sample).
    ``before`` holds the evaluation's metrics of those samples, ``after`` the refined models' (`score_models`); the
    refined salt mask is the parameterisation's salt variable where it has one, else velocity > `SALT_THRESHOLD`.
    """
    if "dataset" not in evaluation.meta:
        raise ValueError("FWI refinement needs a split evaluation (evaluate_split): external models have no observed "
                         "gathers")
    run = evaluation.run
    config, info = dataset_config(config or RefineConfig(), evaluation.meta["dataset"])
    where = {int(i): p for p, i in enumerate(evaluation.index)}
    chosen = [int(i) for i in evaluation.index] if indices is None else list(dict.fromkeys(int(i) for i in indices))
    missing = [i for i in chosen if i not in where]
    if missing or not chosen:
        raise ValueError(f"samples {missing[:5]} were not evaluated" if missing else "nothing to refine")
    if config.param == "network" and info.survey != run.survey:
        raise ValueError("param 'network' needs the dataset modelled with the run's survey")
    positions = np.array([where[i] for i in chosen])
    bounds = (config.vmin, config.upper(info.survey))
    chunks = [positions[first:first + batch_size] for first in range(0, len(positions), batch_size)]
    starts, logits = [], []
    for chunk in chunks:  # the network's predictions, in the refinement's chunks
        out = run.predict(evaluation.inputs(chunk))
        starts.append(run.normalizer.velocity_inverse(out["velocity"][:, 0]).clamp(*bounds).cpu())
        logits.append(out["salt_logits"][:, 0].cpu())
    start, start_logits = torch.cat(starts), torch.cat(logits)
    observed = read_samples(info.path, evaluation.meta["split"], evaluation.index[positions],
                            config.time_decimation).gathers
    result = refine_batches(run if config.param == "network" else info.survey, observed, start,
                            torch.sigmoid(start_logits), config, batch_size=batch_size,
                            truth=torch.from_numpy(evaluation.true_velocity[positions]),
                            truth_mask=torch.from_numpy(evaluation.true_mask[positions]).float(),
                            normalizer=run.normalizer, start_salt_logits=start_logits, device=run.device,
                            progress=progress, desc=f"FWI {run.name}")
    v, salt_variable = torch.from_numpy(result.velocity), result.salt_prob is not None
    salt_logits = (v - SALT_THRESHOLD if not salt_variable else
                   torch.logit(torch.from_numpy(result.salt_prob).clamp(1e-6, 1 - 1e-6)))
    scores = [score_models(evaluation, chunk, v[first:first + len(chunk)], salt_logits[first:first + len(chunk)])
              for first, chunk in zip(range(0, len(positions), batch_size), chunks)]  # scored in the same chunks
    after = {k: np.concatenate([s[k] for s in scores]) for k in scores[0]}
    rule = (f"the salt variable of the `{config.param}` parameterisation (p > 0.5)" if salt_variable else
            f"velocity > {SALT_THRESHOLD:g} m/s")
    return Refinement(evaluation=evaluation, positions=positions, index=evaluation.index[positions],
                      before={k: values[positions] for k, values in evaluation.metrics.items()}, after=after,
                      velocity=result.velocity.astype(np.float32), start=result.start.astype(np.float32),
                      salt_mask=(salt_logits > 0).numpy().astype(np.uint8),
                      config=config, seconds=result.seconds, iterations=result.iterations, history=result.history,
                      salt_rule=rule)
