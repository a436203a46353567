"""Evaluate a trained run on a data split or on external velocity models.

    python -m fwi.evaluate runs/unet-ca-skip-s0                       # test split -> runs/unet-ca-skip-s0/eval-test/
    python -m fwi.evaluate runs/r1/last.pt --split val --data data/other.h5 --out /tmp/eval
    python -m fwi.evaluate runs/r1 --models marmousi.sgy salt.npy --resample

Split mode (default) writes ``<out>/metrics.json`` (mean, std and the per-sample list of MAE / MSE / RMSE / SSIM on
the normalised scale and in m/s, salt IoU / Dice and the data misfit of the prediction re-modelled with the run's
survey) and figures of the worst, median and best samples by MAE (``worst.png`` / ``worst-gathers.png``, ...) and
``histogram.png`` (per-sample metric distribution). ``<out>`` defaults to ``<run_dir>/eval-<split>/``.

External mode (``--models FILE ...``) evaluates only the given models, not the split: each is forward-modelled with
the run's survey, decimated and normalised as in training, inverted by the network and scored against itself (salt
mask = velocity >= 4400 m/s); results go to ``<out>/external/<file stem>/``. Accepted files: ``.npy`` ((nz, nx),
(N, nz, nx) or (N, 1, nz, nx) in m/s), ``.h5`` / ``.hdf5`` (an fwi dataset: the velocity of ``--split``; or a plain
HDF5 file with one 2D/3D/4D dataset, or the one named by ``--key``) and SEG-Y (``.sgy`` / ``.segy``, as written by
`fwi.io.segy.write_velocity`). Models of another size are an error unless ``--resample`` (bilinear) is given.

Refinement (``--refine``): after the network-only evaluation of the split, the network's predictions are refined
by FWI (`fwi.invert.refine`; start: the prediction, observed: the split's gathers at full time sampling, survey: the
dataset's) and scored with the same metrics; ``<out>/metrics.json`` gains a ``refined`` section (``before``: the
network-only numbers of the same samples, ``mean`` / ``std`` / ``pooled`` / ``per_sample`` after FWI, the settings,
seconds per model), ``<out>/refined.md`` the side-by-side table, plus refined.npy and refined-before / -after /
-convergence figures. The method is fwi.invert's default (`RefineConfig`); ``--refine-iterations``,
``--refine-schedule 4,8,12,full``, ``--refine-method`` and ``--refine-indices 0:24`` (a subset: FWI costs ~0.6 s per
iteration and salt70 model on a CPU) change it.

``--no-misfit`` skips the data misfit (one forward modelling per sample), ``--no-figures`` writes metrics.json only.
A progress bar over the batches shows on a terminal. Library use (notebooks, the ablation runner): `load_run`
(`fwi.run`), `evaluate_split` / `evaluate_models` (an `Evaluation` with per-sample metrics, predictions and figure
helpers, scored by `fwi.scoring`) and `write_report`. Model files are read by `fwi.io.velocity_files`.

Problems with the input (missing or damaged checkpoint, shape mismatch, NaN in a model, refinement settings the data
cannot take: iterations <= 0, indices outside the split, a cut-off above Nyquist) print one ``error:`` line
and exit with status 2; metrics.json is written last, atomically, so a failed run leaves no half-written results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from fwi import viz
from fwi.atomic import atomic_path, write_text
from fwi.cli import friendly_errors
from fwi.lock import run_lock
from fwi.data.dataset import SALT_THRESHOLD, FWIDataset
from fwi.data.store import read_info
from fwi.invert import RefineConfig, refine
from fwi.invert.cli import parse_indices, parse_schedule
from fwi.invert.filters import FrequencyError
from fwi.invert.params import PARAMETERISATIONS
from fwi.io.velocity_files import load_velocity_file, resample_models  # noqa: F401  (library use)
from fwi.metrics import data_misfit
from fwi.physics import Survey
from fwi.scoring import METRICS, sample_scores, score_batches
from fwi.run import LoadedRun, find_run, load_run  # noqa: F401  (load_run / find_run: library use)

#: Metrics drawn in the histogram.
HISTOGRAM_METRICS = ("mae_ms", "rmse_ms", "ssim", "iou", "data_misfit")
HIGHER_IS_BETTER = {"ssim", "iou", "dice"}


# ---------------------------------------------------------------------------------------------------- results
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


# ---------------------------------------------------------------------------------------------------- scoring
def _score(run: LoadedRun, batches: Iterable[dict[str, Any]], survey: Survey, misfit: bool) -> dict[str, Any]:
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


def _batch(index, raw: torch.Tensor, velocity_ms: torch.Tensor, mask: torch.Tensor, normalizer) -> dict[str, Any]:
    """A `fwi.scoring` batch of raw decimated gathers (B, S, T', R), velocity (B, nz, nx) m/s and mask (B, nz, nx)."""
    velocity_ms, mask = velocity_ms.float(), mask.float()
    return {"index": index, "gathers": normalizer.gathers(raw), "observed": raw,
            "velocity": normalizer.velocity(velocity_ms)[:, None], "salt_mask": mask[:, None],
            "velocity_ms": velocity_ms, "mask": mask}


def _progress(iterable, total: int, desc: str, progress: bool | None):
    # disable=None: a bar only on a terminal (quiet in logs, tests and notebooks without widgets).
    return tqdm(iterable, total=total, desc=desc, disable=None if progress is None else not progress,
                dynamic_ncols=True, leave=False)


def dataset_path(run: LoadedRun, data: str | os.PathLike | None = None) -> Path:
    """The dataset to evaluate on: ``data``, else the one recorded in the run's checkpoint; it must exist."""
    path = Path(data or run.data)
    if not str(path) or not path.exists():
        hint = "" if data else " (the path recorded in the checkpoint); pass --data PATH"
        raise FileNotFoundError(f"dataset {path} does not exist{hint}")
    return path


def evaluate_split(run: LoadedRun, split: str = "test", data: str | os.PathLike | None = None,
                   batch_size: int | None = None, misfit: bool = True, samples: Sequence[int] | None = None,
                   progress: bool | None = None) -> Evaluation:
    """Per-sample metrics of the run on one split of an fwi dataset (default: the dataset it was trained on).

    ``samples``: dataset indices to evaluate (default all). ``misfit``: also re-model every prediction for the data
    misfit (one forward modelling per sample).
    """
    path = dataset_path(run, data)
    batch_size = _batch_size(run, batch_size)
    raw_set = FWIDataset(path, split, normalize=False, time_decimation=run.time_decimation)
    shape = tuple(raw_set.survey.data_shape)
    shape = (shape[0], math.ceil(shape[1] / run.time_decimation), shape[2])
    if shape != run.data_shape or raw_set.survey.shape != run.grid:
        raise ValueError(f"{path} ({split}) holds gathers {shape} on a {raw_set.survey.shape} grid after time "
                         f"decimation {run.time_decimation}, but {run.name} was trained on {run.data_shape} on "
                         f"{run.grid}")
    if raw_set.survey != run.survey:
        warnings.warn(f"{path} was modelled with another survey than {run.name}'s training data; predictions are "
                      "re-modelled with the dataset's survey", stacklevel=2)
    indices = list(range(len(raw_set))) if samples is None else [int(i) for i in samples]
    bad = [i for i in indices if not 0 <= i < len(raw_set)]
    if bad:
        raise ValueError(f"sample indices {bad[:5]} are outside the {split} split (0 .. {len(raw_set) - 1})")
    normalizer = run.normalizer
    loader = DataLoader(Subset(raw_set, indices), batch_size=batch_size)

    def batches() -> Iterator[dict[str, Any]]:
        for b in _progress(loader, len(loader), f"{run.name} {split}", progress):
            yield _batch(b["index"].numpy(), b["gathers"], b["velocity"][:, 0], b["salt_mask"][:, 0], normalizer)

    result = _score(run, batches(), raw_set.survey, misfit)

    def observed(positions: Sequence[int]) -> torch.Tensor:
        return torch.stack([raw_set[int(result["index"][p])]["gathers"] for p in positions])

    def inputs(positions: Sequence[int]) -> torch.Tensor:
        return normalizer.gathers(observed(positions))

    return Evaluation(name=split, run=run, survey=raw_set.survey, index=result["index"], metrics=result["metrics"],
                      true_velocity=result["true_v"], pred_velocity=result["pred_v"], true_mask=result["true_m"],
                      pred_mask=result["pred_m"], inputs=inputs, observed=observed,
                      meta={"split": split, "dataset": str(path.resolve()), "misfit": misfit})


def evaluate_models(run: LoadedRun, velocity: np.ndarray | torch.Tensor, name: str = "external",
                    batch_size: int | None = None, misfit: bool = True, salt_threshold: float = SALT_THRESHOLD,
                    progress: bool | None = None, meta: dict[str, Any] | None = None) -> Evaluation:
    """Forward-model velocities (N, nz, nx) in m/s on the run's grid with its survey, invert them and score.

    The pipeline is the training one: `forward_model` -> `decimate_time` -> the run's normaliser -> the network.
    The salt mask of a model is ``velocity >= salt_threshold``.
    """
    v = torch.as_tensor(np.asarray(velocity, dtype=np.float32))
    check_models(v.numpy(), run, name)
    batch_size = _batch_size(run, batch_size)
    normalizer = run.normalizer
    starts = range(0, len(v), batch_size)

    def batches() -> Iterator[dict[str, Any]]:
        for start in _progress(starts, len(starts), f"{run.name} {name}", progress):
            chunk = v[start:start + batch_size]
            raw = run.model_data(chunk).cpu()
            yield _batch(np.arange(start, start + len(chunk)), raw, chunk, (chunk >= salt_threshold).float(),
                         normalizer)

    result = _score(run, batches(), run.survey, misfit)

    def observed(positions: Sequence[int]) -> torch.Tensor:
        return run.model_data(v[list(positions)]).cpu()

    def inputs(positions: Sequence[int]) -> torch.Tensor:
        return normalizer.gathers(observed(positions))

    return Evaluation(name=name, run=run, survey=run.survey, index=result["index"], metrics=result["metrics"],
                      true_velocity=result["true_v"], pred_velocity=result["pred_v"], true_mask=result["true_m"],
                      pred_mask=result["pred_m"], inputs=inputs, observed=observed,
                      meta={**(meta or {}), "misfit": misfit, "salt_threshold": salt_threshold})


def _batch_size(run: LoadedRun, batch_size: int | None) -> int:
    size = batch_size or int(run.config.get("optim", {}).get("eval_batch_size", 32))
    if size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {size}")
    return size


# ---------------------------------------------------------------------------------------------------- refinement
#: Models per `fwi.invert.refine` call: deepwave keeps the wavefields of every shot of the batch for the gradient
#: (about 0.5 GB per salt70 model), and Adam steps each model on its own, so the size does not change the result.
REFINE_BATCH = 4
#: Parameterisations ``--refine-method`` accepts (`fwi.invert.params`, and the network as a prior).
REFINE_METHODS = (*PARAMETERISATIONS, "network")
#: Metrics of the side-by-side table: (key, heading, higher is better, format).
REFINE_TABLE = (("mae_ms", "MAE (m/s)", False, ".1f"), ("rmse_ms", "RMSE (m/s)", False, ".1f"),
                ("ssim", "SSIM", True, ".4f"), ("iou", "salt IoU", True, ".4f"), ("dice", "salt Dice", True, ".4f"),
                ("data_misfit", "data misfit", False, ".4f"))
#: Outputs of a refinement in the evaluation folder (removed when the folder is rewritten without one).
REFINE_FILES = ("refined.md", "refined.npy", "refined-before.png", "refined-after.png", "refined-convergence.png")


def refine_config(iterations: int | None = None, schedule: Sequence[float | None] | None = None,
                  method: str | None = None) -> RefineConfig:
    """`fwi.invert.RefineConfig` (its defaults are the method as measured best) with only the given settings changed."""
    if iterations is not None and iterations < 1:
        raise ValueError(f"--refine-iterations must be >= 1, got {iterations}")
    if method is not None and method not in REFINE_METHODS:
        raise ValueError(f"--refine-method {method!r}: choose one of {', '.join(REFINE_METHODS)}")
    changes = {"iterations": iterations, "schedule": None if schedule is None else tuple(schedule), "param": method}
    return replace(RefineConfig(), **{k: v for k, v in changes.items() if v is not None})


def parse_refine_schedule(text: str) -> tuple[float | None, ...]:
    """``4,8,12,full`` -> (4.0, 8.0, 12.0, None): the stages' low-pass cut-offs in Hz, ``full`` = full band."""
    try:
        return parse_schedule(text)
    except ValueError:
        raise ValueError(f"--refine-schedule {text!r}: give low-pass cut-offs in Hz and 'full' separated by commas, "
                         "e.g. 4,8,12,full") from None


def parse_refine_indices(text: str, n: int, split: str = "test") -> list[int]:
    """``0:24`` or ``0,3,7`` -> dataset indices of a split of ``n`` samples (duplicates dropped, order kept)."""
    try:
        indices = parse_indices(text, n)
    except ValueError:
        indices = []
    if not indices:
        raise ValueError(f"--refine-indices {text!r} selects nothing or leaves the {split} split (0 .. {n - 1}); "
                         "use e.g. 0:24 or 0,3,7")
    return list(dict.fromkeys(indices))


def _stored_config(config: RefineConfig, path: str | os.PathLike) -> tuple[RefineConfig, Any]:
    """``config`` for the observed gathers as the dataset stores them (full rate, or decimated by k in a compact
    file), checked against the dataset's survey (frequencies below Nyquist, ...); and the dataset's `DatasetInfo`."""
    info = read_info(path)
    config = replace(config, time_decimation=info.storage.time_decimation)
    config.validate(info.survey)
    return config, info


def prepare_refinement(run: LoadedRun, split: str = "test", data: str | os.PathLike | None = None,
                       config: RefineConfig | None = None, indices: str | None = None
                       ) -> tuple[RefineConfig, list[int] | None]:
    """Check a refinement against the dataset before anything runs: the checked config and the dataset indices to
    refine (None: every sample of the split); ``indices`` as ``--refine-indices`` takes them."""
    path = dataset_path(run, data)
    try:
        config, info = _stored_config(config or RefineConfig(), path)
    except FrequencyError as exc:
        raise FrequencyError(f"--refine-schedule: {exc}") from None
    if split not in info.sizes:
        raise ValueError(f"{path} has no {split!r} split (it has {', '.join(info.sizes) or 'none'})")
    chosen = None if indices is None else parse_refine_indices(indices, info.sizes[split], split)
    if config.param == "network" and info.survey != run.survey:
        raise ValueError(f"--refine-method network re-runs {run.name}'s network, but {path} was modelled with another "
                         "survey than its training data; choose another method")
    return config, chosen


@torch.no_grad()
def score_models(evaluation: Evaluation, positions: Sequence[int], velocity_ms: torch.Tensor,
                 salt_logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample metrics of other models (B, nz, nx) in m/s of the evaluated samples at ``positions``, computed as
    for the network's predictions: `fwi.scoring.sample_scores` against the true velocity and mask, the salt mask
    ``salt_logits > 0``, and (when the evaluation has it) the data misfit against the observed gathers at the run's
    time decimation."""
    run, normalizer = evaluation.run, evaluation.run.normalizer
    positions = list(positions)
    v = torch.as_tensor(velocity_ms, dtype=torch.float32).to(run.device)
    pred = {"velocity": normalizer.velocity(v)[:, None],
            "salt_logits": torch.as_tensor(salt_logits, dtype=torch.float32).to(run.device)[:, None]}
    truth = normalizer.velocity(torch.from_numpy(evaluation.true_velocity[positions]).float().to(run.device))
    mask = torch.from_numpy(evaluation.true_mask[positions]).float().to(run.device)
    scores = sample_scores(pred, truth[:, None], mask[:, None], normalizer)
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
            "split's gathers at full time sampling, with the dataset's survey",
            "- mean ± std over the models; change: of the mean (relative for errors, absolute for SSIM / IoU / Dice); "
            "improved: models where FWI made the metric better",
            f"- data misfit: ||d(v) - d_obs|| / ||d_obs||, the model re-modelled at the run's time decimation "
            f"({ev.run.time_decimation}) as in the network-only evaluation",
            f"- salt mask: network = its salt head (p > 0.5); after FWI = {self.salt_rule}",
            "- every setting of the refinement: metrics.json -> refined.settings (`fwi.invert.RefineConfig`)", ""])

    def figures(self, count: int = 4) -> dict[str, Any]:
        """Before / after velocity panels of the first ``count`` refined models and the convergence curves."""
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
                "refined-convergence.png": self.convergence_figure()}

    def convergence_figure(self):
        """Mean stage misfit (the low-passed data of each frequency stage) and mean MAE per iteration."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
        it = [h["iteration"] for h in self.history]
        if it:
            axes[0].semilogy(it, [np.mean(h["misfit"]) for h in self.history])
            if "mae_ms" in self.history[0]:
                axes[1].plot(it, [np.mean(h["mae_ms"]) for h in self.history])
            for h, prev in zip(self.history[1:], self.history):
                if h["stage"] != prev["stage"]:
                    for ax in axes:
                        ax.axvline(prev["iteration"] + 0.5, color="0.7", lw=0.8, ls="--")
        axes[0].set(xlabel="iteration", ylabel="stage misfit (mean)")
        axes[1].set(xlabel="iteration", ylabel="MAE (m/s, mean)")
        fig.suptitle(f"{self.evaluation.run.name}: FWI from the network's prediction ({len(self)} model(s))",
                     fontsize=9)
        return fig


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


def _merge_history(histories: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-iteration records of batches refined one after the other as one record list over all their models."""
    merged = []
    for entries in zip(*histories):
        entry = dict(entries[0])
        for key in ("misfit", "mae_ms", "ssim", "iou"):
            if key in entry:
                entry[key] = [x for e in entries for x in e[key]]
        entry["seconds"] = sum(e["seconds"] for e in entries)
        entry["n_evals"] = sum(e["n_evals"] for e in entries)
        merged.append(entry)
    return merged


def refine_split(evaluation: Evaluation, config: RefineConfig | None = None, indices: Sequence[int] | None = None,
                 batch_size: int = REFINE_BATCH, progress: bool | None = None) -> Refinement:
    """Refine the network's predictions of an evaluated split by FWI (`fwi.invert.refine`) and score them.

    Start: the run's prediction of each sample (clamped into the refinement's velocity bounds) and its salt head (for
    the salt parameterisations); observed: the split's gathers as the dataset stores them (full time sampling); the
    survey: the dataset's. ``indices``: dataset indices to refine (default every evaluated sample). ``before`` holds
    the evaluation's metrics of those samples, ``after`` the refined models' (`score_models`); the refined salt mask
    is the parameterisation's salt variable where it has one, else velocity > `SALT_THRESHOLD`.
    """
    if "dataset" not in evaluation.meta:
        raise ValueError("FWI refinement needs a split evaluation (evaluate_split): external models have no observed "
                         "gathers at full time sampling")
    run = evaluation.run
    config, info = _stored_config(config or RefineConfig(), evaluation.meta["dataset"])
    where = {int(i): p for p, i in enumerate(evaluation.index)}
    chosen = [int(i) for i in evaluation.index] if indices is None else list(dict.fromkeys(int(i) for i in indices))
    missing = [i for i in chosen if i not in where]
    if missing or not chosen:
        raise ValueError(f"samples {missing[:5]} were not evaluated" if missing else "nothing to refine")
    if config.param == "network" and info.survey != run.survey:
        raise ValueError("param 'network' needs the dataset modelled with the run's survey")
    positions = np.array([where[i] for i in chosen])
    raw = FWIDataset(info.path, evaluation.meta["split"], normalize=False, time_decimation=config.time_decimation)
    bounds = (config.vmin, config.upper(info.survey))
    velocity, salt, scores, histories, seconds, iterations = [], [], [], [], 0.0, 0
    for first in range(0, len(positions), batch_size):
        chunk = positions[first:first + batch_size]
        out = run.predict(evaluation.inputs(chunk))
        start = run.normalizer.velocity_inverse(out["velocity"][:, 0]).clamp(*bounds).cpu()
        logits = out["salt_logits"][:, 0].cpu()
        observed = torch.stack([raw[int(evaluation.index[p])]["gathers"] for p in chunk])
        result = refine(run if config.param == "network" else info.survey, observed, start, torch.sigmoid(logits),
                        config, truth=torch.from_numpy(evaluation.true_velocity[chunk]),
                        truth_mask=torch.from_numpy(evaluation.true_mask[chunk]).float(), normalizer=run.normalizer,
                        start_salt_logits=logits, device=run.device, progress=progress,
                        desc=f"FWI {run.name} {first + 1}-{first + len(chunk)}/{len(positions)}")
        v, salt_variable = torch.from_numpy(result.velocity), result.salt_prob is not None
        salt_logits = (v - SALT_THRESHOLD if not salt_variable else
                       torch.logit(torch.from_numpy(result.salt_prob).clamp(1e-6, 1 - 1e-6)))
        scores.append(score_models(evaluation, chunk, v, salt_logits))
        velocity.append(result.velocity.astype(np.float32))
        salt.append((salt_logits > 0).numpy().astype(np.uint8))
        histories.append(result.history)
        seconds, iterations = seconds + result.seconds, result.iterations
    after = {k: np.concatenate([s[k] for s in scores]) for k in scores[0]}
    rule = (f"the salt variable of the `{config.param}` parameterisation (p > 0.5)" if salt_variable else
            f"velocity > {SALT_THRESHOLD:g} m/s")
    return Refinement(evaluation=evaluation, positions=positions, index=evaluation.index[positions],
                      before={k: values[positions] for k, values in evaluation.metrics.items()}, after=after,
                      velocity=np.concatenate(velocity), salt_mask=np.concatenate(salt), config=config,
                      seconds=seconds, iterations=iterations, history=_merge_history(histories), salt_rule=rule)


# ---------------------------------------------------------------------------------------------------- external
def check_models(velocity: np.ndarray, run: LoadedRun, source: str = "the models") -> None:
    """Raise ValueError (`fwi.physics.SurveyError`) for (N, nz, nx) models that do not fit the run's grid or cannot
    be propagated by its survey (`Survey.check_velocity`)."""
    if velocity.ndim != 3:
        raise ValueError(f"{source}: expected (N, nz, nx) velocity models, got shape {velocity.shape}")
    run.survey.check_velocity(velocity, name=source, shape_hint="; pass --resample to resample them bilinearly")


def prepare_external(path: str | os.PathLike, run: LoadedRun, key: str | None = None, split: str = "test",
                     resample: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Load, (optionally) resample and check the models of one file; returns them and a description for the report."""
    path = Path(path)
    velocity, dx = load_velocity_file(path, key, split)
    meta: dict[str, Any] = {"source": str(path.resolve()), "original_shape": list(velocity.shape[1:])}
    if resample:  # before resampling, which would smear a NaN; the grid is checked after it
        run.survey.check_velocity(velocity, name=str(path), check_shape=False)
    if dx is not None and not math.isclose(dx, run.survey.dx, rel_tol=1e-6):
        meta["file_dx"] = dx
        print(f"note: {path} has {dx:g} m cells, the run's survey {run.survey.dx:g} m; the model is used on the run's "
              "grid" + (" after resampling" if resample else " cell for cell"), file=sys.stderr)
    if resample and tuple(velocity.shape[1:]) != run.grid:
        velocity = resample_models(velocity, run.grid)
        meta["resampled_to"] = list(run.grid)
    check_models(velocity, run, str(path))
    lo, hi = float(velocity.min()), float(velocity.max())
    if lo < run.normalizer.v_min - 1 or hi > run.normalizer.v_max + 1:
        print(f"note: {path} spans {lo:.0f}-{hi:.0f} m/s, outside the training range {run.normalizer.v_min:.0f}-"
              f"{run.normalizer.v_max:.0f} m/s that the network can predict", file=sys.stderr)
    return velocity, meta


# ---------------------------------------------------------------------------------------------------- reports
def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        viz.save(fig, tmp)


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=1))


