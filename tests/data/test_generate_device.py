"""Generation devices: the CPU path stays bit for bit what it was; CUDA is refused cleanly without a GPU."""

import hashlib

import h5py
import pytest
import torch

from fwi.data.generate import generate, main, resolve_device

#: sha256 of each array of `generate(out, "tiny", seed=0)` made by the code *before* the device option existed
#: (fwi commit 2729976, torch 2.13 CPU, deepwave as installed). A change here means the CPU path changed.
TINY_SEED0 = {'train/velocity': 'd2ed4dd5421851ad77ff4afc85015e78a82ca371bfa673a852ecf78a86431bba', 'train/salt_mask': '68104a11e3d3e36e24b0ebfc5c1be7e4ea0373a89b604f68501a81ad4ca4de6d', 'train/gathers': 'c68a8d6a924a318d70438058702b47542c442b11ca80a33c1ee8241a8ec47a40', 'val/velocity': 'e8d5fec6885935edbecece4b05a0bc9536cae939c36120e5f7d1e1b56f35cfb5', 'val/salt_mask': 'e9f3365226d8751ed001605d0233799879870c5f6d89f09582cb16625974bcec', 'val/gathers': 'e95be080867ac14d2d1190d48c0d374dd398e4059b6cf8c396847214d01e969f', 'test/velocity': '889b5c8737a0f4d4c6f0f5fe6d6fa506abba3d9a1af3b31200382fade0636a3b', 'test/salt_mask': '71e953df10b6bc74d5c8624647b1cefabc171857d6c61e0aa85374bfc7403136', 'test/gathers': 'e3976f3e2e6ebf7d8a64761202f08e7096da76332a35dcb721f0aba8809e2c5c'}


def test_cpu_and_auto_on_a_cpu_machine_reproduce_the_recorded_tiny_preset(tmp_path):
    device = "auto" if not torch.cuda.is_available() else "cpu"
    out = generate(tmp_path / "tiny.h5", "tiny", seed=0, progress=False, device=device)
    with h5py.File(out, "r") as f:
        got = {key: hashlib.sha256(f[key][()].tobytes()).hexdigest() for key in TINY_SEED0}
    assert got == TINY_SEED0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_no_work(tmp_path, capsys):
    assert resolve_device("auto") == torch.device("cpu")
    assert main(["--preset", "tiny", "--out", str(tmp_path / "x.h5"), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: torch sees no CUDA device") and not list(tmp_path.iterdir())
