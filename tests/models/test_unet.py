"""AttentionUNet, mix decoder, ModelConfig / build_model and the summary tool (small sizes only).

The output contract every network shares (shapes on any grid, finite values, gradients, eval determinism) is
checked once for all of them in ``test_model_contract.py``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch import nn

from fwi.models.attention.registry import ATTN, create_attn, create_gate, list_attn, list_gates
from fwi.models.build import build_model
from fwi.models.config import ModelConfig
from fwi.models.layers import match_size
from fwi.models.mix_decoder import CrossAttention, MixAttentionDecoder
from fwi.models.complexity import count_flops, count_params
from fwi.models.unet import AttentionUNet, stage_widths

BLOCKS = [a for a in list_attn() if a != "none"]
PLACES = ["encoder_attn", "skip_attn", "bottleneck_attn", "decoder_attn"]
SMALL = dict(in_shots=3, nt=40, nrec=11, base_channels=4)


def small_unet(grid=(30, 40), depth=3, **kw) -> AttentionUNet:
    torch.manual_seed(0)
    return AttentionUNet(grid=grid, depth=depth, **{**SMALL, **kw})


def gathers(batch=2, shots=3, nt=40, nrec=11, seed=1) -> torch.Tensor:
    return torch.randn(batch, shots, nt, nrec, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- widths


def test_stage_widths_capped():
    assert stage_widths(4, 32) == [32, 64, 128, 256, 512]
    assert stage_widths(5, 64, 512) == [64, 128, 256, 512, 512, 512]


# ---------------------------------------------------------------- attention placement


def _se_params(c: int, reduction: int = 16, min_hidden: int = 8) -> int:
    """Squeeze-excitation params written out: fc1 (C -> h, bias) + fc2 (h -> C, bias), h = max(C // r, 8)."""
    h = max(c // reduction, min_hidden)
    return c * h + h + h * c + c


@pytest.mark.parametrize("place", PLACES)
def test_se_parameter_increase_matches_widths(place):
    depth, base = 3, 16
    w = [base * 2 ** i for i in range(depth + 1)]  # 16, 32, 64, 128
    expected_widths = {"encoder_attn": w[:depth], "skip_attn": w[:depth], "bottleneck_attn": [w[depth]],
                       "decoder_attn": w[:depth]}[place]
    kw = dict(grid=(20, 24), depth=depth, base_channels=base)
    plain = count_params(small_unet(**kw))
    with_se = count_params(small_unet(**kw, attn="se", **{place: True}))
    assert with_se - plain == sum(_se_params(c) for c in expected_widths)


def _count_blocks(model: nn.Module, block_type: type) -> int:
    return sum(type(m) is block_type for m in model.modules())


@pytest.mark.parametrize("name", BLOCKS)
def test_each_place_inserts_block(name):
    depth = 2
    block_type = type(create_attn(name, 16))
    expected = {"encoder_attn": depth, "skip_attn": depth, "bottleneck_attn": 1, "decoder_attn": depth}
    kw = dict(grid=(12, 16), depth=depth, base_channels=16)
    assert _count_blocks(small_unet(**kw, attn=name), block_type) == 0  # no place selected -> no block
    for place, n in expected.items():
        assert _count_blocks(small_unet(**kw, attn=name, **{place: True}), block_type) == n, place
    both = small_unet(**kw, attn=name, encoder_attn=True, skip_attn=True)
    assert _count_blocks(both, block_type) == 2 * depth
    # The mix decoder has depth + 1 decoder stages, each followed by the block when decoder_attn is set.
    mix = small_unet(**kw, attn=name, decoder="mix", decoder_attn=True, mix_dim=16, mix_heads=2)
    assert _count_blocks(mix, block_type) == depth + 1


def test_encoder_attention_changes_forward():
    """The inserted block is on the data path: perturbing its parameters changes the output."""
    model = small_unet(attn="se", encoder_attn=True).eval()
    x = gathers()
    ref = model(x)["velocity"]
    se = next(m for m in model.encoder_attn if count_params(m))
    with torch.no_grad():
        for p in se.parameters():
            p.add_(1.0)
    assert not torch.allclose(model(x)["velocity"], ref)


# ---------------------------------------------------------------- gates


@pytest.mark.parametrize("gate_name", list_gates())
@pytest.mark.parametrize("grid", [(31, 45), (30, 40)])
def test_gate_changes_output_and_gets_gradients(gate_name, grid):
    depth = 3
    model = small_unet(grid, depth, skip_gate=gate_name).eval()
    gate_type = type(create_gate(gate_name, 8, 16))
    gates = [m for m in model.modules() if type(m) is gate_type]
    assert len(gates) == depth
    x = gathers()
    out = model(x)
    gated = out["velocity"].detach().clone()
    (out["velocity"].square().sum() + out["salt_logits"].square().sum()).backward()
    for g in gates:
        for name, p in g.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name

    class Bypass(nn.Module):
        def forward(self, skip, gating):
            return skip

    for block in model.decoder.blocks:
        block.gate = Bypass()
    with torch.no_grad():
        ungated = model(x)["velocity"]
    assert ungated.shape == gated.shape
    assert not torch.allclose(ungated, gated)


@pytest.mark.parametrize("gate_name", list_gates())
def test_gate_with_mix_decoder(gate_name):
    """With the mix decoder, each lateral query but the coarsest is gated by the previous decoder output."""
    depth = 3
    model = small_unet((31, 45), depth, decoder="mix", mix_dim=8, mix_heads=2, skip_gate=gate_name)
    gate_type = type(create_gate(gate_name, 8, 16))
    assert sum(type(m) is gate_type for m in model.modules()) == depth
    out = model(gathers())
    assert out["velocity"].shape == (2, 1, 31, 45)


# ---------------------------------------------------------------- mix decoder


@pytest.mark.parametrize("grid,depth", [((31, 45), 3), ((70, 70), 4)])
def test_mix_decoder_kv_tokens_and_queries(grid, depth):
    dim, heads = 8, 2
    model = small_unet(grid, depth, decoder="mix", mix_dim=dim, mix_heads=heads)
    dec = model.decoder
    assert isinstance(dec, MixAttentionDecoder)
    n_stages = depth + 1
    assert dec.n_stages == n_stages and len(dec.blocks) == n_stages

    # Stage sizes with ceil-mode halving: finest first.
    sizes = [grid]
    for _ in range(depth):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    coarse = sizes[-1]

    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].shape, inp[1].shape, out.shape)))
             for m in dec.modules() if isinstance(m, CrossAttention)]
    model(gathers())
    for h in hooks:
        h.remove()
    assert len(seen) == n_stages
    widths = stage_widths(depth, SMALL["base_channels"])
    stage_dims = [min(dim, c) for c in widths]  # a stage works at its lateral's width, capped at mix_dim
    assert dec.stage_dims == stage_dims
    for j, (q_shape, kv_shape, out_shape) in enumerate(seen):
        stage = n_stages - 1 - j
        # Queries: one token per pixel of the lateral feature of this stage.
        assert q_shape == (2, sizes[stage][0] * sizes[stage][1], stage_dims[stage])
        assert out_shape == q_shape
        # Keys/values: every stage pooled to the coarsest size, projected to mix_dim, concatenated along channels.
        assert kv_shape == (2, coarse[0] * coarse[1], n_stages * dim)
        # Mix sources: decoder outputs for the j stages already decoded, encoder features otherwise.
        in_features = [p.in_features for p in dec.blocks[j].mix_proj]
        decoded = set(range(n_stages - j, n_stages))
        assert in_features == [stage_dims[i] if i in decoded else widths[i] for i in range(n_stages)]
        assert all(p.out_features == dim for p in dec.blocks[j].mix_proj)


