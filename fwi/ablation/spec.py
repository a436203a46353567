"""Ablation spec: loading and validation of ``configs/ablation/*.yaml``, and its cells with their resolved configs.

A cell's config is resolved here once, from the base config and the flat overrides of the spec (the train CLI
flag names with ``_`` for ``-``), and validated before anything runs; the runner writes it as the cell's
``cell.yaml`` and trains with ``python -m fwi.train --config cell.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from fwi.config import RENAMED_FLAGS, Config, from_dict, load_config, read_yaml
from fwi.continuation import branch_conflicts, snapshot_name

SPEC_KEYS = ("name", "description", "notes", "findings", "base", "overrides", "baseline", "physics_weight",
             "physics_overrides", "wandb", "evaluate", "test_families", "grid", "extra")
GRID_KEYS = ("variants", "physics", "seeds")
FAMILY_KEYS = ("data", "preset", "seed", "split")
EXTRA_KEYS = ("variant", "seeds", "physics")
#: Config fields the ablation sets itself for every cell.
RESERVED = {"name": "the cell names are derived from the labels", "out": "use --out of fwi.ablate",
            "group": "the group is the ablation name", "seed": "use the seeds factor",
            "resume": "finished cells are skipped and interrupted ones resumed automatically",
            "overwrite": "delete the cell's run directory to retrain it",
            "physics_weight": "use the physics factor and the spec's physics_weight (a variant may set its own)",
            "branch_from": "give the variant branch_of (the trunk's label) and branch_at (its epoch)"}
#: Variant keys that are not config fields: the variant's own physics weight, and where it branches from a trunk.
VARIANT_KEYS = ("label", "physics_weight", "branch_of", "branch_at")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
#: File name of a cell's resolved config inside its run directory.
CELL_CONFIG = "cell.yaml"


@lru_cache(maxsize=1)
def override_fields() -> dict[str, tuple[str, str]]:
    """Flat override key -> (config section, field); the keys are the train CLI flag names with ``_`` for ``-``
    (``model`` is still accepted for ``arch``, as the ``--model`` flag is)."""
    out = {f.name: (section, f.name) for section, cls in typing.get_type_hints(Config).items()
           for f in dataclasses.fields(cls)}
    for old, new in RENAMED_FLAGS.items():
        out[old.lstrip("-").replace("-", "_")] = out[new.lstrip("-").replace("-", "_")]
    return out


def _check_keys(data: Any, valid: Sequence[str], where: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid)}")
    return data


def _check_overrides(data: Any, where: str, allow_label: bool = False) -> dict[str, Any]:
    """A dict of flat config fields (plus ``label`` for a variant); unknown or reserved keys are errors."""
    data = {} if data is None else data
    for key in data if isinstance(data, dict) else ():
        if key in RESERVED and not (allow_label and key == "physics_weight"):
            raise ValueError(f"{where} sets {key!r}, which the ablation sets for each cell ({RESERVED[key]})")
    valid = [*(VARIANT_KEYS if allow_label else []),
             *(k for k in override_fields() if k not in RESERVED)]
    return dict(_check_keys(data, valid, where))


@dataclass
class Cell:
    """One training run of the ablation: a variant (label + factors) with a physics setting and a seed."""

    label: str
    physics: bool
    seed: int
    kind: str  # "grid" or "extra"
    factors: dict[str, Any]  # the variant's overrides (without its label)
    run: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the resolved train config (Config.to_dict())
    flags: list[str] = field(default_factory=list)  # legacy: train CLI flags of ablations recorded before cell.yaml

    @property
    def variant(self) -> str:
        """Aggregation key: the label, with ``+phys`` when the physics loss is on."""
        return self.label + ("+phys" if self.physics else "")

    @property
    def key(self) -> str:
        """The run name without the ablation's name: ``<label>-phys|nophys-s<seed>``."""
        return f"{self.label}-{'phys' if self.physics else 'nophys'}-s{self.seed}"

    def factors_text(self) -> str:
        return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.factors.items())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.flags:
            del out["flags"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        """A cell as recorded in ablation.json (old records carry ``flags`` and no ``config``)."""
        return cls(**data)


@dataclass(frozen=True)
class TestFamily:
    """A further test set every trained cell is evaluated on (e.g. a shifted geology never trained on):
    ``python -m fwi.evaluate RUN --data <data> --split <split> --out RUN/eval-<name>-<split>``; the runner generates
    ``data`` from ``preset`` (data seed ``seed``) when it is missing."""

    __test__ = False  # not a pytest test class

    name: str
    data: str
    preset: str
    seed: int = 0
    split: str = "test"

    @property
    def out_dir(self) -> str:
        """The evaluation's folder inside a run directory."""
        return f"eval-{self.name}-{self.split}"

    def evaluate_args(self, run_dir: Path) -> list[str]:
        """The ``fwi.evaluate`` arguments after the module name."""
        return [str(run_dir), "--data", self.data, "--split", self.split, "--out", str(run_dir / self.out_dir)]

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "preset": self.preset, "seed": self.seed, "split": self.split}


