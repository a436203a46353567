"""Copy the records of recorded cells into another ablation's cells that have the very same training config.

    python experiments/import_recorded.py configs/ablation/learning_curve.yaml [--from experiments/salt70_attention]

A cell of SPEC whose resolved training config equals, key by key, that of a finished cell of the recorded ablation
(up to the run's identity: name, output folder, W&B group and tags; keys added since then count as their defaults)
is the same training run: its config, per-epoch metrics, summary and test evaluation are copied (weights are not
committed, so nothing else exists) instead of training it again, and its summary names the source
(``copied_from``). Cells that are already finished are left alone. Run ``python -m fwi.ablate SPEC`` afterwards for
the rest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from fwi.ablation.spec import build_ablation, load_spec
from fwi.config import Config, flatten_config, upgrade_config

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"run.name", "run.out", "run.group", "run.tags", "run.resume"}


def training_key(config: dict, defaults: dict) -> str:
    """The flattened config without the run's identity, keys missing from old records filled with defaults."""
    flat = {**defaults, **flatten_config(upgrade_config(config))}
    return json.dumps({k: v for k, v in sorted(flat.items()) if k not in IDENTITY})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec")
    p.add_argument("--from", dest="source", default="experiments/salt70_attention")
    args = p.parse_args(argv)
    defaults = flatten_config(Config().to_dict())
    recorded = {}
    for run in sorted((ROOT / args.source / "runs").iterdir()):
        if (run / "summary.json").exists() and (run / "eval-test" / "metrics.json").exists():
            recorded.setdefault(training_key(yaml.safe_load((run / "config.yaml").read_text()), defaults), run)
    ablation = build_ablation(load_spec(ROOT / args.spec), args.spec, out=ROOT / "experiments")
    runs = ROOT / "experiments" / ablation.name / "runs"
    copied = 0
    for cell in ablation.cells:
        source = recorded.get(training_key(cell.config, defaults))
        target = runs / cell.run
        if source is None or (target / "summary.json").exists():
            continue
        (target / "eval-test").mkdir(parents=True, exist_ok=True)
        (target / "config.yaml").write_text(yaml.safe_dump(cell.config, sort_keys=False))
        shutil.copyfile(source / "metrics.jsonl", target / "metrics.jsonl")
        where = str(source.relative_to(ROOT))
        summary = json.loads((source / "summary.json").read_text())
        (target / "summary.json").write_text(json.dumps({**summary, "run": cell.run, "copied_from": where}, indent=1))
        evaluation = json.loads((source / "eval-test" / "metrics.json").read_text())
        (target / "eval-test" / "metrics.json").write_text(json.dumps({**evaluation, "copied_from": where}))
        print(f"{cell.run}: copied from {source.name}")
        copied += 1
    print(f"{copied} cell(s) copied into {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
