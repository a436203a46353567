"""Test-wide settings: one torch/deepwave thread (the suite runs on two shared cores; oversubscription is slow)."""

import os

import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)
