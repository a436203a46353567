"""Gallery of synthetic salt velocity models from `fwi.data.geology` (velocity with the salt outlined).

Usage: python experiments/geology_gallery.py [OUT.png] [--seed0 N] [--nz 70] [--nx 70]
       python experiments/geology_gallery.py OUT.png --preset fieldsalt    # a preset's geology on its grid, in km

Without ``--preset`` the models use the default `GeologyConfig` (salt70's) on an ``nz x nx`` grid. With it they
are drawn as the dataset generator draws them (seed sequences (seed, split, i), here the train split of seed
``--data-seed``), so panel i is train model ``seed0 + i`` of ``python -m fwi.data.generate --preset NAME``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fwi.data.geology import GeologyConfig, generate_model  # noqa: E402
from fwi.data.modelling import SPLIT_CODES  # noqa: E402
from fwi.data.presets import get_preset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="experiments/geology_gallery.png")
    parser.add_argument("--seed0", type=int, default=0, help="first seed; the gallery shows seed0 .. seed0 + 11")
    parser.add_argument("--nz", type=int, default=70)
    parser.add_argument("--nx", type=int, default=70)
    parser.add_argument("--preset", default=None, help="draw the models of this preset (its geology and grid)")
    parser.add_argument("--data-seed", type=int, default=0, help="with --preset: the dataset seed (default 0)")
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()

    config, nz, nx, extent = GeologyConfig(), args.nz, args.nx, None
    if args.preset is not None:
        preset = get_preset(args.preset)
        config, (nz, nx) = preset.geology, preset.survey.shape
        extent = (0.0, nx * preset.survey.dx / 1000, nz * preset.survey.dx / 1000, 0.0)

    def draw(i: int) -> tuple[np.ndarray, np.ndarray]:
        if args.preset is None:
            return generate_model(args.seed0 + i, nz, nx, config)
        sequence = np.random.SeedSequence([args.data_seed, SPLIT_CODES["train"], args.seed0 + i])
        return generate_model(sequence, nz, nx, config)

    fig, axes = plt.subplots(3, 4, figsize=(12, 9.6 * nz / nx + 0.4), constrained_layout=True)
    image = None
    for i, ax in enumerate(axes.flat):
        velocity, mask = draw(i)
        image = ax.imshow(velocity, cmap="jet", vmin=1500, vmax=4600, interpolation="nearest", extent=extent)
        if mask.any():
            ax.contour(mask, levels=[0.5], colors="white", linewidths=0.8,
                       extent=None if extent is None else (extent[0], extent[1], extent[3], extent[2]))
        label = "seed" if args.preset is None else "train"
        ax.set_title(f"{label} {args.seed0 + i}: salt {mask.mean():.0%}", fontsize=9)
        if extent is None:
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="velocity (m/s)")
    what, axes_note = ("fwi.data.geology", "") if args.preset is None else (f"preset {args.preset}", "; axes in km")
    fig.suptitle(f"{what}: {nz} x {nx} salt models (white: salt outline{axes_note})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
