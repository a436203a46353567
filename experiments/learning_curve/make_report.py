"""Learning-curve figures and table from the ablation's results.csv (``python -m fwi.ablate report`` writes it).

    python experiments/learning_curve/make_report.py

Writes ``learning_curve.png`` (test MAE, SSIM and salt IoU against the number of training models, mean ± std over
seeds, log-scaled size axis), ``attention_gain.png`` (each attention variant minus the plain U-Net at the same size
and seed, mean ± standard error of the paired differences, fresh runs as a line; the 6000-model seeds 0 and 1, whose
cells chose the variants, as a separate shaded point) and ``curve.md`` (the same numbers as a table, and the trend of
the gain over the fresh runs: the pooled paired gain and its least-squares slope per doubling of the training set;
with a fresh seed at 6000 models, the selection bias: the selection runs' gain minus the fresh one). Sizes with no
finished cell are left out; a point with one seed has no error bar.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import linregress  # noqa: E402

from fwi.ablation.stats import pooled_variance  # noqa: E402

HERE = Path(__file__).resolve().parent
BASE = "none"
VARIANTS = {"none": "plain U-Net", "ca-skip": "coordinate attention on the skips",
            "se-encskip": "SE in encoder + skips"}
METRICS = (("mae_ms", "test MAE (m/s)"), ("ssim", "test SSIM"), ("iou", "test salt IoU"))
DIGITS = {"mae_ms": 1, "ssim": 4, "iou": 4}
LABEL = re.compile(r"^(?P<variant>.+)-n(?P<size>\d+)$")
# The 6000-model cells of seeds 0 and 1 are the recorded ablation's, on which the two attention variants were picked
# as its best: their gain is an upper estimate (selection bias), so it is kept apart from the fresh runs (every other
# cell, a third seed at 6000 included) in the gain table, the gain plot and the trend.
SELECTION_SIZE, SELECTION_SEEDS = 6000, (0, 1)
SELECTION_NOTE = (f"\"selection\": the {SELECTION_SIZE}-model cells of seeds {SELECTION_SEEDS[0]} and "
                  f"{SELECTION_SEEDS[1]} are the recorded ablation's (experiments/salt70_attention), the runs on "
                  "which these two variants were picked as the best of 12: their gain is an upper estimate "
                  "(selection bias). \"fresh\": every other cell, trained for this curve.")


def load(path: Path) -> dict[tuple[str, int], dict[int, dict[str, float]]]:
    """(variant, size) -> seed -> metrics of the finished cells."""
    out: dict[tuple[str, int], dict[int, dict[str, float]]] = {}
    for row in csv.DictReader(path.open()):
        match = LABEL.match(row["label"])
        if row["status"] != "ok" or not match:
            continue
        key = (match["variant"], int(match["size"]))
        out.setdefault(key, {})[int(row["seed"])] = {k: float(row[k]) for k, _ in METRICS}
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def is_selection(size: int, seed: int) -> bool:
    """Whether the cell is one of the recorded ablation's selection runs."""
    return size == SELECTION_SIZE and seed in SELECTION_SEEDS


def paired_diffs(cells, variant: str, size: int, metric: str, selection: bool = False) -> list[float]:
    """Variant minus plain U-Net at the same size, one difference per seed both have, among the fresh runs (or,
    with ``selection``, among the selection runs)."""
    ours, base = cells.get((variant, size), {}), cells.get((BASE, size), {})
    seeds = [s for s in sorted(set(ours) & set(base)) if is_selection(size, s) == selection]
    return [ours[s][metric] - base[s][metric] for s in seeds]


def mean_se(d: list[float]) -> tuple[float, float]:
    """Mean and standard error (NaN with one value; both NaN with none)."""
    if not d:
        return float("nan"), float("nan")
    return float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def paired_gain(cells, variant: str, size: int, metric: str, selection: bool = False) -> tuple[float, float, int]:
    """Mean and standard error of variant - plain at the same size and seed, and the number of pairs (fresh runs,
    or the selection runs with ``selection``)."""
    d = paired_diffs(cells, variant, size, metric, selection)
    return (*mean_se(d), len(d))


