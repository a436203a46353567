"""Paired read-out of the physics-weight sweep: each physics branch against the no-physics trunk it branched from.

    python experiments/physics_sweep/paired.py [--dir experiments/physics_sweep]

The runs of ``fwi.ablate configs/ablation/physics_sweep.yaml`` share their trunk up to the branch epoch, so their
difference is what the physics term did, not trunk-to-trunk noise. Writes, into ``--dir`` (default: beside this
script; ``--dir experiments/fieldsalt_physics`` for the field-scale sweep):

- ``paired.md``: per branch, validation MAE / salt IoU / data misfit at every epoch from the branch point on, trunk
  against branch; and the test-split metrics of both runs with the paired difference over the test models (branch
  minus trunk, mean ± standard error over models; the test models are the same for both runs), for the best
  checkpoints (the runner's ``eval-test/``) and, where evaluated, the last ones (``eval-test-last/``);
  the shifted test family's evaluation (``eval-shifted-test/``) is paired the same way where the spec has one;
- ``paired.png``: validation MAE and validation data misfit against epoch, trunk and branches.

A branch whose best validation epoch lies before its branch point evaluates the trunk's weights (its ``best.pt`` is the
trunk's), so its test difference is exactly zero; the table says so rather than hiding it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib
import yaml

from fwi.atomic import write_text
from fwi.continuation import snapshot_epoch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
VAL = (("val/mae_ms", "val MAE (m/s)", 1), ("val/iou", "val IoU", 4), ("val/data_misfit", "val data misfit", 4))
#: evaluations (folder, split, checkpoints) read when present: the runner's (best.pt; on the test split and, where the
#: spec names a shifted test family, on that), and, evaluated by hand, the last epoch's
#: (``python -m fwi.evaluate RUN/last.pt --out RUN/eval-test-last --no-figures``).
EVALUATIONS = (("eval-test", "Test split", "best checkpoints"), ("eval-test-last", "Test split", "last checkpoints"),
               ("eval-shifted-test", "Shifted test family", "best checkpoints"))
TEST = (("mae_ms", "MAE (m/s)", 1), ("ssim", "SSIM", 4), ("iou", "salt IoU", 4), ("data_misfit", "data misfit", 4))


def read_run(run: Path) -> dict:
    """summary.json, the epochs of metrics.jsonl and (when evaluated) eval-test/metrics.json of one run."""
    summary = json.loads((run / "summary.json").read_text())
    epochs = {r["epoch"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    tests = {folder: json.loads((run / folder / "metrics.json").read_text())
             for folder, _, _ in EVALUATIONS if (run / folder / "metrics.json").exists()}
    config = yaml.safe_load((run / "config.yaml").read_text())
    return {"name": run.name, "summary": summary, "epochs": epochs, "tests": tests, "config": config}


def paired_difference(branch: dict, trunk: dict, key: str) -> tuple[float, float]:
    """Mean and standard error over the test models of branch minus trunk for one per-model metric."""
    b = {s["index"]: s[key] for s in branch["per_sample"]}
    t = {s["index"]: s[key] for s in trunk["per_sample"]}
    if b.keys() != t.keys():
        raise ValueError("the two evaluations cover different test models")
    d = [b[i] - t[i] for i in sorted(b)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1) if len(d) > 1 else 0.0
    return mean, math.sqrt(var / len(d))


def branch_point(run: dict) -> int | None:
    """The trunk epoch a branch started from (``summary.json``'s branch_from, ``.../epoch-K.pt``), else None."""
    source = run["summary"].get("branch_from")
    return snapshot_epoch(source) if source else None


def physics_text(run: dict) -> str:
    loss = run["config"].get("loss", {})
    depth = f", gradient x (z/z_max)^{loss['physics_depth_power']:g}" if loss.get("physics_depth_power") else ""
    return f"weight {loss.get('physics_weight')}{depth}, from epoch {loss.get('physics_start_epoch')}"


def write_table(trunk: dict, branches: list[dict], out: Path) -> None:
    lines = ["# Physics-weight sweep, paired against the no-physics trunk", "",
             f"Trunk: `{trunk['name']}` (no physics). Written by `experiments/physics_sweep/paired.py` from the run "
             "records; the branches share the trunk's weights, optimiser and data order up to their branch epoch.", ""]
    for br in branches:
        k = branch_point(br)
        last = max(br["epochs"])
        lines += [f"## `{br['name']}`: {physics_text(br)}, branched at epoch {k}", "",
                  "| epoch | " + " | ".join(f"trunk {h} | branch {h}" for _, h, _ in VAL) + " | branch physics term |",
                  "|---" * (2 * len(VAL) + 2) + "|"]
        for e in range(k, last + 1):
            t, b = trunk["epochs"].get(e), br["epochs"][e]
            cells = []
            for key, _, digits in VAL:
                cells += [f"{t[key]:.{digits}f}" if t else "", f"{b[key]:.{digits}f}"]
            lines.append(f"| {e} | " + " | ".join(cells) + f" | {b.get('train/physics', 0.0):.5f} |")
        lines.append("")
        for folder, split, what in EVALUATIONS:
            if folder not in br["tests"] or folder not in trunk["tests"]:
                if folder != "eval-shifted-test":  # a spec without a shifted family has none to report
                    lines += [f"{split}, {what}: not evaluated.", ""]
                continue
            tb, tt = br["tests"][folder], trunk["tests"][folder]
            note = " (at or before the branch point: the trunk's weights)" if tb["epoch"] <= k else ""
            lines += [f"{split} ({tb['n']} models), {what}: trunk epoch {tt['epoch']}, branch epoch "
                      f"{tb['epoch']}{note}.", "",
                      "| metric | trunk | branch | branch - trunk (mean ± s.e. over models) |", "|---|---|---|---|"]
            for key, head, digits in TEST:
                mean, se = paired_difference(tb, tt, key)
                lines.append(f"| {head} | {tt['mean'][key]:.{digits}f} | {tb['mean'][key]:.{digits}f} | "
                             f"{mean:+.{digits}f} ± {se:.{digits}f} |")
            lines.append("")
    write_text(out, "\n".join(lines))


def plot(trunk: dict, branches: list[dict], out: Path) -> None:
    start = min((branch_point(b) for b in branches), default=max(trunk["epochs"])) - 3
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, (key, head) in zip(axes, (("val/mae_ms", "validation MAE (m/s)"),
                                       ("val/data_misfit", "validation data misfit"))):
        e = [x for x in sorted(trunk["epochs"]) if x >= start]
        ax.plot(e, [trunk["epochs"][x][key] for x in e], "k-o", ms=3, label="trunk (no physics)")
        for br in branches:
            k = branch_point(br)
            e = [x for x in sorted(br["epochs"]) if x >= k]
            ax.plot(e, [br["epochs"][x][key] for x in e], "-o", ms=3, label=physics_text(br))
        ax.set_xlabel("epoch")
        ax.set_ylabel(head)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Physics branches against their no-physics trunk (same weights up to the branch epoch)")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="the ablation folder (default: beside this script)")
    args = parser.parse_args()
    runs = [read_run(r) for r in sorted((args.dir / "runs").iterdir()) if (r / "summary.json").exists()]
    trunks = [r for r in runs if branch_point(r) is None]
    if len(trunks) != 1:
        raise SystemExit(f"expected one finished trunk run in {args.dir / 'runs'}, found {len(trunks)}")
    branches = sorted((r for r in runs if branch_point(r) is not None),
                      key=lambda r: (branch_point(r), r["config"]["loss"]["physics_weight"]))
    write_table(trunks[0], branches, args.dir / "paired.md")
    plot(trunks[0], branches, args.dir / "paired.png")
    print(f"{len(branches)} branch(es) against {trunks[0]['name']}: {args.dir / 'paired.md'}, "
          f"{args.dir / 'paired.png'}")


if __name__ == "__main__":
    main()
