"""Table (into README.md, replacing the TABLE marker or the previous table) and convergence figure from results/.

    python experiments/fwi_refine/make_report.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RES = HERE / "results"


def main() -> None:
    rows = list(csv.DictReader(open(RES / "study.csv")))
    head = ("| start | method | MAE before -> after (m/s) | change | SSIM | IoU | data misfit | ratio | s/model |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        f = {k: float(v) for k, v in r.items() if k not in ("start", "method")}
        lines.append(f"| {r['start']} | {r['method']} | {f['mae_before']:.0f} -> {f['mae_after']:.0f} | "
                     f"{100 * (f['mae_after'] / f['mae_before'] - 1):+.1f} % | {f['ssim_before']:.3f} -> "
                     f"{f['ssim_after']:.3f} | {f['iou_before']:.3f} -> {f['iou_after']:.3f} | "
                     f"{f['misfit_before']:.3f} -> {f['misfit_after']:.3f} | {f['misfit_ratio']:.2f}x | "
                     f"{f['s_per_model']:.1f} |")
    table = head + "\n".join(lines) + "\n\n![convergence](results/convergence.png)"
    readme = (HERE / "README.md").read_text()
    start = readme.index("## Results")
    end = readme.index("MAE / SSIM on the velocity")
    readme = readme[:start] + readme[start:end].split("\n\n")[0] + "\n\n" + table + "\n\n" + readme[end:]
    (HERE / "README.md").write_text(readme)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for path in sorted(RES.glob("*.json")):
        h = json.loads(path.read_text())["history"]
        it = [e["iteration"] for e in h]
        axes[0].plot(it, [np.mean(e["mae_ms"]) for e in h], label=path.stem)
        axes[1].semilogy(it, [np.mean(e["misfit"]) for e in h], label=path.stem)
    axes[0].set(xlabel="iteration", ylabel="MAE (m/s)")
    axes[1].set(xlabel="iteration", ylabel="stage misfit (squared relative L2)")
    axes[0].legend(fontsize=6)
    fig.savefig(RES / "convergence.png", dpi=100)


if __name__ == "__main__":
    main()
