"""InversionNet: the paper's layer plan on the OpenFWI geometry, other geometries, the shared output dict.

Shapes, gradients and determinism on other geometries: the shared contract in ``test_model_contract.py``."""

from __future__ import annotations

import pytest
import torch

from fwi.models.build import build_model
from fwi.models.config import ModelConfig
from fwi.models.inversionnet import InversionNet
from fwi.models.complexity import count_params


def _conv_bn(cin, cout, kh, kw) -> int:
    """Conv (weight + bias) followed by BatchNorm (weight + bias); the same for a transposed conv."""
    return cin * cout * kh * kw + cout + 2 * cout


# Wu & Lin (2019) / OpenFWI InversionNet, 5 x 1000 x 70 -> 70 x 70: (cin, cout, kh, kw) of every conv-BN layer.
PAPER_ENCODER = [
    (5, 32, 7, 1),
    (32, 64, 3, 1), (64, 64, 3, 1),
    (64, 64, 3, 1), (64, 64, 3, 1),
    (64, 128, 3, 1), (128, 128, 3, 1),
    (128, 128, 3, 3), (128, 128, 3, 3),
    (128, 256, 3, 3), (256, 256, 3, 3),
    (256, 256, 3, 3), (256, 256, 3, 3),
    (256, 512, 8, 9),  # 1000 -> 500 -> 250 -> 125 -> 63 -> 32 -> 16 -> 8; 70 -> 35 -> 18 -> 9
]
PAPER_DECODER = [
    (512, 512, 5, 5), (512, 512, 3, 3),
    (512, 256, 4, 4), (256, 256, 3, 3),
    (256, 128, 4, 4), (128, 128, 3, 3),
    (128, 64, 4, 4), (64, 64, 3, 3),
    (64, 32, 4, 4), (32, 32, 3, 3),
    (32, 1, 3, 3),  # the output conv + BN + tanh, after cropping 80 x 80 to 70 x 70
]
SALT_HEAD = 32 + 1  # 1x1 conv 32 -> 1


def test_openfwi_geometry_matches_paper():
    torch.manual_seed(0)
    model = InversionNet(5, 1000, 70, grid=(70, 70))
    paper = sum(_conv_bn(*layer) for layer in PAPER_ENCODER + PAPER_DECODER)
    assert count_params(model) == paper + SALT_HEAD
    assert model.latent_size == (8, 9)

    sizes = {}
    model.latent.register_forward_hook(lambda m, i, o: sizes.update(pre=i[0].shape[-2:], latent=o.shape[-2:]))
    model.decoder.register_forward_hook(lambda m, i, o: sizes.update(decoded=o.shape[-2:]))
    out = model(torch.randn(2, 5, 1000, 70))  # batch 2: BatchNorm on the 1x1 latent needs > 1 value in training
    assert sizes == {"pre": (8, 9), "latent": (1, 1), "decoded": (80, 80)}
    assert out["velocity"].shape == (2, 1, 70, 70)
    assert out["salt_logits"].shape == (2, 1, 70, 70)
    assert out["velocity"].abs().max() <= 1.0


def test_large_grid_uses_more_upsampling_stages():
    model = InversionNet(2, 64, 12, grid=(100, 170))
    assert model(torch.randn(2, 2, 64, 12))["velocity"].shape == (2, 1, 100, 170)
    # 170 needs 6 stride-2 stages from a 3x3 seed (3 * 64 = 192 >= 170), not a huge first kernel.
    assert model.decoder[0][0].kernel_size == (2, 3)


def test_build_model_inversionnet():
    model = build_model(ModelConfig(arch="inversionnet"), (2, 64, 12), (20, 24))
    assert isinstance(model, InversionNet)
    assert model(torch.randn(2, 2, 64, 12))["velocity"].shape == (2, 1, 20, 24)
    with pytest.raises(ValueError, match="InversionNet"):
        ModelConfig(arch="inversionnet", attn="se", skip_attn=True).validate()
