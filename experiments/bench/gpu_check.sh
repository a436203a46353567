#!/usr/bin/env bash
# GPU readiness in under 5 minutes: generation on CUDA (timed, and compared with the CPU path), a bf16 training run
# with the physics loss (two short epochs of the tiny config), evaluation; prints times and peak GPU memory.
#   bash experiments/bench/gpu_check.sh
# Without CUDA it says so and exits 0 (nothing to check). Written on a CPU-only machine: not yet run on a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
if ! $PY -c "import torch, fwi" 2>/dev/null; then
  echo "gpu_check: cannot import torch and fwi with $PY; activate the project's venv (. .venv/bin/activate)" >&2
  exit 2
fi
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch $($PY -c 'import torch; print(torch.__version__)'); nothing to check"
  exit 0
fi
OUT=$(mktemp -d /tmp/gpu_check.XXXX)
trap 'rm -rf "$OUT"' EXIT
export WANDB_MODE=disabled
START=$(date +%s)

echo "== generation (tiny preset, cuda vs cpu)"
timeout 120 $PY - "$OUT" <<'PY'
import sys, time, h5py, numpy as np, torch
from pathlib import Path
from fwi.data.generate import generate
out = Path(sys.argv[1])
print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
times = {}
for dev in ("cpu", "cuda"):
    t = time.perf_counter()
    generate(out / f"{dev}.h5", "tiny", workers=1, progress=False, device=dev)
    times[dev] = time.perf_counter() - t
with h5py.File(out / "cpu.h5") as a, h5py.File(out / "cuda.h5") as b:
    g, h = a["train/gathers"][()], b["train/gathers"][()]
err = np.abs(g - h).max() / np.abs(g).max()
print(f"generate tiny: cpu {times['cpu']:.1f} s, cuda {times['cuda']:.1f} s; max |cuda - cpu| / max |cpu| = {err:.2e}"
      f" (documented tolerance 1e-5: {'ok' if err <= 1e-5 else 'EXCEEDED'})")
print(f"peak GPU memory (generation): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
PY

echo "== bf16 training with the physics loss (tiny config, 2 epochs)"
cp "$OUT/cuda.h5" "$OUT/tiny.h5"
T0=$(date +%s.%N)
timeout 150 $PY -m fwi.train --config configs/tiny.yaml --data "$OUT/tiny.h5" --device cuda --bf16 \
  --physics-weight 0.1 --wandb disabled --no-progress --out "$OUT/runs" --name gpu 2>&1 | tail -4
T1=$(date +%s.%N)
echo "training wall time: $($PY -c "print(f'{$T1 - $T0:.1f} s')")"

echo "== evaluation"
timeout 60 $PY -m fwi.evaluate "$OUT/runs/gpu" --device cuda --no-figures 2>&1 | tail -4
echo "gpu_check: done in $(( $(date +%s) - START )) s"
