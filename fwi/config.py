"""Run configuration: dataclasses, YAML files (``configs/``) and command-line overrides.

A config has five sections (data, model, loss, optim, run). Their dataclass defaults are the salt70 research setting
(the one source of it). YAML files hold the sections nested and set only what differs from a base: the defaults, or
the file named by a top-level ``base:`` (a path relative to the file; bases chain). On the command line every field
is a flat flag (``--attn ca --skip-attn --epochs 5 --physics-weight 0.1``), parsed by tyro with the YAML file as the
defaults::

    python -m fwi.train --config configs/quick.yaml --attn ca --skip-attn
    python -m fwi.train --config configs/quick.yaml --print-config      # the resolved config, as YAML

Unknown YAML keys or CLI flags are errors that list the valid ones; the resolved config is saved with every run.
Configs recorded before a key was renamed (``model.name`` -> ``model.arch``, ``--model`` -> ``--arch``) are read
through `upgrade_config`. Importing this module loads no torch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import sys
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tyro
import yaml

from fwi.losses.config import LossConfig
from fwi.models.config import ModelConfig

#: Renamed keys: (section, old key) -> new key; recorded configs (run directories, checkpoints, ablation records)
#: are upgraded on reading.
RENAMED_KEYS = {("model", "name"): "arch"}
#: Renamed flags: old -> new (still accepted on the command line).
RENAMED_FLAGS = {"--model": "--arch"}


def upgrade_config(data: Any) -> Any:
    """A nested config dict with renamed keys under their current names (a new dict; anything else unchanged)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for (section, old), new in RENAMED_KEYS.items():
        sec = out.get(section)
        if isinstance(sec, dict) and old in sec and new not in sec:
            out[section] = {(new if k == old else k): v for k, v in sec.items()}
    return out


@dataclass
class DataConfig:
    """Where the training data comes from."""

    data: str = "data/salt70.h5"  # HDF5 dataset; generated from `preset` when missing
    preset: str = "salt70"  # dataset preset to generate when `data` does not exist
    data_seed: int = 0  # seed of the generated dataset
    train_samples: int = 0  # train on the first N samples of the train split (0 = all): learning curves
    epoch_samples: int = 0  # items per training epoch, cycling over the samples (0 = one pass)
    time_decimation: int = 1  # keep every k-th time sample (anti-aliased) of the gathers
    mirror: bool = True  # left-right mirror augmentation (exact symmetry of the survey)
    num_workers: int = 2  # DataLoader worker processes
    cache_gb: float = 4.0  # keep decoded samples in memory when a split fits in this many GiB (num_workers 0; 0 = off)
    generate_workers: int = 0  # processes for dataset generation (0 = all cores)


@dataclass
class OptimConfig:
    """Optimisation and hardware."""

    epochs: int = 80
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    seed: int = 0  # seeds the weights, the data order and the augmentation
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # NHWC layout for the convolutions (~20% faster steps on CPU, measured)
    eval_batch_size: int = 32


@dataclass
class RunConfig:
    """Outputs, logging and resumption."""

    out: str = "runs"  # parent directory of run directories
    name: str = ""  # run directory name (default: derived from the model and seed)
    wandb: Literal["online", "offline", "disabled"] = "offline"  # online falls back to offline without credentials
    wandb_project: str = "fwi"
    group: str = ""  # W&B group (ablations set it)
    tags: tuple[str, ...] = ()
    resume: bool = False  # continue runs/<name>/last.pt exactly
    overwrite: bool = False  # replace an existing run directory
    stop_after: int = 0  # stop after this many epochs in this invocation (0 = all); continue later with --resume
    keep_epochs: tuple[int, ...] = ()  # also keep epoch-K.pt after these epochs: trunks that other runs branch from
    branch_from: str = ""  # start from another run's epoch-K.pt (same settings up to epoch K; physics may differ)
    misfit_samples: int = 8  # validation samples re-modelled for the data misfit each epoch (0 = off)
    images: int = 4  # validation predictions drawn in the per-epoch figure
    progress: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> "Config":
        self.model.validate()
        self.loss.validate()
        o, r, d = self.optim, self.run, self.data
        checks = [("optim.epochs", o.epochs, o.epochs >= 1, ">= 1"), ("optim.batch_size", o.batch_size,
                  o.batch_size >= 1, ">= 1"), ("optim.eval_batch_size", o.eval_batch_size, o.eval_batch_size >= 1,
                  ">= 1"), ("optim.lr", o.lr, o.lr > 0 and math.isfinite(o.lr), "> 0"),
                  ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
                  ("optim.grad_clip", o.grad_clip, o.grad_clip >= 0, ">= 0 (0 = off)"),
                  ("run.stop_after", r.stop_after, r.stop_after >= 0, ">= 0 (0 = all epochs)"),
                  ("run.misfit_samples", r.misfit_samples, r.misfit_samples >= 0, ">= 0"),
                  ("run.images", r.images, r.images >= 0, ">= 0"),
                  ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0"),
                  ("data.train_samples", d.train_samples, d.train_samples >= 0, ">= 0 (0 = all)"),
                  ("data.epoch_samples", d.epoch_samples, d.epoch_samples >= 0, ">= 0 (0 = one pass)"),
                  ("data.generate_workers", d.generate_workers, d.generate_workers >= 0, ">= 0 (0 = all cores)")]
        for name, value, ok, valid in checks:
            if not ok:
                raise ValueError(f"{name} = {value!r} is out of range; it must be {valid}")
        bad = [k for k in r.keep_epochs if not 1 <= k < o.epochs]
        if bad:
            raise ValueError(f"run.keep_epochs {list(r.keep_epochs)}: every epoch must be in 1..{o.epochs - 1} (a "
                             f"snapshot after the last epoch is last.pt), got {bad}")
        if self.data.time_decimation < 1:
            raise ValueError(f"time_decimation must be >= 1, got {self.data.time_decimation}")
        if self.data.cache_gb < 0:
            raise ValueError(f"cache_gb must be >= 0 (0 = no cache), got {self.data.cache_gb}")
        return self

    def run_name(self) -> str:
        """Default run name: model, block, places, decoder, physics, seed (e.g. ``unet-ca-skip-s0``)."""
        m = self.model
        parts = [m.arch]
        if m.arch == "unet":
            if m.attn != "none":
                parts += [m.attn, "+".join(p.replace("_attn", "") for p in m.places())]
            if m.skip_gate != "none":
                parts.append(f"{m.skip_gate}gate")
            if m.decoder != "unet":
                parts.append(f"{m.decoder}dec")
        if self.loss.physics_weight > 0:
            parts.append("phys")
        parts.append(f"s{self.optim.seed}")
        return self.run.name or "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def flatten_config(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"section": {"key": v}}`` -> ``{"section.key": v}`` (tuples as lists, so that YAML round trips compare)."""
    out: dict[str, Any] = {}
    for k, v in nested.items():
        if isinstance(v, dict):
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "config") -> Any:
    """Build dataclass ``cls`` from nested dicts, rejecting unknown keys with the valid ones."""
    data = data or {}
    if cls is Config:
        data = upgrade_config(data)
    elif cls is ModelConfig and isinstance(data, dict):
        data = upgrade_config({"model": data})["model"]
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(hint, value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} = {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        return tuple(value or ())
    if hint is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):  # bool is an int subclass: `batch_size: true` is nonsense
        raise ValueError(f"{where} = {value!r} should be of type {hint.__name__}")
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ValueError(f"{where} = {value!r} should be of type {hint.__name__}")
    return value


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """``yaml.safe_load`` of a file, with one-line errors for a missing file or invalid YAML."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The nested dict of a config file with its ``base:`` chain merged in (the file's values win), upgraded."""
    path = Path(path)
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ValueError(f"config files name each other as base in a cycle: {chain}")
    data = read_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config sections, got {type(data).__name__}")
    data = upgrade_config(data)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: base must be the path of another config file, got {base!r}")
    return merge_configs(read_config_file(path.parent / base, (*_seen, path.resolve())), data)


