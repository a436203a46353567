"""Compare two groups of starts (e.g. two training seeds of each network) before and after one FWI method.

Reads the study's JSON records (`<start>__<method>.json`, field `per_model`) from one results folder (or several,
with ``--dir`` repeated: their models pooled, e.g. tags test24 and test24-36) and prints,
for MAE and salt IoU, before and after FWI: each group's mean (and its per-seed means), the per-model difference of
the group means with its standard error over models, and the standard error with the seed as the unit (seed
variance pooled over both groups, n_a + n_b - 2 degrees of freedom, with the t statistic).

    python experiments/fwi_refine_field/compare_groups.py --dir experiments/fwi_refine_field/results/test24 \
        --method network-prior+continuation --base unet-s0,unet-s1 --other ca-skip-s0,ca-skip-s1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compare_starts import add_job_arguments, common_models, load_job, mean_se, per_model


def compare(folders: list[Path], method: str, base: list[str], other: list[str]) -> list[str]:
    """Lines of the comparison (other minus base; negative MAE / positive IoU differences favour `other`), on the
    models every job refined (the jobs must share data, split and FWI settings: ``compare_starts.common_models``)."""
    jobs = {s: load_job(folders, s, method) for s in base + other}
    models = jobs[base[0]]["indices"]
    for start in base[1:] + other:
        models = common_models({**jobs[base[0]], "indices": models}, jobs[start])
    lines = []
    for metric, lower_is_better in (("mae_ms", True), ("iou", False)):
        for stage in ("before", "after"):
            field = f"{metric}_{stage}"
            a = np.array([per_model(jobs[s], field, models) for s in base])  # (seeds, models)
            b = np.array([per_model(jobs[s], field, models) for s in other])
            diff = b.mean(0) - a.mean(0)
            mean, se_models = mean_se(diff.tolist())
            better = int((diff < 0).sum() if lower_is_better else (diff > 0).sum())
            dof = len(base) + len(other) - 2
            seed_means = [a.mean(1), b.mean(1)]
            line = (f"{field}: base {a.mean():.4g} (seeds {np.round(seed_means[0], 4).tolist()}), "
                    f"other {b.mean():.4g} (seeds {np.round(seed_means[1], 4).tolist()}); "
                    f"difference {mean:+.4g} ± {se_models:.3g} over models ({better}/{diff.size} better)")
            if dof > 0:
                pooled = np.sqrt(sum(((m - m.mean()) ** 2).sum() for m in seed_means) / dof)
                se_seeds = pooled * np.sqrt(1 / len(base) + 1 / len(other))
                line += f", ± {se_seeds:.3g} over seeds ({dof} dof, t = {abs(mean) / se_seeds:.2f})"
            lines.append(line)
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_job_arguments(p, "network-prior+continuation", "comma-separated start labels (e.g. unet-s0,unet-s1)")
    args = p.parse_args()
    print("\n".join(compare(args.dir, args.method, args.base.split(","), args.other.split(","))))


if __name__ == "__main__":
    main()