@pytest.mark.parametrize("fuse_dim", [None, 4])
def test_mix_decoder_fusion_equals_concat_then_conv(fuse_dim):
    """The per-stage fusion equals the paper's order: resize all outputs, concatenate, one 1x1 conv (to ``dim``
    channels, or to ``fuse_dim``)."""
    torch.manual_seed(0)
    dec = MixAttentionDecoder([4, 8, 16], dim=8, heads=2, norm="none", fuse_dim=fuse_dim).eval()
    feats = [torch.randn(2, 4, 13, 11), torch.randn(2, 8, 7, 6), torch.randn(2, 16, 4, 3)]
    outputs = []
    hooks = [p.register_forward_hook(lambda m, i, o: outputs.append(i[0])) for p in dec.fuse_proj]
    fused = dec(feats)
    for h in hooks:
        h.remove()
    # Hooks fire coarse -> fine; put the outputs back finest first.
    outs = outputs[::-1]
    ups = [torch.nn.functional.interpolate(o, size=(13, 11), mode="bilinear", align_corners=False) for o in outs]
    weight = torch.cat([p.weight for p in dec.fuse_proj], dim=1)  # (dim, sum of stage widths, 1, 1)
    ref = dec.fuse_act(torch.nn.functional.conv2d(torch.cat(ups, dim=1), weight, dec.fuse_proj[0].bias))
    assert torch.allclose(fused, ref, atol=1e-5)
    assert fused.shape == (2, fuse_dim or 8, 13, 11) and dec.out_channels == (fuse_dim or 8)


