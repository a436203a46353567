"""Import SEG-Y shot gathers and/or velocity models into the HDF5 dataset layout (`fwi.data.store`).

    python -m fwi.io.importer --gathers SHOTS.sgy [...] --velocity VEL.sgy [...] --out data/x.h5 --split test

Each ``--gathers`` file is one sample: its field records are the S shots, which must all have the same receivers
(trace count and GroupX). Each ``--velocity`` file is one (nz, nx) model (`fwi.io.segy.write_velocity` layout) or a
MATLAB ``.mat`` file (FCNVMB / DD-Net SEGSimulation layout, `fwi.io.matfile`; each model in it is one sample, give
``--dx``).

* gathers and velocity: paired in order (the same number of files); the grid comes from the velocity files.
* gathers only: the grid needs ``--dx`` and ``--nz`` (``--nx`` defaults to the last receiver's cell + 1); the velocity
  array is a constant ``--placeholder-velocity`` and the file's ``generator`` attribute says so.
* velocity only: gathers are forward-modelled with `fwi.physics.forward_model` on a `Survey` of the model's grid
  and the ``--survey-*`` options (the `Survey` defaults otherwise).

The survey of imported gathers is built from the headers: nt and dt from the file, source and receiver x from
SourceX / GroupX (metres, minus ``--x-origin``). salt_mask = velocity >= ``--salt-threshold`` (4400 m/s). The
normalisation attribute holds the statistics of the imported data. Errors: one ``error: ...`` line on stderr,
exit code 2, no file written.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from fwi.data.dataset import SALT_THRESHOLD as DEFAULT_SALT_THRESHOLD
from fwi.data.store import SPLITS, RunningNormalisation, write_dataset
from fwi.io.matfile import read_mat_velocity
from fwi.io.segy import read_gathers, read_velocity, stack_gathers
from fwi.io.units import check_velocity_values
from fwi.physics import Survey, forward_model
from fwi.cli import ArgumentParser, friendly_errors


class ImportInputError(ValueError):
    """Inputs that do not fit together (reported as one error line by the CLI)."""


def gathers_geometry(path: Path, *, x_origin: float = 0.0) -> tuple[np.ndarray, dict]:
    """(S, T, R) gathers of one file and its geometry: nt, dt, source_x (S,), receiver_x (R,) in metres."""
    gathers = read_gathers(path)
    data = stack_gathers(gathers, path)
    receivers = gathers[0].receiver_x
    for g in gathers:
        if np.unique(g.source_x).size != 1:
            raise ImportInputError(f"{path}: field record {g.field_record} has traces with different SourceX")
        if not np.array_equal(g.receiver_x, receivers):
            raise ImportInputError(f"{path}: field record {g.field_record} has different receiver positions (GroupX) "
                               f"from record {gathers[0].field_record}; the layout needs one receiver spread")
    geometry = {"nt": data.shape[1], "dt": gathers[0].dt,
                "source_x": tuple(float(g.source_x[0]) - x_origin for g in gathers),
                "receiver_x": tuple(float(x) - x_origin for x in receivers)}
    return data, geometry


def import_segy(
    out: str | Path,
    *,
    split: str,
    gathers: Sequence[str | Path] = (),
    velocity: Sequence[str | Path] = (),
    nz: int | None = None,
    nx: int | None = None,
    dx: float | None = None,
    x_origin: float = 0.0,
    salt_threshold: float = DEFAULT_SALT_THRESHOLD,
    placeholder_velocity: float = 1500.0,
    max_velocity: float | None = None,
    survey_options: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Build the arrays and the survey, then write them with `write_dataset`; returns the output path."""
    out = Path(out)
    check_request(out, split, gathers, velocity, overwrite)
    models, (nz, nx, dx) = read_models(velocity, (nz, nx, dx))
    data, geometry = read_gather_files(gathers, x_origin)
    if geometry is not None and not velocity:
        if dx is None or nz is None:
            raise ImportInputError("importing gathers without a velocity model needs the grid: give --dx and --nz")
        if nx is None:
            nx = int(round(max(geometry["source_x"] + geometry["receiver_x"]) / dx)) + 1
    vmax = max((float(v.max()) for v in models), default=placeholder_velocity)
    survey = import_survey(nz, nx, dx, geometry, vmax, max_velocity, survey_options)

    if models:
        vel = np.stack(models)[:, None].astype(np.float32)
    else:
        vel = np.full((len(data), 1, nz, nx), placeholder_velocity, dtype=np.float32)
    gat = np.stack(data).astype(np.float32) if data else _forward(vel[:, 0], survey)
    salt = (vel >= salt_threshold).astype(np.uint8)
    stats = RunningNormalisation()
    stats.update(vel, gat)
    generator = {"name": "fwi.io.importer", "gathers": [str(p) for p in gathers],
                 "velocity": [str(p) for p in velocity],
                 "gathers_source": "segy" if data else "forward_model",
                 "velocity_source": "segy" if models else f"placeholder constant {placeholder_velocity:g} m/s",
                 "salt_threshold": salt_threshold, "x_origin": x_origin, "normalisation_from": "imported data"}
    return write_dataset(out, {split: {"velocity": vel, "salt_mask": salt, "gathers": gat}}, survey,
                         normalisation=stats.result(), attrs={"generator": generator}, overwrite=overwrite)


