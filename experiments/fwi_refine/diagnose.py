"""Where does FWI change the model, and does the change reduce the error there? (from a study's ``*.npz`` files)

    python experiments/fwi_refine/diagnose.py --tag test24 [--data data/ablation70.h5 --split test]
    python experiments/fwi_refine/diagnose.py --tag test24 --data data/fieldsalt.h5 --sigma 5 \
        --out experiments/fwi_refine_field/results                                      # field scale

For each job: the velocity error |v - v_true| (m/s) before and after, split by depth (top, middle, bottom third of the
grid) and by wavenumber: the long-wavelength part is the error smoothed by a Gaussian of ``--sigma`` cells (the
background velocity FWI must get right to place reflectors), the short-wavelength part the rest. Writes
``results/<tag>/diagnosis.md`` (``<out>/<tag>/`` with ``--out``). True models and masks are read through the one
decoding path of the readers (`fwi.invert.dataset.read_samples`), so compact files work too.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from fwi.atomic import write_text
from fwi.data.dataset import SALT_THRESHOLD
from fwi.data.store import read_info
from fwi.invert.dataset import read_samples

HERE = Path(__file__).resolve().parent


def parts(error: np.ndarray, sigma: float, mask: np.ndarray) -> dict[str, float]:
    """Mean |error| overall, by depth third, of its long- / short-wavelength parts, inside and outside the true salt
    (mask), the mean signed error inside the salt, and the share of the summed |error| in the sediments.

    error, mask: (B, nz, nx)."""
    nz = error.shape[1]
    smooth = np.stack([gaussian_filter(e, sigma, mode="nearest") for e in error])
    out = {"all": float(np.abs(error).mean())}
    for name, rows in (("top", slice(0, nz // 3)), ("middle", slice(nz // 3, 2 * nz // 3)),
                       ("bottom", slice(2 * nz // 3, nz))):
        out[name] = float(np.abs(error[:, rows]).mean())
    out["long"] = float(np.abs(smooth).mean())
    out["short"] = float(np.abs(error - smooth).mean())
    salt = mask > 0.5
    out["salt"] = float(np.abs(error[salt]).mean()) if salt.any() else float("nan")
    out["sediments"] = float(np.abs(error[~salt]).mean())
    out["salt_bias"] = float(error[salt].mean()) if salt.any() else float("nan")
    out["sediment_share"] = float(np.abs(error[~salt]).sum() / max(np.abs(error).sum(), 1e-12))
    return out


def velocity_iou(velocity: np.ndarray, mask: np.ndarray, threshold: float = SALT_THRESHOLD) -> float:
    """Mean over models of the IoU of ``velocity >= threshold`` with the true salt mask (1 for two empty masks)."""
    pred, true = velocity >= threshold, mask > 0.5
    inter = (pred & true).sum(axis=(1, 2))
    union = (pred | true).sum(axis=(1, 2))
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


@lru_cache(maxsize=4)
def true_models(data: str, split: str, indices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """True velocity (B, nz, nx) m/s, float64, and salt mask (B, nz, nx) of ``indices`` of ``split`` (read once for
    all the jobs on the same models)."""
    s = read_samples(data, split, indices, read_info(data).storage.time_decimation)
    return s.velocity.double().numpy(), s.salt_mask.numpy()


def head_quality(out: Path, data: str, split: str) -> list[str]:
    """Table rows of the salt head's precision / recall per start, read from the ``salt-fill`` jobs' npz files."""
    rows = []
    for path in sorted(out.glob("*__salt-fill.npz")):
        z = np.load(path)
        head = z["velocity"] != z["start"]
        true = true_models(data, split, tuple(z["indices"].tolist()))[1] > 0.5
        precision = (head & true).sum() / max(head.sum(), 1)
        recall = (head & true).sum() / max(true.sum(), 1)
        rows.append(f"| {path.stem.split('__')[0]} | {precision:.3f} | {recall:.3f} | "
                    f"{head.sum() / len(head):.0f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", required=True)
    p.add_argument("--data", default="data/ablation70.h5")
    p.add_argument("--split", default="test")
    p.add_argument("--sigma", type=float, default=5.0)
    p.add_argument("--out", default=None, help="results folder (default results/ beside this script)")
    args = p.parse_args()
    out = Path(args.out) / args.tag if args.out else HERE / "results" / args.tag
    lines = [f"# Error by depth and wavenumber ({args.tag}; |v - v_true| in m/s, before -> after)", "",
             f"Long wavelength: the error smoothed by a Gaussian of {args.sigma:g} cells (the background); short: the "
             "rest. Depth thirds of the grid.", "",
             "The last column scores the salt of both models the same way, by velocity (>= 4400 m/s), whereas the "
             "study's table scores the network start by its salt head.", "",
             "Salt / sediments: mean |error| inside / outside the true salt; salt bias: mean signed error inside the "
             "true salt (negative = too slow); sediment share: the sediments' part of the summed |error|.", "",
             "| start | method | all | top | middle | bottom | long wavelength | short wavelength | salt | sediments "
             "| salt bias | sediment share | salt IoU by velocity |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(out.glob("*__*.npz")):
        z = np.load(path)
        truth, mask = true_models(args.data, args.split, tuple(z["indices"].tolist()))
        before = parts(z["start"].astype(np.float64) - truth, args.sigma, mask)
        after = parts(z["velocity"].astype(np.float64) - truth, args.sigma, mask)
        start, method = path.stem.split("__")
        cells = " | ".join(f"{before[k]:.0f} -> {after[k]:.0f}" for k in
                           ("all", "top", "middle", "bottom", "long", "short", "salt", "sediments", "salt_bias"))
        cells += f" | {before['sediment_share']:.2f} -> {after['sediment_share']:.2f}"
        iou = f"{velocity_iou(z['start'].astype(np.float64), mask):.3f} -> " \
              f"{velocity_iou(z['velocity'].astype(np.float64), mask):.3f}"
        lines.append(f"| {start} | {method} | {cells} | {iou} |")
    heads = head_quality(out, args.data, args.split)
    if heads:
        lines += ["", "Salt head against the true salt (cells the `salt-fill` job changed = head p > 0.5, outside "
                  "cells already at 4500 m/s): precision = share of the head's salt that is salt, recall = share "
                  "of the salt the head finds.", "", "| start | precision | recall | head salt cells per model |",
                  "|---|---|---|---|"] + heads
    write_text(out / "diagnosis.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
