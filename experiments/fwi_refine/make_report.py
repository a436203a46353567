"""Tables and figures of a study tag from its results (``run_study.py`` writes them).

    python experiments/fwi_refine/make_report.py --tag test24

Writes ``results/<tag>/table.md`` (one row per start x method: MAE with the paired standard error of its change,
SSIM, IoU and data misfit before -> after, models improved, seconds per model) and ``results/<tag>/convergence.png``
(mean MAE and mean stage misfit per iteration, one panel per start).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def table(out: Path) -> str:
    rows = list(csv.DictReader((out / "study.csv").open()))
    lines = ["| start | method | MAE before -> after (m/s) | change ± SE | improved | SSIM | salt IoU | data misfit | "
             "misfit ratio | s/model |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = {k: float(v) for k, v in r.items() if k not in ("start", "method")}
        per = json.loads((out / f"{r['start']}__{r['method']}.json").read_text())["per_model"]
        better = int(np.sum(np.asarray(per["mae_ms_after"]) < np.asarray(per["mae_ms_before"])))
        lines.append(
            f"| {r['start']} | {r['method']} | {f['mae_ms_before']:.1f} -> {f['mae_ms_after']:.1f} | "
            f"{100 * f['mae_change']:+.1f} % ± {100 * f['mae_delta_se'] / f['mae_ms_before']:.1f} | "
            f"{better}/{int(f['n'])} | {f['ssim_before']:.3f} -> {f['ssim_after']:.3f} | "
            f"{f['iou_before']:.3f} -> {f['iou_after']:.3f} | {f['misfit_before']:.3f} -> {f['misfit_after']:.3f} | "
            f"{f['misfit_ratio']:.2f}x | {f['seconds_per_model']:.0f} |")
    return "\n".join(lines) + "\n"


def convergence(out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*__*.json"))]
    starts = sorted({r["start"] for r in runs if r["history"]})
    if not starts:
        return
    fig, axes = plt.subplots(2, len(starts), figsize=(4.2 * len(starts), 6.4), constrained_layout=True, squeeze=False)
    for col, start in enumerate(starts):
        for r in (r for r in runs if r["start"] == start and r["history"]):
            h = r["history"]
            it = [e["iteration"] for e in h]
            axes[0, col].plot(it, [np.mean(e["mae_ms"]) for e in h], label=r["method"])
            axes[1, col].semilogy(it, [np.mean(e["misfit"]) for e in h], label=r["method"])
        axes[0, col].set(title=start, xlabel="iteration", ylabel="MAE (m/s)")
        axes[1, col].set(xlabel="iteration", ylabel="stage misfit (mean)")
        axes[0, col].legend(fontsize=6)
    fig.savefig(out / "convergence.png", dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", required=True)
    args = p.parse_args()
    out = HERE / "results" / args.tag
    (out / "table.md").write_text(table(out))
    convergence(out)
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