def check_request(out: Path, split: str, gathers: Sequence, velocity: Sequence, overwrite: bool) -> None:
    """Refuse an import whose inputs cannot work together, before anything is read."""
    if split not in SPLITS:
        raise ImportInputError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if not gathers and not velocity:
        raise ImportInputError("give --gathers and/or --velocity SEG-Y files")
    if gathers and velocity and len(gathers) != len(velocity):
        raise ImportInputError(f"{len(gathers)} gathers files but {len(velocity)} velocity files; they pair one "
                               "to one")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")


Grid = tuple[int | None, int | None, float | None]


def read_models(paths: Sequence[str | Path], grid: Grid) -> tuple[list[np.ndarray], Grid]:
    """Velocity models (nz, nx) m/s of SEG-Y or .mat files, all on one grid (nz, nx, dx), which they must share
    with the grid given (None entries are taken from the first file)."""
    nz, nx, dx = grid
    models = []
    for path in paths:
        if Path(path).suffix.lower() == ".mat":  # FCNVMB / DD-Net layout: no grid step in the file
            if dx is None:
                raise ImportInputError(f"{path}: .mat velocity files carry no grid step; give --dx (10 for the SEG "
                                       "salt set)")
            pairs = [(m, dx) for m in read_mat_velocity(path)]
        else:
            v, vdx = read_velocity(path)
            pairs = [(check_velocity_values(v, str(path), ImportInputError), vdx)]
        for v, vdx in pairs:
            models.append(v)
            for name, given, found in (("nz", nz, v.shape[0]), ("nx", nx, v.shape[1]), ("dx", dx, vdx)):
                if given is not None and not math.isclose(given, found):
                    raise ImportInputError(f"{path}: {name} is {found:g} but {given:g} was given "
                                           f"(--{name} or an earlier file)")
            nz, nx, dx = v.shape[0], v.shape[1], vdx
    return models, (nz, nx, dx)


def read_gather_files(paths: Sequence[str | Path], x_origin: float) -> tuple[list[np.ndarray], dict | None]:
    """(S, T, R) gathers of each file and their shared geometry (None without files)."""
    data, geometry = [], None
    for path in paths:
        g, geo = gathers_geometry(Path(path), x_origin=x_origin)
        if geometry is not None and geo != geometry:
            raise ImportInputError(f"{path} has a different geometry (nt, dt, source or receiver positions) from "
                                   f"{paths[0]}")
        data.append(g)
        geometry = geo
    return data, geometry


def import_survey(nz: int, nx: int, dx: float, geometry: dict | None, vmax: float, max_velocity: float | None,
                  survey_options: dict | None) -> Survey:
    """The survey of the imported data: the files' geometry, or (models only, to be forward-modelled) the survey
    options on the model's grid with one receiver per cell; ``max_velocity`` covers the fastest model."""
    kwargs = dict(geometry) if geometry is not None else {"n_receivers": nx, **(survey_options or {})}
    max_velocity = max_velocity or max(Survey.max_velocity, math.ceil(vmax / 100.0) * 100.0)
    return Survey(nz=nz, nx=nx, dx=dx, max_velocity=max_velocity, **kwargs)


def _forward(velocity: np.ndarray, survey: Survey, batch: int = 4) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(velocity), batch):
            out.append(forward_model(torch.from_numpy(velocity[start:start + batch]), survey).numpy())
    return np.concatenate(out).astype(np.float32)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m fwi.io.importer", description=__doc__.split("\n\n")[0])
    p.add_argument("--gathers", nargs="+", default=[], metavar="FILE.sgy", help="shot-gather files, one per sample")
    p.add_argument("--velocity", nargs="+", default=[], metavar="VEL.sgy|VEL.mat",
                   help="velocity models: SEG-Y (one per file) or .mat (FCNVMB / DD-Net layout; needs --dx)")
    p.add_argument("--out", required=True, help="output HDF5 dataset")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--nz", type=int)
    p.add_argument("--nx", type=int)
    p.add_argument("--dx", type=float, help="grid step in metres")
    p.add_argument("--x-origin", type=float, default=0.0, help="x (m) of the grid's left edge in the headers' frame")
    p.add_argument("--salt-threshold", type=float, default=DEFAULT_SALT_THRESHOLD, help="m/s (default 4400)")
    p.add_argument("--placeholder-velocity", type=float, default=1500.0,
                   help="constant velocity stored when only gathers are imported (m/s)")
    p.add_argument("--max-velocity", type=float,
                   help="survey max_velocity (default 5000 m/s, or the models' maximum rounded up)")
    p.add_argument("--survey-nt", type=int, help="forward modelling: time samples (default 1000)")
    p.add_argument("--survey-dt", type=float, help="forward modelling: time step in s (default 0.001)")
    p.add_argument("--survey-sources", type=int, help="forward modelling: number of sources (default 5)")
    p.add_argument("--survey-receivers", type=int, help="forward modelling: number of receivers (default nx)")
    p.add_argument("--survey-freq", type=float, help="forward modelling: Ricker frequency in Hz (default 15)")
    p.add_argument("--overwrite", action="store_true")
    return p


@friendly_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {"nt": args.survey_nt, "dt": args.survey_dt, "n_sources": args.survey_sources,
               "n_receivers": args.survey_receivers, "freq": args.survey_freq}
    path = import_segy(args.out, split=args.split, gathers=args.gathers, velocity=args.velocity, nz=args.nz,
                       nx=args.nx, dx=args.dx, x_origin=args.x_origin, salt_threshold=args.salt_threshold,
                       placeholder_velocity=args.placeholder_velocity, max_velocity=args.max_velocity,
                       survey_options={k: v for k, v in options.items() if v is not None},
                       overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
