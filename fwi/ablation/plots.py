"""Figures of an ablation: metrics_bars.png and accuracy_vs_time.png, with far outliers drawn on the axis edge."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

from fwi.atomic import atomic_path


def axis_range(values: Sequence[float], keep: Sequence[float] = (), factor: float = 8.0,
               min_points: int = 5) -> tuple[float, float] | None:
    """Y limits that leave out far outliers, so that one very different variant (say InversionNet among U-Nets)
    does not squash the differences between the others; None when nothing is left out.

    An outlier lies more than ``factor`` median absolute deviations from the median of ``values`` (only with
    ``min_points`` values or more); ``keep`` (the baseline) always stays inside. Limits pad the kept span by 8 %.
    """
    if len(values) < min_points:
        return None
    mid = statistics.median(values)
    mad = statistics.median(abs(v - mid) for v in values)
    if mad <= 0:
        return None
    kept = [v for v in values if abs(v - mid) <= factor * mad or v in keep]
    if len(kept) == len(values):
        return None
    lo, hi = min(kept + list(keep)), max(kept + list(keep))
    pad = 0.08 * (hi - lo) or 0.08 * abs(hi) or 1.0
    return lo - pad, hi + pad


def _clip_axis(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], keep: Sequence[float] = (),
               spans: Sequence[float] | None = None) -> None:
    """Apply :func:`axis_range` to ``ax``: each point left out is drawn as a triangle on the edge it lies beyond,
    with its label and value, so it is still seen."""
    limits = axis_range(list(ys), keep)
    if limits is None:
        return
    inside = [limits[0] <= y <= limits[1] for y in ys]
    spans = spans or [0.0] * len(ys)
    lo = min([limits[0]] + [y - e for y, e, i in zip(ys, spans, inside) if i])  # kept error bars fit
    hi = max([limits[1]] + [y + e for y, e, i in zip(ys, spans, inside) if i])
    ax.set_ylim(lo, hi)
    for x, y, label, i in zip(xs, ys, labels, inside):
        if i:
            continue
        edge, marker, offset = (hi, "^", -12) if y > hi else (lo, "v", 6)
        ax.plot([x], [edge], marker=marker, color="tab:red", markersize=9, clip_on=False, zorder=5)
        text = f"{label} {y:.3g}" if label else f"{y:.3g}"
        ax.annotate(f"{text} (off scale)", (x, edge), xytext=(0, offset), textcoords="offset points",
                    ha="center", fontsize=7, color="tab:red")


def make_plots(groups: list[dict[str, Any]], abl_dir: Path, baseline: str) -> list[str]:
    """metrics_bars.png (each variant's mean ± std over seeds, against the baseline) and accuracy_vs_time.png
    (atomically); far outliers sit on the axis edge (:func:`_clip_axis`); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [g for g in groups if g["n"] and g.get("mae") is not None]
    if not done:
        return []
    names = [g["variant"] for g in done]
    color = {g["variant"]: "tab:gray" if g["label"] == baseline else "tab:blue" for g in done}
    written = []
    # points with error bars, not bars: the differences are a few per cent of the values, and an axis cut off
    # above zero makes bar heights lie; the dashed line is the baseline's mean
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 0.55 * len(done) * 3), 4.2), constrained_layout=True)
    for ax, (key, title) in zip(axes, (("mae", "MAE (normalised) ↓"), ("ssim", "SSIM ↑"), ("iou", "salt IoU ↑"))):
        for x, g in enumerate(done):
            if g.get(key) is not None:
                ax.errorbar(x, g[key], yerr=g.get(f"{key}_std") or 0.0, fmt="o", color=color[g["variant"]], capsize=3)
                if g["label"] == baseline:
                    ax.axhline(g[key], color=color[g["variant"]], linestyle="--", linewidth=1)
        shown = [(x, g) for x, g in enumerate(done) if g.get(key) is not None]
        _clip_axis(ax, [x for x, _ in shown], [g[key] for _, g in shown], ["" for _ in shown],
                   keep=[g[key] for _, g in shown if g["label"] == baseline],
                   spans=[g.get(f"{key}_std") or 0.0 for _, g in shown])
        ax.set_xticks(range(len(done)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("mean ± std over seeds")
    written.append(_save_fig(fig, abl_dir / "metrics_bars.png"))
    plt.close(fig)

    timed = [g for g in done if g.get("step_ms") is not None]
    if timed:
        fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
        pmax = max((g["params"] or 0) for g in timed) or 1
        for g in timed:
            size = 30 + 470 * (g["params"] or 0) / pmax
            ax.errorbar(g["step_ms"], g["mae"], yerr=g.get("mae_std") or 0.0, fmt="none", ecolor="0.6", capsize=2)
            ax.scatter(g["step_ms"], g["mae"], s=size, alpha=0.6,
                       color=color[g["variant"]], edgecolor="k")
            ax.annotate(g["variant"], (g["step_ms"], g["mae"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        _clip_axis(ax, [g["step_ms"] for g in timed], [g["mae"] for g in timed], [g["variant"] for g in timed],
                   keep=[g["mae"] for g in timed if g["label"] == baseline],
                   spans=[g.get("mae_std") or 0.0 for g in timed])
        ax.set_xlabel("training step time (ms per sample, as each cell logged it under its machine load)")
        ax.set_ylabel("MAE (normalised) ↓")
        ax.set_title("accuracy vs time (marker area ∝ parameters)")
        ax.grid(alpha=0.3)
        written.append(_save_fig(fig, abl_dir / "accuracy_vs_time.png"))
        plt.close(fig)
    return written


def _save_fig(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path.name
