"""Test-wide settings: passive OpenMP waiting (see fwi/__init__.py), one torch/deepwave thread (the suite runs on
two shared cores), W&B offline."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)