def gain_trend(cells, variant: str, metric: str) -> tuple[int, float, float, float, float]:
    """Pairs, pooled mean ± SE and slope ± SE per doubling of size of the paired gain over the fresh runs.

    Every fresh (size, seed) pair of variant and plain U-Net counts once (pairs taken as independent); the slope is
    ordinary least squares of the gain on log2(size) (NaN with fewer than 3 pairs or fewer than 2 sizes).
    """
    x, d = [], []
    for size in sorted(s for name, s in cells if name == variant):
        diffs = paired_diffs(cells, variant, size, metric)
        x += [np.log2(size)] * len(diffs)
        d += diffs
    slope = slope_se = float("nan")
    if len(d) >= 3 and len(set(x)) >= 2:
        fit = linregress(x, d)
        slope, slope_se = float(fit.slope), float(fit.stderr)
    return (len(d), *mean_se(d), slope, slope_se)


def pair_sd(cells, variant: str, metric: str) -> tuple[float, int]:
    """Scatter of one fresh paired difference: the within-size standard deviation of the fresh pairs, pooled over
    the sizes with two or more of them (one noise level for every size), and its degrees of freedom."""
    sizes = sorted(s for name, s in cells if name == variant)
    groups = [{"n": len(d), "diff_std": float(np.std(d, ddof=1))}
              for d in (paired_diffs(cells, variant, size, metric) for size in sizes) if len(d) > 1]
    pooled = pooled_variance(groups, "diff")
    return (float(np.sqrt(pooled[0])), pooled[1]) if pooled else (float("nan"), 0)


def selection_bias(cells, variant: str, metric: str, sd: float) -> tuple[float, float, float, float]:
    """Gain of the selection runs, fresh gain at the selection size, their difference (the selection bias) and its
    standard error from ``sd``, the scatter of one pair (``pair_sd``); NaN where either gain is missing."""
    sel = paired_diffs(cells, variant, SELECTION_SIZE, metric, selection=True)
    fresh = paired_diffs(cells, variant, SELECTION_SIZE, metric)
    if not sel or not fresh:
        return (float("nan"),) * 4
    bias = float(np.mean(sel) - np.mean(fresh))
    return float(np.mean(sel)), float(np.mean(fresh)), bias, sd * float(np.sqrt(1 / len(sel) + 1 / len(fresh)))


def _fmt(value: float, spread: float, metric: str, sign: bool = False) -> str:
    d = DIGITS[metric]
    if np.isnan(value):
        return "–"
    text = f"{value:+.{d}f}" if sign else f"{value:.{d}f}"
    return text if np.isnan(spread) else f"{text} ± {spread:.{d}f}"