def merge_configs(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, section by section (a new dict)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None) -> Config:
    """A `Config` from a YAML file (``yaml.safe_load``, its ``base:`` chain merged); None gives the defaults."""
    if path is None:
        return Config()
    return from_dict(Config, read_config_file(path), str(path))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def parse_args(argv: list[str] | None = None, prog: str = "python -m fwi.train",
               description: str | None = None) -> Config:
    """``--config FILE`` (default: the built-in defaults) then flat flags overriding its fields.

    ``--print-config`` prints the resolved config as YAML and exits (status 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [_renamed_flag(a) for a in argv]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--print-config", action="store_true")
    known, rest = pre.parse_known_args(argv)
    base = load_config(known.config)
    description = (description or "") + "\n\n--config FILE  YAML config whose values are the defaults below " \
        "(default: the built-in salt70 research setting)\n--print-config  print the resolved config as YAML and exit"
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            cfg = tyro.cli(Config, default=base, args=rest, prog=prog, description=description,
                           config=(tyro.conf.OmitArgPrefixes,))
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            sys.stderr.write(captured.getvalue())
            raise
        raise ValueError(one_line_cli_error(captured.getvalue(), prog)) from None
    cfg.validate()
    if known.print_config:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        raise SystemExit(0)
    return cfg


def _renamed_flag(arg: str) -> str:
    """``--model x`` / ``--model=x`` -> ``--arch ...`` (flags renamed since configs were recorded)."""
    flag, eq, value = arg.partition("=")
    return RENAMED_FLAGS.get(flag, flag) + eq + value if flag in RENAMED_FLAGS else arg


def one_line_cli_error(text: str, prog: str) -> str:
    """tyro's boxed error message as one line: what is wrong (its first section, however it wrapped), and the
    suggested flag if it has one.

    tyro draws the box with Unicode lines when stdout is UTF-8 and with ASCII dashes otherwise (a redirected or
    non-UTF-8 console): rules separate its sections and are dropped."""
    sections: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = re.sub(r"^[\s│╭╰─┃]+|[\s│╮╯─┃]+$", "", raw)
        if raw.strip() and set(raw.strip()) <= set("│─━-┃| "):  # a rule: the next section starts
            sections.append([])
        elif line:
            sections[-1].append(line)
    sections = [s for s in sections if s and not s[0].startswith("For full helptext")]
    if not sections:
        return f"invalid command line (see {prog} --help)"
    # the box title, then the message however many lines it wrapped to (ASCII boxes put a rule under the title)
    headers = ("Perhaps you meant:", "Argument helptext:")
    if len(sections[0]) == 1 and len(sections) > 1 and sections[1][0] not in headers:
        sections = [sections[0] + sections[1], *sections[2:]]
    head = sections[0]
    message = " ".join(head[1:]) if len(head) > 1 else head[0]
    hint = ""
    for section in sections[1:]:
        if section[0] == "Perhaps you meant:" and len(section) > 1:
            hint = f"; did you mean {section[1].split()[0]}?"
        elif section[0] == "Argument helptext:" and len(section) > 1:
            hint = f" (expected {section[1]})"
    return f"{message}{hint} (see {prog} --help)"