def families_of(spec: dict[str, Any]) -> list[TestFamily]:
    """The spec's ``test_families`` (``{name: {data, preset, seed?, split?}}``), validated."""
    from fwi.data.presets import PRESETS

    raw = spec.get("test_families") or {}
    if not isinstance(raw, dict):
        raise ValueError("test_families must be a mapping {name: {data: FILE.h5, preset: PRESET, seed: 0, "
                         f"split: test}}}}, got {type(raw).__name__}")
    families = []
    for name, entry in raw.items():
        where = f"test_families.{name}"
        if not isinstance(name, str) or not LABEL_RE.match(name) or name == "test":
            raise ValueError(f"{where}: a family needs a short name other than 'test' (letters, digits, _ . + = -)")
        entry = _check_keys(entry, FAMILY_KEYS, where)
        for key in ("data", "preset"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"{where} needs {key!r} (a dataset file and the preset that generates it)")
        if entry["preset"] not in PRESETS:
            raise ValueError(f"{where}: unknown preset {entry['preset']!r}; presets: {', '.join(PRESETS.names())}")
        seed, split = entry.get("seed", 0), entry.get("split", "test")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{where}: seed must be an integer >= 0, got {seed!r}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"{where}: split must be train, val or test, got {split!r}")
        families.append(TestFamily(name, entry["data"], entry["preset"], seed, split))
    return families


@dataclass
class Ablation:
    """A validated spec: its cells in spec order, each with its resolved config."""

    name: str
    spec: dict[str, Any]
    spec_path: str
    base: str
    base_cfg: Config
    cells: list[Cell]
    baseline: str
    wandb: str
    evaluate: bool
    test_families: list[TestFamily] = field(default_factory=list)

    def info(self, out: str, command: str) -> dict[str, Any]:
        c = self.cell_config(self.cells[0])  # the base config with the spec's overrides
        return {"name": self.name, "spec_path": self.spec_path, "command": command, "base": self.base,
                "preset": c.data.preset, "data": c.data.data, "data_seed": c.data.data_seed, "epochs": c.optim.epochs,
                "baseline": self.baseline, "wandb": self.wandb, "wandb_project": c.run.wandb_project,
                "spec": self.spec, "cells": [cell.to_dict() for cell in self.cells], "out": out,
                **({"test_families": {f.name: f.to_dict() for f in self.test_families}} if self.test_families else {})}

    def cell_config(self, cell: Cell) -> Config:
        return from_dict(Config, cell.config, f"cell {cell.run}")


def load_spec(path: str | Path) -> dict[str, Any]:
    return read_yaml(path, "ablation spec")


def _bool_list(value: Any, where: str) -> list[bool]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, bool) for v in values):
        raise ValueError(f"{where} must be true, false or a list of them, got {value!r}")
    return values


def _seed_list(value: Any, where: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"{where} must be a non-empty list of seeds (integers >= 0), got {value!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{where} repeats a seed: {values}")
    return values


def _variant(data: Any, where: str) -> tuple[str, dict[str, Any]]:
    data = _check_overrides(data, where, allow_label=True)
    label = data.pop("label", None)
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ValueError(f"{where} needs a short 'label' (letters, digits, _ . + = -), got {label!r}")
    return label, data


