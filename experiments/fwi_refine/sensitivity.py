"""How much do the data see a velocity error at each depth? (the illumination evidence of the FWI study)

    python experiments/fwi_refine/sensitivity.py --tag test24 [--data data/ablation70.h5 --split test --indices 0:8]
    python experiments/fwi_refine/sensitivity.py --data data/fieldsalt.h5 --band 5 --residual 0.3 \
        --out experiments/fwi_refine_field/results/sensitivity     # field scale (issue 31)

For each true model, each horizontal band of ``--band`` rows is made ``--percent`` % faster (the rest unchanged) and the
relative data change ||d(v + dv) - d(v)|| / ||d(v)|| is measured with the survey of the dataset (the observed gathers
of the file are d(v)). A second series changes the same band by the same percentage only inside the true salt (the
network's salt is ~300 m/s too slow): what correcting the salt velocity at that depth would do to the data. FWI can
only correct what changes the data by more than the misfit it leaves (`study.csv`: ~0.09 relative after
sgd+multiscale), so a band whose data change is far below that is, in practice, not constrained by these data.
``--residual`` gives that misfit by hand (a study recorded elsewhere). Writes ``results/<tag>/sensitivity.md`` (or
``--out``) and ``sensitivity.png``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fwi.atomic import write_text  # noqa: E402
from fwi.data.store import read_info  # noqa: E402
from fwi.data.transforms import decimate_time  # noqa: E402
from fwi.invert.dataset import read_samples  # noqa: E402
from fwi.metrics import data_misfit  # noqa: E402
from fwi.physics import forward_model  # noqa: E402

HERE = Path(__file__).resolve().parent


def band_changes(truth: torch.Tensor, mask: torch.Tensor, observed: torch.Tensor, survey, band: int, percent: float,
                 time_decimation: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top rows of each band (K,), relative data change of a band perturbation (K, B) and of a salt-only one (K, B)."""
    tops = np.arange(0, truth.shape[1], band)
    whole, salt = [], []
    for top in tops:
        rows = torch.zeros_like(truth, dtype=torch.bool)
        rows[:, top:top + band] = True
        for store, where in ((whole, rows), (salt, rows & (mask > 0.5))):
            perturbed = torch.where(where, truth * (1 + percent / 100), truth)
            store.append(data_misfit(perturbed, observed, survey, time_decimation).numpy())
    return tops, np.stack(whole), np.stack(salt)


def residual_after(out: Path, method: str = "sgd+multiscale") -> float | None:
    """Mean relative data misfit left by ``method`` from the network starts of this study (study.csv), if recorded."""
    path = out / "study.csv"
    if not path.exists():
        return None
    rows = [r for r in csv.DictReader(path.open())
            if r["method"] == method and r["start"] not in ("smooth-true", "trend")]
    return float(np.mean([float(r["misfit_after"]) for r in rows])) if rows else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", default="sensitivity")
    p.add_argument("--data", default="data/ablation70.h5")
    p.add_argument("--split", default="test")
    p.add_argument("--indices", default="0:8", help="start:stop of the split")
    p.add_argument("--band", type=int, default=10, help="rows per band")
    p.add_argument("--percent", type=float, default=5.0, help="velocity change in the band (%%)")
    p.add_argument("--residual", type=float, default=None, help="relative data misfit FWI leaves (default: study.csv)")
    p.add_argument("--out", default=None, help="output folder (default results/<tag> beside this script)")
    args = p.parse_args(argv)
    start, stop = (int(s) for s in args.indices.split(":"))
    info = read_info(args.data)
    survey, k = info.survey, info.storage.time_decimation
    samples = read_samples(args.data, args.split, range(start, stop), k)
    truth, mask = samples.velocity, samples.salt_mask
    with torch.no_grad():
        observed = decimate_time(forward_model(truth, survey), k)
    tops, whole, salt = band_changes(truth, mask, observed, survey, args.band, args.percent, k)
    has_salt = np.stack([(mask[:, t:t + args.band] > 0.5).flatten(1).any(1).numpy() for t in tops])

    out = Path(args.out) if args.out else HERE / "results" / args.tag
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Data sensitivity by depth ({args.split} models {start}-{stop - 1}, +{args.percent:g} % velocity in "
             f"bands of {args.band} rows)", "",
             f"Survey: {survey.n_sources} shots, {survey.n_receivers} receivers on the surface over "
             f"{(survey.nx - 1) * survey.dx:.0f} m, grid depth {(survey.nz - 1) * survey.dx:.0f} m, record "
             f"{survey.nt * survey.dt:.2f} s, {survey.freq:g} Hz Ricker. Relative data change "
             "||d(v + dv) - d(v)|| / ||d(v)||, mean over models (salt: over the models with salt in the band).", "",
             "| rows | depth (m) | whole band | relative to the top band | salt only in the band | models with salt |",
             "|---|---|---|---|---|---|"]
    top_change = whole[0].mean()
    for k, t in enumerate(tops):
        s = salt[k][has_salt[k]]
        lines.append(f"| {t}-{min(t + args.band, survey.nz) - 1} | {t * survey.dx:.0f}-"
                     f"{(min(t + args.band, survey.nz) - 1) * survey.dx:.0f} | {whole[k].mean():.4f} | "
                     f"{whole[k].mean() / top_change:.2f} | {s.mean() if len(s) else float('nan'):.4f} | "
                     f"{int(has_salt[k].sum())}/{len(truth)} |")
    residual = args.residual if args.residual is not None else residual_after(out)
    if residual is not None:
        where = "--residual" if args.residual is not None else "sgd+multiscale from the network starts (study.csv)"
        lines += ["", f"Relative data misfit left by FWI ({where}): "
                  f"{residual:.3f}. A band whose +{args.percent:g} % change moves the data by less than that is not "
                  "constrained by the fit."]
    write_text(out / "sensitivity.md", "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    depth = (tops + args.band / 2) * survey.dx
    ax.plot(whole.mean(1), depth, "o-", label="whole band")
    salt_mean = [salt[k][has_salt[k]].mean() if has_salt[k].any() else np.nan for k in range(len(tops))]
    ax.plot(salt_mean, depth, "s--", label="salt cells of the band")
    if residual is not None:
        ax.axvline(residual, color="k", lw=1, ls=":")
        ax.text(residual, depth[-1], f" misfit left\n by FWI\n ({residual:.3f})", fontsize=8, va="center")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"relative data change (+{args.percent:g} % velocity)")
    ax.set_ylabel("depth of the band (m)")
    ax.legend()
    fig.savefig(out / "sensitivity.png", dpi=120)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
