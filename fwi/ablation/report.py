"""The Markdown report of an ablation (report.md), and :func:`build_report`, which rebuilds results.csv, the
figures, report.md and the W&B summary run from the run directories."""

from __future__ import annotations

import shlex
import statistics
from pathlib import Path
from typing import Any, Sequence

from fwi.ablation.plots import make_plots
from fwi.ablation.results import (FAMILY_METRICS, METRICS, REFINED_METRICS, collect, has_refined, read_csv, read_json,
                                  write_csv)
from fwi.ablation.runner import tail_text
from fwi.ablation.spec import CELL_CONFIG, Cell, families_of
from fwi.ablation.stats import MIN_STAR_DOF, aggregate, baseline_for, critical_t, difference, pooled_variance
from fwi.ablation.wandb_summary import log_summary
from fwi.atomic import write_text
from fwi.config import read_yaml


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _pm(g: dict[str, Any], key: str, spec: str) -> str:
    if g.get(key) is None:
        return "–"
    std = g.get(f"{key}_std")
    return format(g[key], spec) + ("" if std is None else f" ± {format(std, spec)}")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def hand_command(info: dict[str, Any], cell: Cell) -> str:
    """The command that trains ``cell`` by hand: its cell.yaml (ablations recorded before cell.yaml: the base
    config and the flags they recorded)."""
    if cell.flags:
        return shlex.join(["python", "-m", "fwi.train", "--config", info["base"], *cell.flags])
    cell_yaml = Path(info["out"]) / info["name"] / "runs" / cell.run / CELL_CONFIG
    return shlex.join(["python", "-m", "fwi.train", "--config", str(cell_yaml)])