def write_report(evaluation: Evaluation, out: str | os.PathLike, figures: bool = True,
                 refinement: Refinement | None = None) -> Path:
    """Figures of the worst / median / best samples by MAE and the metric histogram (unless ``figures=False``),
    then ``metrics.json`` (last, atomically).

    With a ``refinement``: also refined.md (side-by-side table), refined.npy (the refined models, in the order of
    ``refined.indices``), its figures, and a ``refined`` section in metrics.json. Without one, the refinement outputs
    of an earlier run in ``out`` are removed (metrics.json no longer describes them).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        _write_figures(evaluation, out)
    data = evaluation.to_dict()
    if refinement is None:
        for name in REFINE_FILES:
            (out / name).unlink(missing_ok=True)
    else:
        _write_refinement(refinement, out, figures)
        data["refined"] = refinement.to_dict()
    write_json(data, out / "metrics.json")
    return out / "metrics.json"


def _write_refinement(refinement: Refinement, out: Path, figures: bool) -> None:
    with atomic_path(out / "refined.npy") as tmp:
        np.save(tmp, refinement.velocity)
    for name in REFINE_FILES[2:]:
        (out / name).unlink(missing_ok=True)
    if figures:
        for name, fig in refinement.figures().items():
            _save_figure(fig, out / name)
    write_text(out / "refined.md", refinement.markdown())


def _write_figures(evaluation: Evaluation, out: Path) -> None:
    groups: dict[int, list[str]] = {}
    for label, position in evaluation.ranked("mae").items():
        groups.setdefault(position, []).append(label)
    for position, labels in groups.items():  # one sample can be worst, median and best at once: draw it once
        title = "/".join(labels)
        first = labels[0]
        _save_figure(evaluation.velocity_figure([position], [title]), out / f"{first}.png")
        _save_figure(evaluation.gather_figure(position, label=title), out / f"{first}-gathers.png")
        for label in labels[1:]:
            for suffix in (".png", "-gathers.png"):
                _copy(out / f"{first}{suffix}", out / f"{label}{suffix}")
    _save_figure(evaluation.histogram_figure(), out / "histogram.png")


def _unique_dirs(paths: Sequence[Path]) -> list[str]:
    names, seen = [], set()
    for p in paths:
        name = p.stem if p.stem not in seen else f"{p.stem}-{p.suffix.lstrip('.')}"
        k = 2
        while name in seen:
            name, k = f"{p.stem}-{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fwi.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (uses its best.pt) or checkpoint file")
    p.add_argument("--split", default="test", help="split to evaluate (default: test); with --models, the split "
                   "read from fwi-dataset .h5 model files")
    p.add_argument("--data", default=None, help="dataset file (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default=None, help="output directory (default: <run_dir>/eval-<split>/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's eval_batch_size")
    p.add_argument("--models", nargs="+", default=None, metavar="FILE",
                   help="external velocity models (.npy, .h5, .sgy) to evaluate instead of the split")
    p.add_argument("--key", default=None, help="dataset inside a plain HDF5 model file")
    p.add_argument("--resample", action="store_true", help="bilinearly resample models of another size to the grid")
    p.add_argument("--no-misfit", dest="misfit", action="store_false",
                   help="skip the data misfit (saves one forward modelling per sample)")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write metrics.json only")
    defaults = RefineConfig()
    r = p.add_argument_group("FWI refinement (fwi.invert) of the network's predictions; defaults: fwi.invert's")
    r.add_argument("--refine", action="store_true",
                   help="after the network-only evaluation, refine its predictions by FWI and report both side by side "
                        "(refined.md, a 'refined' section in metrics.json)")
    r.add_argument("--refine-iterations", type=int, default=None, metavar="N",
                   help=f"FWI iterations per model, over all frequency stages (default {defaults.iterations})")
    r.add_argument("--refine-schedule", default=None, metavar="HZ,...",
                   help="low-pass cut-offs of the frequency stages, 'full' = full band (default "
                        f"{','.join('full' if f is None else f'{f:g}' for f in defaults.schedule)})")
    r.add_argument("--refine-method", default=None, metavar="|".join(REFINE_METHODS),
                   help="what FWI updates: the velocity cells, a salt-pinned or soft-salt model (fwi.invert.params), "
                        f"or the network's weights (default {defaults.param})")
    r.add_argument("--refine-indices", default=None, metavar="A:B|I,J,...",
                   help="dataset indices to refine (default: every sample of the split; ~0.6 s per iteration and "
                        "salt70 model on a CPU)")
    return p


REFINE_FLAGS = ("refine_iterations", "refine_schedule", "refine_method", "refine_indices")


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_flags(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    run = load_run(args.run, args.device)
    out = Path(args.out) if args.out else run.run_dir / f"eval-{args.split}"
    inside = out.resolve().is_relative_to(run.run_dir.resolve())
    with run_lock(run.run_dir) if inside else contextlib.nullcontext():  # a training of the run must not run now
        return _evaluate(args, run, out)


def _check_flags(args: argparse.Namespace) -> None:
    given = ["--" + f.replace("_", "-") for f in REFINE_FLAGS if getattr(args, f) is not None]
    if given and not args.refine:
        raise ValueError(f"{' '.join(given)} without --refine: add --refine to refine the predictions by FWI")
    if args.refine and args.models:
        raise ValueError("--refine refines the predictions of a split; it does not work with --models")
    if args.refine and not args.misfit:
        raise ValueError("--refine reports the data misfit before and after FWI; drop --no-misfit")


def _evaluate(args: argparse.Namespace, run: LoadedRun, out: Path) -> int:
    if args.refine:  # every setting is checked before anything runs
        schedule = None if args.refine_schedule is None else parse_refine_schedule(args.refine_schedule)
        config = refine_config(args.refine_iterations, schedule, args.refine_method)
        config, indices = prepare_refinement(run, args.split, args.data, config, args.refine_indices)
    if args.models:
        paths = [Path(m) for m in args.models]
        prepared = [prepare_external(p, run, args.key, args.split, args.resample) for p in paths]  # all checked first
        for path, name, (velocity, meta) in zip(paths, _unique_dirs(paths), prepared):
            evaluation = evaluate_models(run, velocity, name, args.batch_size, args.misfit, meta=meta)
            report = write_report(evaluation, out / "external" / name, args.figures)
            print(evaluation.table())
            print(f"results: {report}")
        return 0
    evaluation = evaluate_split(run, args.split, args.data, args.batch_size, args.misfit)
    refinement = refine_split(evaluation, config, indices) if args.refine else None
    report = write_report(evaluation, out, args.figures, refinement)
    print(evaluation.table())
    if refinement is not None:
        print(f"\nFWI refinement: {refinement.describe()}\n{refinement.table()}")
        print(f"refinement: {out / 'refined.md'}")
    print(f"results: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
