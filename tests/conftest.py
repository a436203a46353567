"""Test-wide settings and shared fixtures.

Settings: passive OpenMP waiting (see fwi/__init__.py), one torch/deepwave thread (the suite runs on two shared
cores), W&B offline.

Fixtures (session-scoped, built once however many modules use them):

* ``tiny_dataset``: the ``tiny`` preset (32 x 33 grid, 12/4/4 samples, seed 0) generated into a temporary file;
  the same data ``configs/tiny.yaml`` generates.
* ``tiny_run``: the run directory of ``configs/tiny.yaml`` trained for one epoch on ``tiny_dataset`` with SE blocks
  on the skips (``best.pt``, ``last.pt``, ``metrics.jsonl``, ...). Treat both as read-only.
"""

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Path of the generated ``tiny`` dataset (HDF5, fwi layout)."""
    from fwi.data.generate import generate

    path = tmp_path_factory.mktemp("tiny-data") / "tiny.h5"
    generate(path, "tiny", seed=0, workers=1, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dataset) -> Path:
    """Run directory of the tiny config trained for 1 epoch (SE attention on the skips, no W&B, no misfit)."""
    from fwi.config import load_config
    from fwi.train import train

    out = tmp_path_factory.mktemp("tiny-runs")
    cfg = load_config(CONFIGS / "tiny.yaml")
    cfg.data.data, cfg.data.generate_workers = str(tiny_dataset), 1
    cfg.run.out, cfg.run.name, cfg.run.wandb, cfg.run.progress = str(out), "tiny-se", "disabled", False
    cfg.optim.epochs = 1
    cfg.run.misfit_samples = 0
    cfg.model.attn, cfg.model.skip_attn = "se", True
    return train(cfg.validate())
