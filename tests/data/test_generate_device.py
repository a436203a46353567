"""Generation devices: the CPU path stays bit for bit what it was; CUDA is refused cleanly without a GPU."""

import hashlib

import h5py
import numpy as np
import pytest
import torch

from fwi.data.generate import generate, main
from fwi.data.store import read_info
from fwi.distributed import resolve_device
from fwi.physics import forward_model

#: sha256 of the model arrays of `generate(out, "tiny", seed=0)` made by the code *before* the device option existed
#: (fwi commit 2729976). They come from numpy alone, so they are the same on every machine.
TINY_SEED0_MODELS = {
    "train/velocity": "d2ed4dd5421851ad77ff4afc85015e78a82ca371bfa673a852ecf78a86431bba",
    "train/salt_mask": "68104a11e3d3e36e24b0ebfc5c1be7e4ea0373a89b604f68501a81ad4ca4de6d",
    "val/velocity": "e8d5fec6885935edbecece4b05a0bc9536cae939c36120e5f7d1e1b56f35cfb5",
    "val/salt_mask": "e9f3365226d8751ed001605d0233799879870c5f6d89f09582cb16625974bcec",
    "test/velocity": "889b5c8737a0f4d4c6f0f5fe6d6fa506abba3d9a1af3b31200382fade0636a3b",
    "test/salt_mask": "71e953df10b6bc74d5c8624647b1cefabc171857d6c61e0aa85374bfc7403136",
}
#: sum |g| and sum g^2 (float64) of each split's gathers. deepwave picks its CPU kernel at run time (target_clones:
#: AVX-512, AVX2 or baseline), and the clones round differently, so the gathers are pinned to a relative tolerance
#: rather than by hash; the same machine must still give the very bits of a direct `forward_model` call.
TINY_SEED0_GATHER_MOMENTS = {"train": (554100.7155099921, 4626898.126295583),
                             "val": (182342.16767109634, 1500542.431321321),
                             "test": (179455.5766694104, 1499709.169649646)}


def test_cpu_and_auto_on_a_cpu_machine_reproduce_the_recorded_tiny_preset(tmp_path):
    device = "auto" if not torch.cuda.is_available() else "cpu"
    out = generate(tmp_path / "tiny.h5", "tiny", seed=0, progress=False, device=device)
    survey = read_info(out).survey
    with h5py.File(out, "r") as f:
        got = {key: hashlib.sha256(f[key][()].tobytes()).hexdigest() for key in TINY_SEED0_MODELS}
        assert got == TINY_SEED0_MODELS
        for split, moments in TINY_SEED0_GATHER_MOMENTS.items():
            gathers = f[f"{split}/gathers"][()]
            direct = forward_model(torch.from_numpy(f[f"{split}/velocity"][:, 0]), survey).numpy()
            assert np.array_equal(gathers, direct), split  # the generator adds nothing to the propagator's output
            g = gathers.astype(np.float64)
            np.testing.assert_allclose((np.abs(g).sum(), np.square(g).sum()), moments, rtol=1e-5, err_msg=split)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_no_work(tmp_path, capsys):
    assert resolve_device("auto") == torch.device("cpu")
    assert main(["--preset", "tiny", "--out", str(tmp_path / "x.h5"), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda was asked for but no CUDA device is available")
    assert not list(tmp_path.iterdir())
