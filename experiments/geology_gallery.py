"""Gallery of synthetic salt velocity models from `fwi.data.geology` (velocity with the salt outlined).

Usage: python experiments/geology_gallery.py [OUT.png] [--seed0 N] [--nz 70] [--nx 70]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fwi.data.geology import GeologyConfig, generate_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="experiments/geology_gallery.png")
    parser.add_argument("--seed0", type=int, default=0, help="first seed; the gallery shows seed0 .. seed0 + 11")
    parser.add_argument("--nz", type=int, default=70)
    parser.add_argument("--nx", type=int, default=70)
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()

    config = GeologyConfig()
    fig, axes = plt.subplots(3, 4, figsize=(12, 9.6 * args.nz / args.nx + 0.4), constrained_layout=True)
    image = None
    for i, ax in enumerate(axes.flat):
        seed = args.seed0 + i
        velocity, mask = generate_model(seed, args.nz, args.nx, config)
        image = ax.imshow(velocity, cmap="jet", vmin=1500, vmax=4600, interpolation="nearest")
        if mask.any():
            ax.contour(mask, levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(f"seed {seed}: salt {mask.mean():.0%}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.6, label="velocity (m/s)")
    fig.suptitle(f"fwi.data.geology: {args.nz} x {args.nx} salt models (white: salt outline)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