def _header(spec: dict[str, Any], spec_path: str, wandb: str | None,
            evaluate: bool | None) -> tuple[str, str, Config, str, bool]:
    """Name, base path, base config, W&B mode and evaluate flag of ``spec``, validated."""
    for key in ("name", "base", "grid"):
        if key not in spec:
            raise ValueError(f"ablation spec {spec_path} lacks {key!r}; valid keys: {', '.join(SPEC_KEYS)}")
    name = spec["name"]
    if not isinstance(name, str) or not LABEL_RE.match(name):
        raise ValueError(f"ablation name must be a short name (letters, digits, _ . + = -), got {name!r}")
    base = str(spec["base"])
    base_cfg = load_config(base).validate()
    mode = wandb or spec.get("wandb") or base_cfg.run.wandb
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"wandb mode {mode!r} is not one of online, offline, disabled")
    evaluate = spec.get("evaluate", True) if evaluate is None else evaluate
    if not isinstance(evaluate, bool):
        raise ValueError(f"evaluate must be true or false, got {evaluate!r}")
    return name, base, base_cfg, mode, evaluate


def _cells(spec: dict[str, Any]) -> tuple[list[Cell], dict[str, dict[str, Any]]]:
    """The grid and extra cells in spec order (without run names or configs) and the variants by label."""
    grid = _check_keys(spec["grid"], GRID_KEYS, "grid")
    if "variants" not in grid or not isinstance(grid["variants"], list) or not grid["variants"]:
        raise ValueError("grid.variants must be a non-empty list of variants ({label: ..., <flat overrides>})")
    cells: list[Cell] = []
    variants: dict[str, dict[str, Any]] = {}

    def add(label: str, factors: dict[str, Any], physics: list[bool], seeds: list[int], kind: str, where: str):
        if label in variants and variants[label] != factors:
            raise ValueError(f"{where}: label {label!r} is already used by a variant with other settings "
                             f"({variants[label]}); give it another label")
        variants[label] = factors
        cells.extend(Cell(label, phys, seed, kind, dict(factors)) for phys in physics for seed in seeds)

    grid_physics = _bool_list(grid.get("physics", [False]), "grid.physics")
    grid_seeds = _seed_list(grid.get("seeds", [0]), "grid.seeds")
    grid_labels = []
    for i, v in enumerate(grid["variants"]):
        label, factors = _variant(v, f"grid.variants[{i}]")
        if label in grid_labels:
            raise ValueError(f"grid.variants: label {label!r} appears twice")
        grid_labels.append(label)
        add(label, factors, grid_physics, grid_seeds, "grid", f"grid.variants[{i}]")
    extras = spec.get("extra") or []
    if not isinstance(extras, list):
        raise ValueError("extra must be a list of cells ({variant: {label: ..., ...}, seeds: [...], physics: ...})")
    for i, e in enumerate(extras):
        e = _check_keys(e, EXTRA_KEYS, f"extra[{i}]")
        if "variant" not in e:
            raise ValueError(f"extra[{i}] lacks 'variant'; valid keys: {', '.join(EXTRA_KEYS)}")
        label, factors = _variant(e["variant"], f"extra[{i}].variant")
        add(label, factors, _bool_list(e.get("physics", False), f"extra[{i}].physics"),
            _seed_list(e.get("seeds", [grid_seeds[0]]), f"extra[{i}].seeds"), "extra", f"extra[{i}]")
    return cells, variants


