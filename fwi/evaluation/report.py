"""The evaluation folder: figures of the worst / median / best samples, the refinement's outputs and metrics.json
(`write_report`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fwi import viz
from fwi.atomic import atomic_path, write_text
from fwi.evaluation.refinement import Refinement
from fwi.evaluation.results import Evaluation


#: Outputs of a refinement in the evaluation folder (removed when the folder is rewritten without one).
REFINE_FILES = ("refined.md", "refined.npy", "refined-before.png", "refined-after.png", "refined-comparison.png",
                "refined-convergence.png")


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