def main() -> None:
    cells = load(HERE / "results.csv")
    sizes = sorted({s for _, s in cells})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for (metric, title), ax in zip(METRICS, axes):
        for variant, name in VARIANTS.items():
            xs = [s for s in sizes if (variant, s) in cells]
            stats = [mean_std([m[metric] for m in cells[(variant, s)].values()]) for s in xs]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[0 if np.isnan(e) else e for _, e in stats], marker="o",
                        capsize=3, label=name)
        ax.set(xscale="log", xlabel="training models", title=title)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()  # log-axis minor labels would overprint the sizes
    axes[0].legend(fontsize=8)
    fig.savefig(HERE / "learning_curve.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    lines = ["| variant | models | runs | seeds | ΔMAE (m/s) | ΔSSIM | ΔIoU |", "|---|---|---|---|---|---|---|"]
    for variant, name in VARIANTS.items():
        if variant == BASE:
            continue
        for size in sizes:
            for selection in (False, True):
                gains = [paired_gain(cells, variant, size, m, selection) for m, _ in METRICS]
                if gains[0][2]:
                    cols = " | ".join(_fmt(g, se, k, sign=True) for (g, se, _), (k, _) in zip(gains, METRICS))
                    runs = "selection" if selection else "fresh"
                    lines.append(f"| {variant} | {size} | {runs} | {gains[0][2]} | {cols} |")
        for (metric, _title), ax in zip(METRICS, axes):
            color = None  # the selection point takes the colour of the variant's fresh line
            for selection in (False, True):
                points = [(s, paired_gain(cells, variant, s, metric, selection)) for s in sizes]
                xs, g = [s for s, p in points if p[2]], [p for _, p in points if p[2]]
                shown = [x * 1.1 for x in xs] if selection else xs  # beside a fresh point at the same size
                drawn = ax.errorbar(shown, [m for m, _, _ in g], yerr=[0 if np.isnan(e) else e for _, e, _ in g],
                                    marker="s" if selection else "o", mfc="none" if selection else None, capsize=3,
                                    color=color, ls="none" if selection else "-", label=None if selection else name)
                color = drawn.lines[0].get_color()
    for (metric, title), ax in zip(METRICS, axes):
        ax.axhline(0, color="k", lw=0.8)
        if SELECTION_SIZE in sizes:
            ax.axvspan(SELECTION_SIZE / 1.3, SELECTION_SIZE * 1.3, color="0.9", zorder=0,
                       label="open squares: selection runs (gain biased up)" if metric == METRICS[0][0] else None)
        ax.set(xscale="log", xlabel="training models", title=f"Δ {title} vs plain U-Net")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()  # log-axis minor labels would overprint the sizes
    axes[0].legend(fontsize=8)
    fig.savefig(HERE / "attention_gain.png", dpi=110)
    plt.close(fig)

    table = ["| variant | models | seeds | MAE (m/s) | SSIM | IoU |", "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for size in sizes:
            if (variant, size) in cells:
                runs = cells[(variant, size)]
                cols = " | ".join(_fmt(*mean_std([r[k] for r in runs.values()]), k) for k, _ in METRICS)
                table.append(f"| {variant} | {size} | {len(runs)} | {cols} |")
    trend = ["| variant | metric | pairs | pooled gain | slope per doubling |", "|---|---|---|---|---|"]
    for variant in VARIANTS:
        if variant != BASE:
            for metric, title in METRICS:
                n, mean, se, slope, slope_se = gain_trend(cells, variant, metric)
                if n:
                    name = title.removeprefix("test ")
                    trend.append(f"| {variant} | {name} | {n} | {_fmt(mean, se, metric, sign=True)} | "
                                 f"{_fmt(slope, slope_se, metric, sign=True)} |")
    bias = ["| variant | metric | selection gain | fresh gain | selection − fresh | one pair's SD (dof) |",
            "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        if variant != BASE:
            for metric, title in METRICS:
                sd, dof = pair_sd(cells, variant, metric)
                sel, fresh, diff, se = selection_bias(cells, variant, metric, sd)
                if not np.isnan(diff):
                    bias.append(f"| {variant} | {title.removeprefix('test ')} | {_fmt(sel, np.nan, metric, True)} | "
                                f"{_fmt(fresh, np.nan, metric, True)} | {_fmt(diff, se, metric, True)} | "
                                f"{_fmt(sd, np.nan, metric)} ({dof}) |")
    bias_text = ("" if len(bias) == 2 else
                 f"\n\n## Selection bias at {SELECTION_SIZE} models\n\nGain of the selection runs minus the fresh "
                 f"gain at the same size (seeds other than {SELECTION_SEEDS[0]} and {SELECTION_SEEDS[1]}); its SE "
                 "comes from the scatter of one fresh paired difference (within-size SD pooled over the sizes with "
                 "two or more pairs). A negative MAE or a positive SSIM / IoU difference means the selection runs "
                 "flattered the variant.\n\n" + "\n".join(bias))
    (HERE / "curve.md").write_text("## Test metrics by training-set size (mean ± std over seeds)\n\n"
                                   + "\n".join(table) + "\n\n## Attention gain (variant − plain U-Net, same size and "
                                   "seed; mean ± SE of the paired differences)\n\n" + "\n".join(lines) + "\n\n"
                                   + SELECTION_NOTE + "\n\n## Trend of the gain over the fresh runs (all but the "
                                   f"{SELECTION_SIZE}-model selection runs)\n\nEvery (size, seed) pair counts once. "
                                   "Pooled gain: mean ± SE of the paired differences; slope: least-squares fit of the "
                                   "gain on log2(size) ± its SE, so a positive MAE slope means attention helps less "
                                   "with more data.\n\n"
                                   + "\n".join(trend) + bias_text + "\n")
    print(f"{len(cells)} (variant, size) points; wrote learning_curve.png, attention_gain.png, curve.md")


if __name__ == "__main__":
    main()
