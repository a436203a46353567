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

``--no-misfit`` skips the data misfit (one forward modelling per sample), ``--no-figures`` writes metrics.json only.
A progress bar over the batches shows on a terminal. Library use (notebooks, the ablation runner): `load_run`
(`fwi.run`), `evaluate_split` / `evaluate_models` (an `Evaluation` with per-sample metrics, predictions and figure
helpers, scored by `fwi.scoring`) and `write_report`. Model files are read by `fwi.io.velocity_files`.

Problems with the input (missing or damaged checkpoint, shape mismatch, NaN in a model) print one ``error:`` line
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
from dataclasses import dataclass, field
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
from fwi.io.velocity_files import load_velocity_file, resample_models  # noqa: F401  (library use)
from fwi.physics import Survey
from fwi.scoring import METRICS, score_batches
from fwi.run import LoadedRun, find_run, load_run  # noqa: F401  (load_run / find_run: library use)

#: Metrics drawn in the histogram.
HISTOGRAM_METRICS = ("mae_ms", "rmse_ms", "ssim", "iou", "data_misfit")
HIGHER_IS_BETTER = {"ssim", "iou", "dice"}


# ---------------------------------------------------------------------------------------------------- results
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
        per_sample = self.per_sample()
        mean = {k: float(np.mean([s[k] for s in per_sample])) for k in self.metrics}
        pooled = {}
        if "mse" in mean:  # data-set RMSE: root of the mean MSE (not the mean of per-sample RMSEs)
            pooled = {"rmse": math.sqrt(mean["mse"]), "rmse_ms": math.sqrt(mean["mse_ms"])}
        return {**self.meta, "name": self.name, "checkpoint": str(self.run.checkpoint), "epoch": self.run.epoch,
                "n": len(self), "mean": mean, "std": self.std(), "pooled": pooled,
                "ranked_by_mae": {k: int(self.index[p]) for k, p in self.ranked("mae").items()},
                "per_sample": per_sample}

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


def evaluate_split(run: LoadedRun, split: str = "test", data: str | os.PathLike | None = None,
                   batch_size: int | None = None, misfit: bool = True, samples: Sequence[int] | None = None,
                   progress: bool | None = None) -> Evaluation:
    """Per-sample metrics of the run on one split of an fwi dataset (default: the dataset it was trained on).

    ``samples``: dataset indices to evaluate (default all). ``misfit``: also re-model every prediction for the data
    misfit (one forward modelling per sample).
    """
    path = Path(data or run.data)
    if not str(path) or not path.exists():
        hint = "" if data else " (the path recorded in the checkpoint); pass --data PATH"
        raise FileNotFoundError(f"dataset {path} does not exist{hint}")
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


def write_report(evaluation: Evaluation, out: str | os.PathLike, figures: bool = True) -> Path:
    """Figures of the worst / median / best samples by MAE and the metric histogram (unless ``figures=False``),
    then ``metrics.json`` (last, atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        _write_figures(evaluation, out)
    write_json(evaluation.to_dict(), out / "metrics.json")
    return out / "metrics.json"


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
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    run = load_run(args.run, args.device)
    out = Path(args.out) if args.out else run.run_dir / f"eval-{args.split}"
    inside = out.resolve().is_relative_to(run.run_dir.resolve())
    with run_lock(run.run_dir) if inside else contextlib.nullcontext():  # a training of the run must not run now
        return _evaluate(args, run, out)


def _evaluate(args: argparse.Namespace, run: LoadedRun, out: Path) -> int:
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
    report = write_report(evaluation, out, args.figures)
    print(evaluation.table())
    print(f"results: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
