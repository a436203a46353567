"""The shared output contract of every network and decoder (smp's ``tests/models/base.py`` idea): one parametrised
set of checks -- output shapes, finite values (velocity in [-1, 1]), gradients reaching the input and every
parameter, eval-mode determinism and batch independence -- applied to both network families (U-Net variants and
InversionNet, built as the training does) and to the two decoders on their own.

Family-specific facts (the paper's InversionNet layer plan, the mix decoder's token shapes, attention placement)
stay in ``test_inversionnet.py``, ``test_unet.py`` and ``test_attention.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn

from fwi.models.attention.registry import list_attn, list_gates
from fwi.models.build import build_model
from fwi.models.config import ModelConfig
from fwi.models.inversionnet import InversionNet
from fwi.models.layers import list_acts, list_norms
from fwi.models.mix_decoder import MixAttentionDecoder
from fwi.models.unet import AttentionUNet, UNetDecoder


@dataclass
class Case:
    """One network or decoder: ``build()`` -> module, ``inputs(batch)`` -> forward args, expected output shapes."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int], list[torch.Tensor]]
    out_shape: tuple[int, ...]  # without the batch axis; for networks, that of both "velocity" and "salt_logits"
    network: bool = True  # True: returns {"velocity", "salt_logits"}; False: a decoder returning a tensor
    all_grads_nonzero: bool = True  # every parameter gets a non-zero gradient (False: zero-initialised gammas...)
    call: Callable[[nn.Module, list[torch.Tensor]], object] = lambda model, xs: model(*xs)


def _decoder_call(model: nn.Module, xs: list[torch.Tensor]):
    return model(list(xs))  # a decoder takes the list of stage features


def _gathers(shape: tuple[int, int, int]) -> Callable[[int], list[torch.Tensor]]:
    def make(batch: int) -> list[torch.Tensor]:
        return [torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))]
    return make


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return factory()
    return build


def _net(name: str, cfg: ModelConfig, data: tuple[int, int, int], grid: tuple[int, int], **kw) -> Case:
    return Case(name, _seeded(lambda: build_model(cfg, data, grid)), _gathers(data), (1, *grid), **kw)


# Blocks with parameters behind a zero-initialised factor, so their gradient is exactly 0 at init (it exists and is
# finite): DA's position branch (gamma_pos = 0), shuffle attention's GroupNorm affine (sweight = 0).
ZERO_GRAD_AT_INIT = {"da", "shuffle"}
SMALL = dict(depth=2, base_channels=8)
DATA, GRID = (3, 40, 11), (20, 28)


