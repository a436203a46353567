"""Statistics of an ablation: per-variant mean and std over seeds, the pooled seed variance, Student's t and the
differences to the baseline."""

from __future__ import annotations

import math
import statistics
from typing import Any

from fwi.ablation.results import METRIC_KEYS, row_family_columns


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per variant (label + physics) in first-appearance order: n, mean and std of every number."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["variant"], [])
        if r["status"] == "ok":
            groups[r["variant"]].append(r)
    out = []
    for variant, ok in groups.items():
        first = next(r for r in rows if r["variant"] == variant)
        g: dict[str, Any] = {"variant": variant, "label": first["label"], "physics": first["physics"],
                             "factors": first["factors"], "n": len(ok),
                             "n_cells": sum(r["variant"] == variant for r in rows),
                             "seeds": [r["seed"] for r in ok], "sources": sorted({r["source"] for r in ok})}
        for k in (*METRIC_KEYS, *row_family_columns(rows), "params", "flops", "step_ms"):
            g[k], g[f"{k}_std"] = _stats([float(r[k]) for r in ok if r.get(k) is not None])
        out.append(g)
    return out


#: The fewest pooled degrees of freedom that earn a significance star (two seeds of the fieldsalt baseline agreed on
#: SSIM to 1e-5 by chance, and with one degree of freedom that noise estimate starred every SSIM difference).
MIN_STAR_DOF = 2


def pooled_variance(groups: list[dict[str, Any]], key: str) -> tuple[float, int] | None:
    """Seed variance of ``key`` pooled over the variants with >= 2 runs (the ablation's seed noise) and its degrees
    of freedom, sum(n_i - 1); None where no variant has two runs."""
    num, dof = 0.0, 0
    for g in groups:
        if g.get(f"{key}_std") is not None:
            num += (g["n"] - 1) * g[f"{key}_std"] ** 2
            dof += g["n"] - 1
    return (num / dof, dof) if dof else None


def critical_t(dof: int) -> float:
    """Two-sided 5 % critical value of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, dof))


def baseline_for(group: dict[str, Any], groups: list[dict[str, Any]], baseline: str) -> dict[str, Any] | None:
    """The baseline with the same physics setting when it was run, else the baseline without physics."""
    by = {g["variant"]: g for g in groups if g["n"]}
    same = by.get(baseline + ("+phys" if group["physics"] == "on" else ""))
    return same or by.get(baseline)


def difference(group: dict[str, Any], ref: dict[str, Any], rows: list[dict[str, Any]], key: str,
               pooled: tuple[float, int] | None) -> dict[str, Any] | None:
    """mean(variant) - mean(baseline); its standard error s_p sqrt(1/n_v + 1/n_b) with s_p^2 the pooled seed variance
    (one noise level for all variants: with two seeds a variant's own variance rests on one degree of freedom);
    ``significant`` where |diff| exceeds the two-sided 5 % critical value of Student's t with the pooled degrees of
    freedom (never on a single degree of freedom: one pair of seeds can agree by chance and make any difference look
    significant); and the per-seed paired differences where both have the seed."""
    if group.get(key) is None or ref.get(key) is None:
        return None
    diff = group[key] - ref[key]
    se = significant = None
    if pooled is not None:
        variance, dof = pooled
        se = math.sqrt(variance * (1 / group["n"] + 1 / ref["n"]))
        significant = abs(diff) > critical_t(dof) * se if dof >= MIN_STAR_DOF else None
    mine = {r["seed"]: r[key] for r in rows if r["variant"] == group["variant"] and r["status"] == "ok"
            and r.get(key) is not None}
    theirs = {r["seed"]: r[key] for r in rows if r["variant"] == ref["variant"] and r["status"] == "ok"
              and r.get(key) is not None}
    paired = {s: mine[s] - theirs[s] for s in sorted(mine) if s in theirs}
    return {"diff": diff, "se": se, "significant": significant, "paired": paired}