def test_mix_decoder_uses_decoded_stages():
    """Changing the coarsest decoder output changes a finer stage's kv, hence the result (true mix)."""
    torch.manual_seed(0)
    dec = MixAttentionDecoder([4, 8, 16], dim=8, heads=2).eval()
    feats = [torch.randn(1, 4, 13, 11), torch.randn(1, 8, 7, 6), torch.randn(1, 16, 4, 3)]
    ref = dec(feats)
    assert ref.shape == (1, 8, 13, 11)
    with torch.no_grad():
        dec.blocks[0].ffn.fc2.bias.add_(1.0)  # only affects the coarsest decoder output
    assert not torch.allclose(dec(feats), ref)


# ---------------------------------------------------------------- config / build


@pytest.mark.parametrize("field,value,valid", [
    ("attn", "nope", "se"),
    ("skip_gate", "nope", "gate"),
    ("decoder", "nope", "mix"),
    ("arch", "nope", "inversionnet"),
    ("norm", "nope", "group"),
    ("act", "nope", "leaky_relu"),
])
def test_validate_names_valid_choices(field, value, valid):
    with pytest.raises(ValueError) as e:
        ModelConfig(**{field: value}).validate()
    assert value in str(e.value) and valid in str(e.value)


def test_validate_attn_without_place_and_place_without_attn():
    with pytest.raises(ValueError) as e:
        ModelConfig(attn="se").validate()
    msg = str(e.value)
    for flag in ("--encoder-attn", "--skip-attn", "--bottleneck-attn", "--decoder-attn"):
        assert flag in msg
    with pytest.raises(ValueError) as e:
        ModelConfig(skip_attn=True).validate()
    assert "--attn" in str(e.value) and "--skip-attn" in str(e.value)
    ModelConfig(attn="se", skip_attn=True).validate()
    ModelConfig().validate()


def test_build_model_rejects_bad_config():
    with pytest.raises(ValueError):
        build_model(ModelConfig(attn="se"), (3, 40, 11), (20, 24))


def test_attn_reduction_reaches_the_blocks_that_take_it():
    cfg = ModelConfig(attn="se", skip_attn=True, depth=2, base_channels=64, attn_reduction=4)
    model = build_model(cfg, (3, 40, 11), (12, 16))
    se_type = type(create_attn("se", 64))
    ref = count_params(se_type(64, reduction=4)) + count_params(se_type(128, reduction=4))
    assert sum(count_params(m) for m in model.modules() if type(m) is se_type) == ref