def cases() -> list[Case]:
    out = [
        _net("unet", ModelConfig(**SMALL), DATA, GRID),
        _net("unet-depth3-odd-grid", ModelConfig(depth=3, base_channels=4), DATA, (31, 45)),
        _net("unet-depth4-70x70", ModelConfig(depth=4, base_channels=4), DATA, (70, 70)),
        _net("unet-tiny-grid", ModelConfig(depth=2, base_channels=4), DATA, (17, 9)),
        Case("unet-conv-downsampling-long-survey",
             _seeded(lambda: AttentionUNet(2, 333, 57, grid=(31, 45), depth=4, base_channels=4, downsample="conv")),
             _gathers((2, 333, 57)), (1, 31, 45)),
        _net("mix", ModelConfig(**SMALL, decoder="mix", mix_dim=8, mix_heads=2), DATA, GRID),
        _net("mix-depth3-odd-grid", ModelConfig(depth=3, base_channels=4, decoder="mix", mix_dim=8, mix_heads=2),
             DATA, (31, 45)),
        _net("mix-tiny-grid", ModelConfig(depth=2, base_channels=4, decoder="mix", mix_dim=8, mix_heads=2), DATA,
             (17, 9)),
        _net("mix-depth4-70x70", ModelConfig(depth=4, base_channels=4, decoder="mix", mix_dim=8, mix_heads=2),
             DATA, (70, 70)),
        _net("inversionnet-openfwi-like", ModelConfig(arch="inversionnet"), (3, 200, 31), (31, 45)),
        _net("inversionnet-short", ModelConfig(arch="inversionnet"), (2, 64, 12), (20, 24)),
        _net("inversionnet-wide", ModelConfig(arch="inversionnet"), (2, 1500, 120), (50, 90)),
    ]
    for gate in list_gates():
        out.append(_net(f"unet-gate:{gate}", ModelConfig(**SMALL, skip_gate=gate), DATA, GRID))
        out.append(_net(f"mix-gate:{gate}", ModelConfig(**SMALL, skip_gate=gate, decoder="mix", mix_dim=8,
                                                        mix_heads=2), DATA, GRID))
    for attn in list_attn()[1:]:
        cfg = ModelConfig(**SMALL, attn=attn, encoder_attn=True, skip_attn=True, bottleneck_attn=True,
                          decoder_attn=True)
        out.append(_net(f"unet-{attn}-everywhere", cfg, DATA, GRID, all_grads_nonzero=attn not in ZERO_GRAD_AT_INIT))
    for norm in list_norms():
        for act in list_acts():
            out.append(_net(f"unet-{norm}-{act}", ModelConfig(depth=2, base_channels=8, norm=norm, act=act), DATA,
                            (12, 16)))
    # the decoders alone, on encoder-like feature lists (finest first, then the bottleneck)
    sizes, widths = [(13, 11), (7, 6), (4, 3)], [4, 8, 16]

    def features(batch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(batch)
        return [torch.randn(batch, c, *hw, generator=g) for c, hw in zip(widths, sizes)]

    out.append(Case("decoder:unet", _seeded(lambda: UNetDecoder(widths)), features, (4, 13, 11), network=False,
                    call=_decoder_call))
    out.append(Case("decoder:unet-gated-se", _seeded(lambda: UNetDecoder(widths, attn="se", decoder_attn=True,
                                                                        skip_gate="gate")),
                    features, (4, 13, 11), network=False,
                    call=_decoder_call))
    out.append(Case("decoder:mix", _seeded(lambda: MixAttentionDecoder(widths, dim=8, heads=2)), features,
                    (8, 13, 11), network=False, call=_decoder_call))
    out.append(Case("decoder:mix-gated-ca", _seeded(lambda: MixAttentionDecoder(widths, dim=8, heads=2, attn="ca",
                                                                              decoder_attn=True, skip_gate="gate")),
                    features, (8, 13, 11), network=False,
                    call=_decoder_call))
    return out


CASES = {c.name: c for c in cases()}


def _outputs(case: Case, out) -> list[torch.Tensor]:
    if case.network:
        assert isinstance(out, dict) and set(out) == {"velocity", "salt_logits"}
        return [out["velocity"], out["salt_logits"]]
    assert torch.is_tensor(out)
    return [out]


@pytest.mark.parametrize("name", list(CASES))
def test_shapes_finite_and_range(name):
    case = CASES[name]
    model = case.build()
    outs = _outputs(case, case.call(model, case.inputs(2)))
    for y in outs:
        assert y.shape == (2, *case.out_shape)
        assert torch.isfinite(y).all()
    if case.network:
        assert outs[0].abs().max() <= 1.0  # tanh velocity head


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_input_and_parameters(name):
    case = CASES[name]
    model = case.build().train()
    inputs = [x.requires_grad_(True) for x in case.inputs(2)]
    loss = sum((y * torch.randn_like(y)).sum() for y in _outputs(case, case.call(model, inputs)))
    loss.backward()
    for i, x in enumerate(inputs):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, f"input {i}"
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"no (finite) gradient reaches {no_grad}"
    if case.all_grads_nonzero:
        zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
        assert not zero, f"zero gradient at {zero}"


@pytest.mark.parametrize("name", list(CASES))
def test_eval_is_deterministic_and_per_sample(name):
    case = CASES[name]
    model = case.build()
    with torch.no_grad():
        case.call(model, case.inputs(2))  # one training-mode pass: non-trivial BatchNorm running statistics
        model.eval()
        batch = case.inputs(2)
        first = _outputs(case, case.call(model, batch))
        again = _outputs(case, case.call(model, batch))
        alone = _outputs(case, case.call(model, [x[:1] for x in batch]))
    for a, b, c in zip(first, again, alone):
        assert torch.equal(a, b)  # same input, same output
        torch.testing.assert_close(c, a[:1], rtol=1e-4, atol=1e-5)  # no mixing across the batch in eval mode


def test_cases_cover_both_families_every_block_gate_norm_and_act():
    names = set(CASES)
    assert any(n.startswith("inversionnet") for n in names) and "unet" in names and "mix" in names
    assert {f"unet-{a}-everywhere" for a in list_attn()[1:]} <= names
    assert {f"unet-gate:{g}" for g in list_gates()} <= names
    assert {f"unet-{n}-{a}" for n in list_norms() for a in list_acts()} <= names
    assert any(isinstance(CASES[n].build(), InversionNet) for n in names if n.startswith("inversionnet"))
    assert dataclasses.fields(Case)  # the dataclass is the whole interface of a case
