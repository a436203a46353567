"""Copy the records of the recorded ablation's 6000-model cells into the learning curve's 6000-model cells.

    python experiments/learning_curve/import_recorded.py

The learning curve's ``<variant>-n6000`` cells resolve to the same training config as the recorded ablation's
``salt70_attention-<variant>-nophys-s<seed>`` cells, up to the run's identity (name, output folder, W&B group and
tags) and keys added since with their defaults; this script checks that, key by key, and copies config, per-epoch
metrics, summary and test evaluation (weights are not committed, so nothing else exists), instead of retraining
them. A cell that is already there is left alone.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

from fwi.ablation.spec import build_ablation, load_spec
from fwi.config import Config, flatten_config, upgrade_config

ROOT = Path(__file__).resolve().parents[2]
SPEC = "configs/ablation/learning_curve.yaml"
RECORDED = ROOT / "experiments" / "salt70_attention" / "runs"
IDENTITY = {"run.name", "run.out", "run.group", "run.tags", "run.resume"}


def main() -> int:
    ablation = build_ablation(load_spec(ROOT / SPEC), SPEC, out=ROOT / "experiments")
    runs = ROOT / "experiments" / ablation.name / "runs"
    defaults = flatten_config(Config().to_dict())
    for cell in ablation.cells:
        if not cell.label.endswith("-n6000"):
            continue
        source = RECORDED / f"salt70_attention-{cell.label.removesuffix('-n6000')}-nophys-s{cell.seed}"
        target = runs / cell.run
        if (target / "summary.json").exists():
            print(f"{cell.run}: present")
            continue
        old = flatten_config(upgrade_config(yaml.safe_load((source / "config.yaml").read_text())))
        new = flatten_config(cell.config)
        differ = {k for k in (set(old) | set(new)) - IDENTITY if old.get(k, defaults.get(k)) != new.get(k)}
        if differ:
            print(f"error: {cell.run} differs from {source.name} in {sorted(differ)}", file=sys.stderr)
            return 2
        (target / "eval-test").mkdir(parents=True, exist_ok=True)
        (target / "config.yaml").write_text(yaml.safe_dump(cell.config, sort_keys=False))
        shutil.copyfile(source / "metrics.jsonl", target / "metrics.jsonl")
        summary = json.loads((source / "summary.json").read_text())
        summary.update(run=cell.run, copied_from=str(source.relative_to(ROOT)))
        (target / "summary.json").write_text(json.dumps(summary, indent=1))
        evaluation = json.loads((source / "eval-test" / "metrics.json").read_text())
        evaluation["copied_from"] = str(source.relative_to(ROOT))
        (target / "eval-test" / "metrics.json").write_text(json.dumps(evaluation))
        print(f"{cell.run}: copied from {source.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