@pytest.mark.parametrize("name", [b for b in BLOCKS if "reduction" not in ATTN.options(b)])
def test_attn_reduction_refused_by_blocks_without_one(name):
    """--attn-reduction is not silently dropped for a block without a reduction ratio (ECA, SimAM, SGE...)."""
    cfg = ModelConfig(attn=name, skip_attn=True, depth=2, base_channels=8, attn_reduction=4)
    with pytest.raises(ValueError) as e:
        cfg.validate()
    assert "--attn-reduction" in str(e.value) and repr(name) in str(e.value)
    dataclasses.replace(cfg, attn_reduction=None).validate()


def test_mistyped_block_option_fails_loudly_in_the_network():
    for kw in (dict(attn="se", skip_attn=True), dict(attn="se")):  # placed, and selected but placed nowhere
        with pytest.raises(ValueError, match=r"attention block 'se' takes no option 'reductoin'"):
            small_unet(grid=(12, 16), depth=2, attn_kwargs={"reductoin": 2}, **kw)
    with pytest.raises(ValueError, match=r"gate 'gate' takes no option 'inter'.*inter_channels"):
        small_unet(grid=(12, 16), depth=2, skip_gate="gate", gate_kwargs={"inter": 2})
    with pytest.raises(ValueError, match=r"attention block 'eca' takes no option 'reduction'"):
        MixAttentionDecoder([4, 8], dim=8, heads=2, attn="eca", decoder_attn=True, attn_kwargs={"reduction": 2})
    model = small_unet(grid=(12, 16), depth=2, attn="nl", skip_attn=True, attn_kwargs={"sr_ratio": 2})
    assert all(block.sr_ratio == 2 for block in model.skip_attn)  # a valid option still arrives


def test_unknown_decoder_downsampling_and_norm_name_the_valid_ones():
    for kw, message in [(dict(decoder="nope"), "unknown decoder 'nope'; valid: unet, mix"),
                        (dict(downsample="nope"), "unknown downsampling 'nope'; valid: maxpool, conv"),
                        (dict(norm="nope"), "unknown norm 'nope'; valid: batch, instance, group, none"),
                        (dict(act="nope"), "unknown activation 'nope'; valid: relu, leaky_relu, gelu, silu")]:
        with pytest.raises(ValueError) as e:
            small_unet(grid=(12, 16), depth=2, **kw)
        assert str(e.value) == message


def test_unet_decoder_is_one_decoder_block_per_level():
    """smp's cut: level j of the decoder is ``blocks[j]`` (coarse -> fine), ``x = block(x, skip)``."""
    model = small_unet((31, 45), 3, attn="se", decoder_attn=True, skip_gate="gate").eval()
    widths = model.widths
    assert [(b.up.in_channels, b.up.out_channels) for b in model.decoder.blocks] == [(32, 16), (16, 8), (8, 4)]
    assert widths == [4, 8, 16, 32]
    feats = [torch.randn(2, w, *hw) for w, hw in zip(widths, [(31, 45), (16, 23), (8, 12), (4, 6)])]
    with torch.no_grad():
        x = feats[-1]
        for j, block in enumerate(model.decoder.blocks):
            skip = feats[-2 - j]
            gated = block.gate(skip, x)
            up = match_size(block.up(x), tuple(skip.shape[-2:]))  # 2x up-conv of a ceil-halved map, cropped
            x = block.attn(block.conv(torch.cat([gated, up], dim=1)))
        torch.testing.assert_close(model.decoder(feats), x, rtol=0, atol=0)