def resolve(base_cfg: Config, merged: dict[str, Any], where: str) -> Config:
    """``base_cfg`` with the flat overrides ``merged`` applied, validated (errors name ``where``)."""
    nested = base_cfg.to_dict()
    fields = override_fields()
    for key, value in merged.items():
        section, name = fields[key]
        nested[section][name] = value
    try:
        return from_dict(Config, nested, where).validate()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _link_branches(cells: list[Cell], runs: dict[str, Cell], runs_dir: Path) -> None:
    """Cells of variants with ``branch_of``/``branch_at`` start from the trunk cell's snapshot (same seed): the
    trunk keeps that epoch, the branch's ``branch_from`` names it; a branch that could not have trained the trunk's
    epochs as the trunk did is an error here (see fwi.continuation)."""
    for cell in cells:
        trunk_label, epoch = cell.factors.get("branch_of"), cell.factors.get("branch_at")
        if trunk_label is None and epoch is None:
            continue
        where = f"variant {cell.label!r}"
        if not isinstance(trunk_label, str) or isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"{where}: a branch needs both branch_of (a variant label) and branch_at (an epoch >= 1), "
                             f"got branch_of={trunk_label!r}, branch_at={epoch!r}")
        trunks = [c for c in runs.values() if c.label == trunk_label and c.seed == cell.seed]
        if len(trunks) != 1:
            raise ValueError(f"{where} branches from {trunk_label!r}, which has {len(trunks)} cells with seed "
                             f"{cell.seed} (needs exactly one)")
        trunk = trunks[0]
        if "branch_of" in trunk.factors:
            raise ValueError(f"{where} branches from {trunk_label!r}, itself a branch; branch from its trunk")
        conflicts = branch_conflicts(cell.config, trunk.config, epoch)
        if conflicts:
            raise ValueError(f"{where} cannot branch from {trunk_label!r} after epoch {epoch}: " + "; ".join(conflicts))
        if epoch >= trunk.config["optim"]["epochs"]:
            raise ValueError(f"{where}: branch_at {epoch} must be below the trunk's {trunk.config['optim']['epochs']} "
                             "epochs")
        kept = trunk.config["run"]
        kept["keep_epochs"] = sorted({*kept.get("keep_epochs", []), epoch})
        cell.config["run"]["branch_from"] = str(runs_dir / trunk.run / snapshot_name(epoch))


def build_ablation(spec: dict[str, Any], spec_path: str = "<spec>", wandb: str | None = None,
                   out: str | Path = "experiments", evaluate: bool | None = None) -> Ablation:
    """Validate ``spec`` and resolve every cell's Config (a typo fails here, before anything runs)."""
    spec = _check_keys(spec, SPEC_KEYS, f"ablation spec {spec_path}")
    name, base, base_cfg, mode, evaluate = _header(spec, spec_path, wandb, evaluate)
    overrides = _check_overrides(spec.get("overrides"), "overrides")
    physics_overrides = _check_overrides(spec.get("physics_overrides"), "physics_overrides")
    physics_weight = spec.get("physics_weight")
    families = families_of(spec)
    cells, variants = _cells(spec)
    for cell in cells:
        weight = cell.factors.get("physics_weight", physics_weight)
        if cell.physics and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0):
            raise ValueError(f"cells with physics: true need a positive physics_weight (top level, or the variant's "
                             f"own), got {weight!r} for variant {cell.label!r}")
        if not cell.physics and "physics_weight" in cell.factors:
            raise ValueError(f"variant {cell.label!r} sets physics_weight but has cells without physics: give it "
                             "physics: true")
    runs_dir = Path(out) / name / "runs"
    seen: dict[str, Cell] = {}
    for cell in cells:
        cell.run = f"{name}-{cell.key}"
        if cell.run in seen:
            raise ValueError(f"two cells resolve to the same run {cell.run!r} (variant {cell.label!r}, seed "
                             f"{cell.seed}); remove the duplicate from grid/extra")
        seen[cell.run] = cell
        merged = {**overrides, **(physics_overrides if cell.physics else {}),
                  **{k: v for k, v in cell.factors.items() if k not in VARIANT_KEYS}}  # the variant's own win
        tags = [*merged.pop("tags", ()), f"ablation:{name}", f"variant:{cell.variant}"]
        weight = cell.factors.get("physics_weight", physics_weight)
        merged.update(seed=cell.seed, physics_weight=float(weight) if cell.physics else 0.0,
                      name=cell.run, out=str(runs_dir), group=name, tags=tags, wandb=mode)
        merged.setdefault("progress", False)  # the child's output goes to a log file
        where = f"variant {cell.label!r} (seed {cell.seed}, physics {'on' if cell.physics else 'off'})"
        cell.config = resolve(base_cfg, merged, where).to_dict()
    _link_branches(cells, seen, runs_dir)
    baseline = spec.get("baseline", "none")
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant label; labels: {', '.join(variants)}")
    return Ablation(name, spec, spec_path, base, base_cfg, cells, baseline, mode, evaluate, families)