def render_report(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                  plots: list[str]) -> str:
    """report.md: the sections below, in order; one section per test family of the spec; the after-FWI section only
    when some run has a refined evaluation."""
    lines = [*_overview(info, rows), *_per_variant(groups), *_differences(info, rows, groups), *_ranking(groups),
             *_families(info, rows, groups), *_refined(info, rows, groups), *_failures(info, rows), *_runs(rows)]
    if plots:
        lines += ["## Figures", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _overview(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Title, description, whether the baseline learned the salt, findings, preset notes, settings and how to
    reproduce."""
    name, baseline = info["name"], info["baseline"]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    pending = [r for r in rows if r["status"] == "pending"]
    sources = sorted({r["source"] for r in ok})
    src_text = {"test": "the **test** split (`python -m fwi.evaluate RUN --split test`)",
                "val": "the **validation** split (summary.json of the run; no test evaluation available)"}
    lines = [f"# Ablation `{name}`", ""]
    if info["spec"].get("description"):
        lines += [str(info["spec"]["description"]).strip(), ""]
    base_runs = [r for r in ok if r["variant"] == baseline and r.get("iou") is not None]
    if base_runs:
        ious = [r["iou"] for r in base_runs]
        mean = sum(ious) / len(ious)
        per_seed = ", ".join(f"seed {r['seed']}: {r['iou']:.3f}" for r in base_runs)
        lines += [f"Has the baseline learned the salt? `{baseline}` reaches a salt IoU of {mean:.3f} on the "
                  f"{base_runs[0]['source']} split ({per_seed}).", ""]
    if info["spec"].get("findings"):
        lines += ["## Findings", "", str(info["spec"]["findings"]).strip(), ""]
    if info["spec"].get("notes"):
        lines += ["## Preset", "", str(info["spec"]["notes"]).strip(), ""]
    lines += [f"- preset **{info['preset']}** (`{info['data']}`, data seed {info['data_seed']}), base config "
              f"`{info['base']}`, epochs: {info['epochs']}",
              f"- {len(rows)} cells: {len(ok)} finished, {len(failed)} failed, {len(pending)} not run",
              "- metrics on " + (" and ".join(src_text[s] for s in sources) if sources else "–")
              + (" — **mixed sources**, see the `source` column" if len(sources) > 1 else ""),
              "- MAE / RMSE on the normalised velocity ([-1, 1]) and in m/s; IoU / Dice of the salt mask; data "
              "misfit of the predicted model re-modelled; step time = training ms per sample (epochs after the first), "
              "as each cell met its machine: cells that ran in other sessions or beside other work are not "
              "comparable to the millisecond; side-by-side step-time ratios come from `experiments/bench/`",
              "", "Reproduce (finished cells are skipped, so this also resumes):", "",
              "```", info["command"], "```", ""]
    if info["cells"]:
        lines += ["One cell by hand (here the first):", "", "```", hand_command(info, Cell.from_dict(info["cells"][0])),
                  "```", ""]
    return lines


def _per_variant(groups: list[dict[str, Any]]) -> list[str]:
    """Mean ± std over seeds of every metric, with size and cost, one row per variant."""
    header = ["variant", "n", *[m[1] for m in METRICS], "params", "GFLOPs", "ms/sample", "source"]
    table = []
    for g in groups:
        table.append([f"`{g['variant']}`", f"{g['n']}/{g['n_cells']}", *[_pm(g, k, s) for k, _, _, s in METRICS],
                      _fmt(g["params"], ",.0f"), _fmt(None if g["flops"] is None else g["flops"] / 1e9, ".3f"),
                      _pm(g, "step_ms", ".2f"), "/".join(g["sources"]) or "–"])
    return ["## Per variant: mean ± std over seeds", "", *_md_table(header, table), ""]


def _differences(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[str]:
    """Each variant minus its baseline, with the pooled standard error, the t-test star and the paired differences."""
    baseline = info["baseline"]
    noise = pooled_variance(groups, "mae")
    dof_text = ("none yet: no variant has two runs" if noise is None else
                f"here {noise[1]}: t = {critical_t(noise[1]):.2f}" if noise[1] >= MIN_STAR_DOF else
                f"here {noise[1]}: no star until there are {MIN_STAR_DOF}, since one pair of seeds can agree by chance")
    lines = [f"## Difference to the baseline `{baseline}`", "",
             "Δ = mean(variant) − mean(baseline) ± its standard error s_p √(1/n_v + 1/n_b), s_p² the seed "
             "variance pooled over every variant with two or more runs (one noise level for all: with two seeds a "
             "variant's own variance rests on a single degree of freedom); * where |Δ| exceeds Student's t "
             f"two-sided 5 % critical value for the pooled degrees of freedom ({dof_text}). With two seeds per "
             "variant read * as a pointer to what deserves more seeds, not as proof. Paired: the per-seed "
             "differences (same seed in both). Negative ΔMAE / positive ΔSSIM, ΔIoU are improvements.", ""]
    diff_metrics = [m for m in METRICS if m[0] in ("mae", "mae_ms", "rmse", "ssim", "iou", "data_misfit")]
    header = ["variant", "vs", *[f"Δ{m[1]}" for m in diff_metrics], "paired ΔMAE"]
    table = []
    for g in groups:
        ref = baseline_for(g, groups, baseline)
        if not g["n"] or ref is None or ref["variant"] == g["variant"]:
            continue
        cells = [f"`{g['variant']}`", f"`{ref['variant']}`"]
        for key, _, _, spec in diff_metrics:
            d = difference(g, ref, rows, key, pooled_variance(groups, key))
            if d is None:
                cells.append("–")
                continue
            text = format(d["diff"], "+" + spec)
            if d["se"] is not None:
                text += f" ± {format(d['se'], spec)}" + (" *" if d["significant"] else "")
            cells.append(text)
        d = difference(g, ref, rows, "mae", None)
        cells.append(", ".join(f"s{s}: {v:+.4f}" for s, v in d["paired"].items()) if d and d["paired"] else "–")
        table.append(cells)
    return lines + (_md_table(header, table) if table else ["(no finished baseline or no other variant)"]) + [""]


def _ranking(groups: list[dict[str, Any]]) -> list[str]:
    """Variants ranked by MAE and by IoU."""
    lines = ["## Ranking", ""]
    for key, title, higher, spec in (METRICS[0], METRICS[5]):
        ranked = sorted((g for g in groups if g.get(key) is not None), key=lambda g: g[key], reverse=higher)
        lines += [f"By {title} ({'higher' if higher else 'lower'} is better):", ""]
        lines += [f"{i}. `{g['variant']}` {_pm(g, key, spec)}" for i, g in enumerate(ranked, 1)] or ["–"]
        lines += [""]
    return lines


def _families(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[str]:
    """Per test family of the spec: each variant's metrics there (mean ± std over seeds), its difference to the
    baseline (± the pooled standard error, as in the difference section) and its MAE there over its test MAE."""
    baseline, lines = info["baseline"], []
    for family in families_of(info):
        name = family.name
        lines += [f"## Test family `{name}`", "",
                  f"Preset `{family.preset}` (`{family.data}`, data seed {family.seed}), its {family.split} "
                  f"split, never trained on: `python -m fwi.evaluate {shlex.join(family.evaluate_args(Path('RUN')))}` "
                  "(the run's own normalisation). Mean ± std over seeds; Δ to "
                  f"`{baseline}` ± its standard error with the seed variance pooled over the variants, * as above; "
                  "MAE ratio: a run's MAE here over its MAE in the per-variant table, averaged over its runs.", ""]
        keys = [f"{name}/{k}" for k, *_ in FAMILY_METRICS]
        header = ["variant", "n", *[m[1] for m in FAMILY_METRICS], "ΔMAE (m/s)", "ΔIoU", "MAE ratio"]
        table = []
        for g in groups:
            ok = [r for r in rows
                  if r["variant"] == g["variant"] and r["status"] == "ok" and r.get(keys[0]) is not None]
            if not ok:
                continue
            ref = baseline_for(g, groups, baseline)
            deltas = []
            for key, spec in ((keys[0], ".1f"), (f"{name}/iou", ".4f")):
                d = None if ref is None or ref["variant"] == g["variant"] else \
                    difference(g, ref, rows, key, pooled_variance(groups, key))
                text = "–" if d is None else format(d["diff"], "+" + spec)
                if d is not None and d["se"] is not None:
                    text += f" ± {format(d['se'], spec)}" + (" *" if d["significant"] else "")
                deltas.append(text)
            ratios = [r[keys[0]] / r["mae_ms"] for r in ok if r.get("mae_ms")]
            table.append([f"`{g['variant']}`", str(len(ok)), *[_pm(g, k, m[3]) for k, m in zip(keys, FAMILY_METRICS)],
                          *deltas, _fmt(statistics.fmean(ratios) if ratios else None, ".2f")])
        lines += (_md_table(header, table) if table else ["(no run evaluated on this family yet)"]) + [""]
    return lines


def _refined(info: dict[str, Any], rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[str]:
    """After FWI refinement: per variant, the network's metrics and the refined ones on the refined models, and the
    difference to the baseline after refinement; nothing when no run has a refined evaluation."""
    if not has_refined(rows):
        return []
    baseline = info["baseline"]
    refined = [r for r in rows if r["status"] == "ok" and r.get("fwi_n") is not None]
    stats = _refined_stats(refined, groups)
    setups = sorted({r["fwi_setup"] or "?" for r in refined})
    finished = [r for r in rows if r["status"] == "ok"]
    missing = [f"`{r['run']}`" for r in finished if r.get("fwi_n") is None]
    base = stats.get(baseline)
    lines = ["## After FWI refinement", "",
             "Does a variant give a better starting model for FWI? Each run's predictions refined by FWI "
             "(`python -m fwi.evaluate RUN --refine`, `fwi.invert`); network → after FWI on the same refined test "
             "models, mean ± std over seeds of the per-run means; Δ after FWI = mean(variant) − mean(baseline "
             f"`{baseline}`) after refinement.", "",
             "- refinement: " + "; ".join(f"`{s}`" for s in setups)
             + (" — **mixed settings**, see the `fwi_setup` column of results.csv" if len(setups) > 1 else ""),
             f"- {len(refined)} of {len(finished)} finished runs refined"
             + (f"; not refined: {', '.join(missing[:6])}" + (f" and {len(missing) - 6} more" if missing[6:] else "")
                if missing else ""),
             "- IoU: the network's salt head before, the refined model's salt mask after (for the `velocity` method "
             "the cells above the salt velocity threshold); data misfit of each model re-modelled; details per run "
             "in `<run>/eval-test/refined.md`", ""]
    header = ["variant", "runs", "models/run", *[f"{m[1]}: network → FWI" for m in REFINED_METRICS],
              *[f"Δ{m[1]} after FWI" for m in REFINED_METRICS if m[0] in ("mae_ms", "iou")]]
    table = []
    for variant, st in stats.items():
        cells = [f"`{variant}`", str(st["n"]), ", ".join(str(n) for n in st["models"])]
        for key, _, _, spec in REFINED_METRICS:
            cells.append(f"{_pm_pair(st[f'{key}_before'], spec)} → {_pm_pair(st[f'{key}_after'], spec)}")
        for key, _, _, spec in REFINED_METRICS:
            if key in ("mae_ms", "iou"):
                a, b = st[f"{key}_after"][0], (base or {}).get(f"{key}_after", (None, None))[0]
                cells.append("–" if a is None or b is None or variant == baseline else format(a - b, "+" + spec))
        table.append(cells)
    lines += _md_table(header, table) + [""]
    ranked = sorted((v for v in stats if stats[v]["mae_ms_after"][0] is not None),
                    key=lambda v: stats[v]["mae_ms_after"][0])
    lines += ["By MAE (m/s) after FWI (lower is better):", ""]
    lines += [f"{i}. `{v}` {_pm_pair(stats[v]['mae_ms_after'], '.1f')} (network "
              f"{_pm_pair(stats[v]['mae_ms_before'], '.1f')})" for i, v in enumerate(ranked, 1)] or ["–"]
    return lines + [""]


def _refined_stats(refined: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant with refined runs (in report order): runs, models per run, (mean, std) over seeds of each
    ``<metric>_before`` / ``<metric>_after``."""
    stats = {}
    for g in groups:
        runs = [r for r in refined if r["variant"] == g["variant"]]
        if runs:
            stats[g["variant"]] = {"n": len(runs), "models": sorted({r["fwi_n"] for r in runs}),
                                   **{f"{k}_{tag}": _mean_std([r.get(f"fwi_{k}_{tag}") for r in runs])
                                      for k, *_ in REFINED_METRICS for tag in ("before", "after")}}
    return stats


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm_pair(value: tuple[float | None, float | None], spec: str) -> str:
    mean, std = value
    if mean is None:
        return "–"
    return format(mean, spec) + ("" if std is None else f" ± {format(std, spec)}")


def _failures(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Failed cells (exit code, last line of stderr), failed test evaluations and cells not run yet."""
    run_dir = Path(info["out"]) / info["name"] / "runs"
    failed = [r for r in rows if r["status"] == "failed"]
    lines = ["## Failed cells", ""]
    if failed:
        table = []
        for r in failed:
            err = tail_text(run_dir / r["run"] / "error.txt", 1000).splitlines()
            code = err[0].removeprefix("exit code ") if err else "?"
            last = next((ln for ln in reversed(err) if ln.strip()), "")
            table.append([f"`{r['run']}`", code, last.replace("|", "\\|")[:200]])
        lines += _md_table(["run", "exit code", "last line of stderr (full: `<run>/error.txt`)"], table)
    else:
        lines += ["none"]
    lines += [""]
    eval_failed = []
    for r in rows:
        if r["status"] != "ok":
            continue
        err = tail_text(run_dir / r["run"] / "eval_error.txt", 1000).splitlines()
        if err and r["source"] != "test":
            last = next((ln for ln in reversed(err) if ln.strip()), "")
            eval_failed.append(f"- `{r['run']}`: {last[:200]} (`<run>/eval_error.txt`; delete it to retry)")
    if eval_failed:
        lines += ["Test evaluation failed (validation metrics used instead):", "", *eval_failed, ""]
    pending = [r for r in rows if r["status"] == "pending"]
    if pending:
        lines += ["Not run yet: " + ", ".join(f"`{r['run']}`" for r in pending), ""]
    return lines


def _runs(rows: list[dict[str, Any]]) -> list[str]:
    """One row per cell."""
    header = ["run", "variant", "seed", "status", "source", "MAE", "MAE (m/s)", "SSIM", "IoU", "best epoch",
              "ms/sample"]
    return ["## Runs", "", *_md_table(header, [[f"`{r['run']}`", f"`{r['variant']}`", str(r["seed"]), r["status"],
                                                r["source"] or "–", _fmt(r["mae"], ".4f"), _fmt(r["mae_ms"], ".1f"),
                                                _fmt(r["ssim"], ".4f"), _fmt(r["iou"], ".4f"),
                                                _fmt(r["best_epoch"], "d"), _fmt(r["step_ms"], ".2f")]
                                               for r in rows]), ""]


def _refresh_from_spec(info: dict[str, Any]) -> None:
    """Take the prose (description, notes, findings) and the test families from the spec file as it is now: prose is
    written after the runs started, findings once the numbers are in, and a family may be added to a running
    ablation (its evaluations are then run by the next ``fwi.ablate SPEC``, or by hand)."""
    try:
        spec = read_yaml(Path(info["spec_path"]))
        families = families_of(spec) if isinstance(spec, dict) else []
    except (KeyError, OSError, ValueError):
        return
    if isinstance(spec, dict) and spec.get("name") == info["name"]:
        for key in ("description", "notes", "findings"):
            info["spec"][key] = spec.get(key)
        if families:
            info["test_families"] = {f.name: f.to_dict() for f in families}


def build_report(abl_dir: Path, wandb: str = "disabled", seeds: Sequence[int] | None = None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """results.csv, report.md, the plots (and the W&B summary run unless disabled) from the run directories.

    ``seeds``: only the cells of these seeds, written to ``<abl_dir>/seeds-<a>-<b>/`` (e.g. the final comparison of
    an ablation whose variants were selected on other seeds); the full report is left as it is."""
    info = read_json(abl_dir / "ablation.json")
    if info is None:
        raise FileNotFoundError(f"{abl_dir / 'ablation.json'} not found: is {abl_dir} an ablation directory "
                                "(written by `python -m fwi.ablate SPEC.yaml`)?")
    info["out"] = str(abl_dir.parent)
    _refresh_from_spec(info)
    target = abl_dir
    if seeds is not None:
        known = sorted({int(c["seed"]) for c in info["cells"]})
        if not set(seeds) <= set(known):
            raise ValueError(f"--seeds {' '.join(map(str, seeds))}: the ablation's seeds are "
                             f"{', '.join(map(str, known))}")
        info["cells"] = [c for c in info["cells"] if int(c["seed"]) in set(seeds)]
        target = abl_dir / ("seeds-" + "-".join(map(str, sorted(set(seeds)))))
        target.mkdir(exist_ok=True)
        wandb = "disabled"  # one W&B summary per ablation: the full one
    rows = collect(info, abl_dir)
    write_csv(rows, target / "results.csv")
    rows = read_csv(target / "results.csv")  # the report uses exactly what the CSV holds
    groups = aggregate(rows)
    plots = make_plots(groups, target, info["baseline"])
    text = render_report(info, rows, groups, plots)
    if seeds is not None:  # say so under the title
        title, _, rest = text.partition("\n")
        text = (f"{title}\n\n> Only the cells of seed(s) {', '.join(map(str, sorted(set(seeds))))} "
                f"(`python -m fwi.ablate report {abl_dir} --seeds {' '.join(map(str, sorted(set(seeds))))}`); "
                f"the report of every cell is `../report.md`.\n{rest}")
    write_text(target / "report.md", text)
    log_summary(info, rows, groups, abl_dir, wandb, plots)
    return rows, groups