def test_downsample_and_mix_mlp_ratio_are_config_keys_that_reach_the_network():
    data, grid = (3, 40, 11), (30, 40)
    plain = build_model(ModelConfig(depth=2, base_channels=4), data, grid)
    conv = build_model(ModelConfig(depth=2, base_channels=4, downsample="conv"), data, grid)
    assert all(isinstance(d.op, nn.MaxPool2d) for d in plain.downs)
    assert [d.op[0].stride for d in conv.downs] == [(2, 2), (2, 2)]
    assert count_params(conv) > count_params(plain)
    mix = build_model(ModelConfig(depth=2, base_channels=4, decoder="mix", mix_dim=8, mix_heads=2, mix_mlp_ratio=2),
                      data, grid)
    assert [b.ffn.fc1.out_features for b in mix.decoder.blocks] == [2 * w for w in mix.decoder.stage_dims[::-1]]
    assert mix.velocity_head[0].in_channels == 8  # fused at mix_dim by default
    narrow = build_model(ModelConfig(depth=2, base_channels=4, decoder="mix", mix_dim=8, mix_heads=2, mix_fuse_dim=4),
                         data, grid)
    assert narrow.velocity_head[0].in_channels == narrow.salt_head.in_channels == 4
    assert narrow(torch.randn(2, *data))["velocity"].shape == (2, 1, *grid)
    for kw, message in [(dict(downsample="nope"), "unknown downsampling (--downsample) 'nope'; valid: maxpool, conv"),
                        (dict(mix_mlp_ratio=0.0), "mix_mlp_ratio must be > 0, got 0.0"),
                        (dict(mix_fuse_dim=0), "mix_fuse_dim must be >= 1, got 0"),
                        (dict(arch="nope"), "unknown network family (--arch) 'nope'; valid: unet, inversionnet")]:
        with pytest.raises(ValueError) as e:
            ModelConfig(**kw).validate()
        assert str(e.value) == message


def test_config_lists_the_network_families_build_registers_and_validates_without_build():
    """No import cycle: `ModelConfig.validate` asks the registries where they live, not `fwi.models.build` (which
    imports the config); its list of families is the one `build` registers."""
    from fwi.models.build import BUILDERS
    from fwi.models.config import ARCHS

    assert list(ARCHS) == BUILDERS.names()
    code = ("import sys\n"
            "from fwi.models.config import ModelConfig\n"
            "ModelConfig(attn='cbam', skip_attn=True, skip_gate='gate', downsample='conv').validate()\n"
            "assert 'fwi.models.build' not in sys.modules\n"
            "assert 'torch' in sys.modules and 'fwi.models.attention.cbam' in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- summary


def test_count_flops_single_conv_by_hand():
    cin, cout, k, h, w = 3, 5, 3, 13, 17
    conv = nn.Conv2d(cin, cout, k, padding=1)
    assert count_flops(conv, torch.zeros(1, cin, h, w)) == 2 * cin * cout * k * k * h * w
    assert count_params(conv) == cin * cout * k * k + cout


def test_count_flops_counts_cpu_attention():
    class Attn(nn.Module):
        def forward(self, x):
            return torch.nn.functional.scaled_dot_product_attention(x, x[:, :, :7], x[:, :, :7])

    b, heads, n, d = 1, 2, 20, 8
    # QK^T and AV: 2 matmuls of n x d x 7 per head, 2 FLOPs per multiply-add.
    assert count_flops(Attn(), torch.zeros(b, heads, n, d)) == 2 * 2 * b * heads * n * 7 * d


def test_summary_all_attn_cli():
    cmd = [sys.executable, "-m", "fwi.models.summary", "--all-attn", "--grid", "12", "16", "--shots", "2",
           "--nt", "24", "--nrec", "8", "--depth", "2", "--base-channels", "4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [line.split()[:2] for line in res.stdout.splitlines()]
    labels = [" ".join(r) for r in rows]
    for name in BLOCKS:
        assert sum(label == f"unet {name}@encoder+skip" for label in labels) == 1, name
    for gate in list_gates():
        assert f"unet {gate}@skips" in labels
    assert any(r[0] == "unet" and r[1][0].isdigit() for r in rows)  # the plain U-Net row
    assert "unet mix-decoder" in labels
    assert any(r[0] == "inversionnet" for r in rows)
