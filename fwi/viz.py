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
                    ax.contour(_np(masks)[i], levels=[0.5], colors=colour, linewidths=0.8,
                               extent=(0, nx * dx / 1000, 0, nz * dx / 1000), origin="upper")
            ax.set_title(f"{titles[i] + ': ' if titles else ''}{label}", fontsize=8)
            ax.set_xlabel("x (km)", fontsize=7)
            ax.set_ylabel("z (km)", fontsize=7)
            ax.tick_params(labelsize=6)
            if i == 0 or j == 2:
                fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
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
