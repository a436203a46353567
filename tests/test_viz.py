"""Figures put things where they are: salt outlines on the salt, not mirrored."""

import numpy as np

from fwi import viz


def contour_points(ax) -> np.ndarray:
    """All vertices of the contour lines drawn on an axes, in data coordinates (x km, z km)."""
    points = [path.vertices for coll in ax.collections for path in coll.get_paths() if len(path.vertices)]
    return np.concatenate(points)


def test_salt_outline_sits_on_the_salt():
    nz, nx, dx = 40, 60, 10.0
    v = np.full((1, nz, nx), 2000.0)
    mask = np.zeros((1, nz, nx))
    mask[0, 30:38, 5:20] = 1  # deep salt on the left
    v[mask == 1] = 4500.0
    fig = viz.velocity_panels(v, v, mask, mask, dx=dx)
    pts = contour_points(fig.axes[0])
    x_km, z_km = pts[:, 0], pts[:, 1]
    assert z_km.min() >= 0.29 and z_km.max() <= 0.385  # rows 30..37 (depth 0.3 .. 0.38 km), not mirrored
    assert x_km.min() >= 0.04 and x_km.max() <= 0.205
    assert fig.axes[0].get_ylim()[0] > fig.axes[0].get_ylim()[1]  # depth increases downwards
    viz.plt.close(fig)
