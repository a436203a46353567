"""Figures shared by training, evaluation, the ablation report and the notebook (matplotlib, Agg backend)."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

VELOCITY_CMAP = "jet"
ERROR_CMAP = "RdBu_r"
SEISMIC_CMAP = "gray"


def _np(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x)


def velocity_panels(true_v: Sequence, pred_v: Sequence, true_mask: Sequence | None = None,
                    pred_mask: Sequence | None = None, titles: Sequence[str] | None = None,
                    dx: float = 10.0, vrange: tuple[float, float] | None = None) -> Figure:
    """One row per sample: true velocity, predicted velocity, error (m/s); salt outlines (true white, predicted black).

    true_v, pred_v: (N, nz, nx) in m/s; masks (N, nz, nx) in {0, 1}.
    """
    true_v, pred_v = _np(true_v), _np(pred_v)
    n, nz, nx = true_v.shape
    vmin, vmax = vrange or (float(min(true_v.min(), pred_v.min())), float(max(true_v.max(), pred_v.max())))
    emax = float(np.abs(pred_v - true_v).max()) or 1.0
    extent = (0, nx * dx / 1000, nz * dx / 1000, 0)
    fig, axes = plt.subplots(n, 3, figsize=(9.5, 2.8 * n + 0.4), squeeze=False, constrained_layout=True)
    for i in range(n):
        images = [(true_v[i], VELOCITY_CMAP, vmin, vmax, "true"), (pred_v[i], VELOCITY_CMAP, vmin, vmax, "predicted"),
                  (pred_v[i] - true_v[i], ERROR_CMAP, -emax, emax, "predicted - true")]
        for j, (img, cmap, lo, hi, label) in enumerate(images):
            ax = axes[i, j]
            im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, extent=extent, aspect="auto")
            for masks, colour in ((true_mask, "white"), (pred_mask, "black")):
                if masks is not None and j < 2 and _np(masks)[i].any():
                    # cell-centre coordinates in km; the axes already run downwards (imshow extent)
                    ax.contour((np.arange(nx) + 0.5) * dx / 1000, (np.arange(nz) + 0.5) * dx / 1000,
                               _np(masks)[i], levels=[0.5], colors=colour, linewidths=0.8)
            ax.set_title(f"{titles[i] + ': ' if titles else ''}{label}", fontsize=8)
            ax.set_xlabel("x (km)", fontsize=7)
            ax.set_ylabel("z (km)", fontsize=7)
            ax.tick_params(labelsize=6)
            if i == 0 or j == 2:
                fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    return fig


def refinement_panels(true_v: Sequence, start_v: Sequence, refined_v: Sequence, true_mask: Sequence | None = None,
                      titles: Sequence[str] | None = None, dx: float = 10.0,
                      vrange: tuple[float, float] | None = None) -> Figure:
    """One row per model of an FWI refinement: truth, start, refined (one velocity scale), the update refined - start,
    and the error change |refined - true| - |start - true| (blue: FWI moved the cell towards the truth, red: away);
    true salt outline in white. true_v, start_v, refined_v: (N, nz, nx) m/s; true_mask (N, nz, nx) in {0, 1}."""
    true_v, start_v, refined_v = _np(true_v), _np(start_v), _np(refined_v)
    n, nz, nx = true_v.shape
    lo, hi = vrange or (float(min(a.min() for a in (true_v, start_v, refined_v))),
                        float(max(a.max() for a in (true_v, start_v, refined_v))))
    update = refined_v - start_v
    change = np.abs(refined_v - true_v) - np.abs(start_v - true_v)
    umax = float(np.abs(update).max()) or 1.0
    cmax = float(np.abs(change).max()) or 1.0
    extent = (0, nx * dx / 1000, nz * dx / 1000, 0)
    fig, axes = plt.subplots(n, 5, figsize=(16, 2.6 * n + 0.4), squeeze=False, constrained_layout=True)
    for i in range(n):
        mae_start, mae_refined = np.abs(start_v[i] - true_v[i]).mean(), np.abs(refined_v[i] - true_v[i]).mean()
        panels = [(true_v[i], VELOCITY_CMAP, lo, hi, "true"),
                  (start_v[i], VELOCITY_CMAP, lo, hi, f"start (MAE {mae_start:.0f} m/s)"),
                  (refined_v[i], VELOCITY_CMAP, lo, hi, f"refined (MAE {mae_refined:.0f} m/s)"),
                  (update[i], ERROR_CMAP, -umax, umax, "update: refined - start"),
                  (change[i], ERROR_CMAP, -cmax, cmax, "|refined - true| - |start - true|")]
        for j, (img, cmap, vmin, vmax, label) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, extent=extent, aspect="auto")
            if true_mask is not None and _np(true_mask)[i].any():
                ax.contour((np.arange(nx) + 0.5) * dx / 1000, (np.arange(nz) + 0.5) * dx / 1000, _np(true_mask)[i],
                           levels=[0.5], colors="white" if j < 3 else "black", linewidths=0.7)
            ax.set_title(f"{titles[i] + ': ' if titles else ''}{label}", fontsize=8)
            ax.set_xlabel("x (km)", fontsize=7)
            ax.set_ylabel("z (km)", fontsize=7)
            ax.tick_params(labelsize=6)
            if i == 0 or j >= 3:
                fig.colorbar(im, ax=ax, shrink=0.8, label="m/s").ax.tick_params(labelsize=6)
    return fig


def gather_panels(observed: np.ndarray, modelled: np.ndarray, dt: float, shot: int = 0,
                  title: str = "") -> Figure:
    """Observed, modelled and residual shot gathers (T, R) of one shot, on one amplitude scale."""
    observed, modelled = _np(observed), _np(modelled)
    clip = float(np.percentile(np.abs(observed), 99)) or 1.0
    t_max = observed.shape[0] * dt
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.6), constrained_layout=True, sharey=True)
    for ax, img, label in zip(axes, (observed, modelled, modelled - observed), ("observed", "modelled", "residual")):
        ax.imshow(img, cmap=SEISMIC_CMAP, vmin=-clip, vmax=clip, aspect="auto",
                  extent=(0, img.shape[1], t_max, 0))
        ax.set_title(f"{title} shot {shot}: {label}", fontsize=8)
        ax.set_xlabel("receiver", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("time (s)", fontsize=7)
    return fig


def save(fig: Figure, path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mask_panels(true_mask: Sequence, pred_mask: Sequence, titles: Sequence[str] | None = None,
                dx: float = 10.0) -> Figure:
    """One row per sample: true salt mask, predicted mask, disagreement (missed salt red, false salt blue).

    true_mask, pred_mask: (N, nz, nx) in {0, 1}. Each row's title carries the IoU of the two masks.
    """
    true_mask, pred_mask = _np(true_mask) > 0.5, _np(pred_mask) > 0.5
    n, nz, nx = true_mask.shape
    extent = (0, nx * dx / 1000, nz * dx / 1000, 0)
    fig, axes = plt.subplots(n, 3, figsize=(9.5, 2.8 * n + 0.4), squeeze=False, constrained_layout=True)
    for i in range(n):
        union = (true_mask[i] | pred_mask[i]).sum()
        iou = (true_mask[i] & pred_mask[i]).sum() / union if union else 1.0
        diff = np.zeros((nz, nx, 3))
        diff[true_mask[i] & pred_mask[i]] = (0.8, 0.8, 0.8)
        diff[true_mask[i] & ~pred_mask[i]] = (0.85, 0.1, 0.1)
        diff[~true_mask[i] & pred_mask[i]] = (0.1, 0.3, 0.9)
        panels = [(true_mask[i], "true salt"), (pred_mask[i], "predicted salt"),
                  (diff, f"IoU {iou:.2f} (missed red, false blue)")]
        for j, (img, label) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, extent=extent, aspect="auto",
                      interpolation="nearest")
            ax.set_title(f"{titles[i] + ': ' if titles else ''}{label}", fontsize=8)
            ax.set_xlabel("x (km)", fontsize=7)
            ax.set_ylabel("z (km)", fontsize=7)
            ax.tick_params(labelsize=6)
    return fig


def metric_histogram(values: dict[str, Sequence], bins: int = 20, title: str = "") -> Figure:
    """One histogram per metric (name -> per-sample values), with the mean (solid) and median (dashed) marked."""
    if not values:
        raise ValueError("metric_histogram needs at least one metric")
    n = len(values)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows + 0.3), squeeze=False,
                             constrained_layout=True)
    for ax, (name, v) in zip(axes.flat, values.items()):
        v = _np(v).astype(float).ravel()
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, color="tab:blue", alpha=0.8)
        if v.size:
            ax.axvline(v.mean(), color="k", lw=1, label=f"mean {v.mean():.4g}")
            ax.axvline(np.median(v), color="k", lw=1, ls="--", label=f"median {np.median(v):.4g}")
            ax.legend(fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.set_ylabel("samples", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def attention_map_grid(maps: Sequence[tuple[str, Sequence]], ncols: int = 4, cmap: str = "magma",
                   title: str = "") -> Figure:
    """A grid of named (H, W) maps (e.g. `fwi.attention_maps.capture_attention` output of one sample), each with its own
    colour scale (maps of different blocks have different resolutions and ranges)."""
    if not maps:
        raise ValueError("attention_map_grid needs at least one (name, map) pair")
    n = len(maps)
    cols = min(n, ncols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.6 * rows + 0.3), squeeze=False,
                             constrained_layout=True)
    for ax, (name, m) in zip(axes.flat, maps):
        m = _np(m)
        if m.ndim != 2:
            raise ValueError(f"attention map {name!r} must be (H, W), got shape {m.shape}")
        im = ax.imshow(m, cmap=cmap, aspect="auto", interpolation="nearest")
        ax.set_title(f"{name} ({m.shape[0]}x{m.shape[1]})", fontsize=8)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def fwi_convergence(history: Sequence[dict], title: str = "") -> Figure:
    """FWI convergence (`fwi.invert` history records): mean stage misfit (the low-passed data of each frequency
    stage, log scale) and mean MAE per iteration, with the frequency stage changes dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    it = [h["iteration"] for h in history]
    if it:
        axes[0].semilogy(it, [np.mean(h["misfit"]) for h in history])
        if "mae_ms" in history[0]:
            axes[1].plot(it, [np.mean(h["mae_ms"]) for h in history])
        for h, prev in zip(history[1:], history):
            if h["stage"] != prev["stage"]:
                for ax in axes:
                    ax.axvline(prev["iteration"] + 0.5, color="0.7", lw=0.8, ls="--")
    axes[0].set(xlabel="iteration", ylabel="stage misfit (mean)")
    axes[1].set(xlabel="iteration", ylabel="MAE (m/s, mean)")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def to_png(fig: Figure, dpi: int = 90, close: bool = True) -> bytes:
    """The figure as PNG bytes (closed afterwards unless ``close=False``)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if close:
        plt.close(fig)
    return buf.getvalue()


def show(fig: Figure, dpi: int = 90) -> None:
    """Display a figure in Jupyter as a PNG (works whatever the matplotlib backend) and close it."""
    from IPython.display import Image, display

    display(Image(to_png(fig, dpi)))
