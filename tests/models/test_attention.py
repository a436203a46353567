"""Tests of the attention block zoo: the shared contract of every registered block, and reference checks that
recompute the papers' equations with plain torch ops from each block's own weights."""

from __future__ import annotations

import math
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fwi.models import attention
from fwi.models.attention.common import largest_divisor_at_most, multi_head_attention
from fwi.models.attention.eca import eca_kernel_size
from fwi.models.attention.registry import ATTN, GATES, create_attn, create_gate, list_attn, list_gates
from fwi.models.attention.se import ChannelAttn
from fwi.models.attention.shuffle import shuffle_groups
from fwi.models.mix_decoder import CrossAttention

EXPECTED_NAMES = {
    "se", "eca", "cbam", "bam", "ca", "scse", "sge", "shuffle", "sk", "psa", "da", "simam", "a2", "nl", "aft", "muse",
}
NAMES = [n for n in list_attn() if n != "none"]
CHANNELS = [8, 24, 64, 512]
# Parameters whose gradient is zero by construction: a per-map constant added before a softmax over that map.
ANALYTICALLY_ZERO_GRAD = {("da", "key.bias"), ("a2", "conv_b.bias")}


# ----------------------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The maps here are tiny: one intra-op thread avoids oversubscription slowdowns on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _shapes(c: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(training shapes with batch 2, eval shapes with batch 1); non-square, odd and tiny maps."""
    if c >= 512:  # keep the widest case on tiny maps so it stays fast
        return [(2, c, 3, 5), (2, c, 1, 1)], [(1, c, 4, 4), (1, c, 1, 1)]
    return [(2, c, 9, 14), (2, c, 5, 3), (2, c, 1, 1)], [(1, c, 5, 3), (1, c, 3, 5), (1, c, 1, 1)]


def _unregistered(block: nn.Module) -> list[str]:
    """Attributes holding modules/tensors outside the registration machinery (plain lists, dicts, bare tensors)."""
    bad = []
    for mod_name, mod in block.named_modules():
        for attr, val in vars(mod).items():
            if attr.startswith("_"):
                continue
            if isinstance(val, torch.Tensor):
                bad.append(f"{mod_name}.{attr}")
            items = val if isinstance(val, (list, tuple)) else val.values() if isinstance(val, dict) else ()
            if any(isinstance(v, (nn.Module, torch.Tensor)) for v in items):
                bad.append(f"{mod_name}.{attr}")
    return bad


def _randomise_bn(block: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters for every BatchNorm (eval-mode references)."""
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)


def _bn_eval(y: torch.Tensor, bn: nn.Module, dim: int = 1) -> torch.Tensor:
    shape = [1] * y.dim()
    shape[dim] = -1
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    y = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x)
    return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1)


def _conv_direct(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int, dil: int = 1
) -> torch.Tensor:
    """Dense 2D cross-correlation written as a sum of shifted copies (zero padding ``pad``, dilation ``dil``)."""
    _, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.zeros(x.shape[0], weight.shape[0], h, w, dtype=x.dtype)
    for i in range(weight.shape[2]):
        for j in range(weight.shape[3]):
            patch = xp[:, :, i * dil : i * dil + h, j * dil : j * dil + w]
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], patch)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _linear(v: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    y = v @ lin.weight.T
    return y if lin.bias is None else y + lin.bias


def _layer_norm(t: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    mean = t.mean(-1, keepdim=True)
    var = ((t - mean) ** 2).mean(-1, keepdim=True)
    return (t - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _depthwise_direct(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Depthwise k x k conv (zero padding k // 2) as a sum of shifted copies."""
    k = conv.kernel_size[0]
    p, (h, w) = k // 2, x.shape[-2:]
    xp = F.pad(x, (p, p, p, p))
    wt = conv.weight[:, 0]  # (C, k, k)
    out = sum(wt[:, i, j].view(1, -1, 1, 1) * xp[:, :, i : i + h, j : j + w] for i in range(k) for j in range(k))
    return out + conv.bias.view(1, -1, 1, 1)


def _heads_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    dh = q.shape[-1] // heads
    outs = []
    for i in range(heads):
        qi, ki, vi = (t[..., i * dh : (i + 1) * dh] for t in (q, k, v))
        outs.append(torch.softmax(qi @ ki.transpose(1, 2) / math.sqrt(dh), dim=-1) @ vi)
    return torch.cat(outs, dim=-1)


# ----------------------------------------------------------------------------------------------- registry
def test_registry_names():
    assert list_attn()[0] == "none"
    assert EXPECTED_NAMES <= set(list_attn())
    assert "gate" in list_gates()


def test_names_first_none_then_alphabetical_and_files_named_after_them():
    """``--attn ca`` lives in ``ca.py``: every block's module is named after its registry name."""
    assert list_attn() == ["none"] + sorted(list_attn()[1:])
    for name in list_attn()[1:]:
        assert ATTN.get(name).__module__ == f"fwi.models.attention.{name}", name
    for name in list_gates():
        assert GATES.get(name).__module__ == f"fwi.models.attention.{name}", name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        create_attn("no-such-block", 16)
    for name in list_attn():
        assert name in str(err.value)
    with pytest.raises(ValueError, match="gate"):
        create_gate("no-such-gate", 16, 32)


def test_none_is_identity():
    block = create_attn("none", 16)
    assert isinstance(block, nn.Identity)
    x = torch.randn(1, 16, 3, 5)
    assert block(x) is x


def test_kwargs_reach_the_block():
    assert create_attn("se", 64, reduction=4).fc1.out_features == 16
    assert create_attn("se", 64).fc1.out_features == 8  # 64 // 16 = 4, floored at min_hidden 8
    assert create_attn("se", 64, reduction=4, min_hidden=32).fc1.out_features == 32
    assert create_attn("ca", 512).conv1.out_channels == 16  # 512 // 32
    assert create_attn("ca", 64).conv1.out_channels == 8  # max(8, 2)


@pytest.mark.parametrize("name,bad,options", [
    ("eca", "reduction", "gamma, b, kernel_size"),
    ("simam", "reduction", "e_lambda"),
    ("se", "reductoin", "reduction, min_hidden"),
    ("da", "reduction", "qk_reduction"),
])
def test_options_a_block_does_not_take_fail_loudly(name, bad, options):
    """timm's create_attn: options are passed through, so a mistyped or inapplicable one is an error, not dropped."""
    with pytest.raises(ValueError) as err:
        create_attn(name, 16, **{bad: 4})
    assert str(err.value) == f"attention block {name!r} takes no option {bad!r} (its options: {options})"
    with pytest.raises(ValueError, match=r"gate 'gate' takes no option 'reduction' \(its options: inter_channels\)"):
        create_gate("gate", 8, 16, reduction=2)
    assert isinstance(create_attn("none", 16, **{bad: 4}), nn.Identity)  # no block: nothing to configure


def test_channel_branches_hold_one_channel_attn():
    """SE is a ChannelAttn; CBAM, scSE and BAM hold one as ``channel``, PSA as ``se`` (composition, timm's cut)."""
    assert type(create_attn("se", 16)) is ChannelAttn
    for name, child in (("cbam", "channel"), ("scse", "channel"), ("bam", "channel"), ("psa", "se")):
        block = create_attn(name, 16)
        assert not isinstance(block, ChannelAttn) and type(getattr(block, child)) is ChannelAttn, name
    # CBAM = its channel attention, then its spatial attention on the result
    torch.manual_seed(0)
    cbam = create_attn("cbam", 32, reduction=4)
    chan = ChannelAttn(32, reduction=4, pools=("avg", "max"))
    chan.load_state_dict(cbam.channel.state_dict())
    x = torch.randn(2, 32, 5, 7)
    torch.testing.assert_close(cbam(x), chan(x) * cbam.spatial_map(chan(x)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="pools"):
        ChannelAttn(8, pools=("median",))


@pytest.mark.parametrize("name, old, new", [
    ("cbam", ["fc1", "fc2"], ["channel.fc1", "channel.fc2"]),
    ("scse", ["fc1", "fc2"], ["channel.fc1", "channel.fc2"]),
    ("bam", ["channel_fc1", "channel_fc2"], ["channel.fc1", "channel.fc2"]),
    ("psa", ["se_fc1", "se_fc2"], ["se.fc1", "se.fc2"]),
])
def test_blocks_load_state_dicts_with_their_old_layer_names(name, old, new):
    """Checkpoints written when the channel layers sat on the block itself load into the composed block, strictly,
    and give the same outputs; a state dict with the new names loads too, and saving writes the new names."""
    torch.manual_seed(0)
    block = create_attn(name, 16).eval()
    state = block.state_dict()
    assert all(f"{n}.{p}" in state for n in new for p in ("weight", "bias"))
    rename = {f"{n}.{p}": f"{o}.{p}" for o, n in zip(old, new) for p in ("weight", "bias")}
    old_state = {rename.get(k, k): v.clone() for k, v in state.items()}
    assert set(old_state) != set(state)
    torch.manual_seed(1)
    fresh = create_attn(name, 16).eval()
    fresh.load_state_dict(old_state, strict=True)
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(fresh(x), block(x), rtol=0, atol=0)
    assert list(fresh.state_dict()) == list(state)
    with pytest.raises(RuntimeError, match="Unexpected"):  # an unknown key still fails a strict load
        fresh.load_state_dict({**old_state, "bogus.weight": torch.zeros(1)}, strict=True)


def test_every_module_of_the_attention_package_registers_under_its_file_name():
    """A new block is one new file: the package imports every module, and each registers a block or gate named
    after the file (helpers listed in HELPER_MODULES excepted)."""
    modules = {m.name for m in pkgutil.iter_modules(attention.__path__)} - set(attention.HELPER_MODULES)
    assert modules and set(attention.HELPER_MODULES) <= {m.name for m in pkgutil.iter_modules(attention.__path__)}
    for module in sorted(modules):
        assert module in ATTN or module in GATES, f"fwi/models/attention/{module}.py registers no block {module!r}"
    assert modules == set(list_attn()[1:]) | set(list_gates())


def test_a_new_block_file_registers_without_editing_another_file(tmp_path):
    """Drop a block file into (a copy of) the package: ``--attn`` accepts it, no other file edited."""
    package = Path(attention.__file__).parents[2]  # .../fwi
    shutil.copytree(package, tmp_path / "fwi", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "fwi" / "models" / "attention" / "halve.py").write_text(
        "from torch import nn\n\n"
        "from fwi.models.attention.registry import register_attn\n\n\n"
        "@register_attn('halve')\n"
        "class Halve(nn.Module):\n"
        "    def __init__(self, channels: int) -> None:\n"
        "        super().__init__()\n\n"
        "    def forward(self, x):\n"
        "        return x / 2\n")
    code = ("import torch\n"
            "from fwi.models.attention.registry import create_attn, list_attn\n"
            "from fwi.models.config import ModelConfig\n"
            "assert 'halve' in list_attn(), list_attn()\n"
            "assert float(create_attn('halve', 4)(torch.ones(1, 4, 2, 2)).sum()) == 8\n"
            "ModelConfig(attn='halve', skip_attn=True).validate()\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)  # not the checkout: its fwi would come first on the path
    assert res.returncode == 0, res.stderr


def test_largest_divisor_at_most_matches_brute_force():
    for n in range(1, 41):
        for cap in range(0, 45):
            expected = max([g for g in range(1, max(cap, 1) + 1) if n % g == 0])
            assert largest_divisor_at_most(n, cap) == expected, (n, cap)
        if n % 2 == 0:
            for groups in range(1, 12):
                g = shuffle_groups(n, groups)
                assert n % (2 * g) == 0 and all(n % (2 * h) for h in range(g + 1, groups + 1)), (n, groups)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_multi_head_attention_and_cross_attention_match_per_head_softmax(heads: int):
    """The one multi-head attention (used by NL, MUSE and the mix decoder) against per-head softmax(QK^T/sqrt d)V."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 7, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64), \
        torch.randn(2, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(multi_head_attention(q, k, v, heads), _heads_attention(q, k, v, heads))
    attn = CrossAttention(8, 6, heads).to(torch.float64)
    kv = torch.randn(2, 5, 6, dtype=torch.float64)
    keys, values = _linear(kv, attn.kv).split(8, dim=-1)  # keys first, then values
    ref = _linear(_heads_attention(_linear(q, attn.q), keys, values, heads), attn.proj)
    torch.testing.assert_close(attn(q, kv), ref)


# ----------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", NAMES)
def test_block_contract(name: str, channels: int):
    torch.manual_seed(0)
    block = create_attn(name, channels)
    train_shapes, eval_shapes = _shapes(channels)

    # every submodule / tensor registered, and covered by the state dict
    assert _unregistered(block) == []
    keys = set(block.state_dict())
    assert {n for n, _ in block.named_parameters()} <= keys
    assert {n for n, _ in block.named_buffers()} <= keys
    params = list(block.parameters())

    # training mode, batch 2: shape kept, finite, and gradients reach the input and every parameter
    block.train()
    for i, shape in enumerate(train_shapes):
        x = torch.randn(shape, requires_grad=i == 0)
        y = block(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()
        if i == 0:
            (y * torch.randn_like(y)).sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
            for n, p in block.named_parameters():
                assert p.grad is not None, f"no gradient reaches {n}"
                assert torch.isfinite(p.grad).all(), f"non-finite gradient at {n}"
            if params:
                assert any(p.grad.abs().sum() > 0 for p in params)

    # eval mode: batch 1 works and equals the same sample inside a batch (no cross-sample mixing)
    block.eval()
    with torch.no_grad():
        for shape in eval_shapes:
            x = torch.randn(shape)
            y = block(x)
            assert y.shape == x.shape
            assert torch.isfinite(y).all()
            both = block(torch.cat([x, torch.randn_like(x)]))
            torch.testing.assert_close(both[:1], y, rtol=1e-4, atol=1e-5)

    # every parameter / buffer follows .to(float64); forward runs in float64
    numel = sum(p.numel() for p in params)
    block.to(torch.float64)
    assert sum(p.numel() for p in block.parameters()) == numel
    for n, t in [*block.named_parameters(), *block.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float64, n
    with torch.no_grad():
        y = block(torch.randn(eval_shapes[0], dtype=torch.float64))
    assert y.dtype == torch.float64 and torch.isfinite(y).all()


@pytest.mark.parametrize("channels", [8, 24])
@pytest.mark.parametrize("name", NAMES)
def test_no_dead_parameters(name: str, channels: int):
    """With zero-initialised gates perturbed away from 0, every parameter tensor gets a nonzero gradient."""
    torch.manual_seed(1)
    block = create_attn(name, channels).to(torch.float64).eval()
    if not list(block.parameters()):
        pytest.skip(f"{name} is parameter-free (its input gradient is checked in test_block_contract)")
    _randomise_bn(block)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(2, channels, 7, 6, dtype=torch.float64)
    y = block(x)
    (y * torch.randn_like(y)).sum().backward()
    for n, p in block.named_parameters():
        if (name, n) in ANALYTICALLY_ZERO_GRAD:
            continue
        assert p.grad.abs().max() > 1e-10, f"{name}: parameter {n} does not influence the output"


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_layout_gives_the_same_block(name: str):
    """Training runs NHWC (optim.channels_last): a block must not depend on the memory layout, forward or backward."""
    torch.manual_seed(2)
    block = create_attn(name, 16).to(torch.float64).eval()
    _randomise_bn(block)
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    g = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    outputs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        block.zero_grad()
        xi = x.clone().contiguous(memory_format=fmt).requires_grad_()
        y = block.to(memory_format=fmt)(xi)
        (y * g).sum().backward()
        outputs.append((y.detach(), xi.grad, [p.grad.clone() for p in block.parameters()]))
    (y0, gx0, gp0), (y1, gx1, gp1) = outputs
    assert torch.allclose(y0, y1, atol=1e-10) and torch.allclose(gx0, gx1, atol=1e-10)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(gp0, gp1))


# ----------------------------------------------------------------------------------------------- references
def test_se_reference():
    torch.manual_seed(0)
    block = create_attn("se", 32, reduction=4)
    x = torch.randn(2, 32, 7, 5)
    s = x.mean(dim=(2, 3))
    a = torch.sigmoid(torch.relu(s @ block.fc1.weight.T + block.fc1.bias) @ block.fc2.weight.T + block.fc2.bias)
    torch.testing.assert_close(block(x), x * a[:, :, None, None])


@pytest.mark.parametrize(("channels", "k"), [(8, 3), (16, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5)])
def test_eca_kernel_size(channels: int, k: int):
    # hand-computed: t = (log2 C + 1) / 2 -> nearest odd; e.g. 64: 3.5 -> 3, 256: 4.5 -> 5, 512: 5 -> 5
    assert eca_kernel_size(channels) == k
    assert create_attn("eca", channels).conv.kernel_size == (k,)


@pytest.mark.parametrize("channels", [16, 64, 256])
def test_eca_reference(channels: int):
    torch.manual_seed(0)
    block = create_attn("eca", channels)
    assert block.conv.bias is None
    k = block.kernel_size
    w = block.conv.weight.reshape(-1)
    x = torch.randn(2, channels, 5, 3)
    s = x.mean(dim=(2, 3))
    p = (k - 1) // 2
    sp = F.pad(s, (p, p))  # zero padding at both channel ends
    logits = sum(w[j] * sp[:, j : j + channels] for j in range(k))
    torch.testing.assert_close(block(x), x * torch.sigmoid(logits)[:, :, None, None])


def test_cbam_reference():
    torch.manual_seed(0)
    block = create_attn("cbam", 32, reduction=4)
    x = torch.randn(2, 32, 9, 6)

    def mlp(v):
        fc1, fc2 = block.channel.fc1, block.channel.fc2
        return torch.relu(v @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias

    mc = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
    x1 = x * mc[:, :, None, None]
    desc = torch.stack([x1.mean(dim=1), x1.amax(dim=1)], dim=1)
    assert block.spatial.weight.shape == (1, 2, 7, 7)
    ms = torch.sigmoid(_conv_direct(desc, block.spatial.weight, block.spatial.bias, pad=3))
    torch.testing.assert_close(block(x), x1 * ms, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", [(7, 11), (1, 1)])
def test_ca_reference(hw: tuple[int, int]):
    torch.manual_seed(0)
    block = create_attn("ca", 64, reduction=4).eval()
    _randomise_bn(block)
    x = torch.randn(2, 64, *hw)
    h = hw[0]
    y = torch.cat([x.mean(dim=3), x.mean(dim=2)], dim=2)  # (B, C, H + W)
    f = torch.einsum("mc,bcl->bml", block.conv1.weight[:, :, 0, 0], y) + block.conv1.bias[None, :, None]
    f = _bn_eval(f, block.bn)
    f = f * torch.clamp(f + 3, 0, 6) / 6  # h-swish
    w_h, w_w = block.conv_h.weight[:, :, 0, 0], block.conv_w.weight[:, :, 0, 0]
    a_h = torch.sigmoid(torch.einsum("cm,bml->bcl", w_h, f[:, :, :h]) + block.conv_h.bias[None, :, None])
    a_w = torch.sigmoid(torch.einsum("cm,bml->bcl", w_w, f[:, :, h:]) + block.conv_w.bias[None, :, None])
    ref = x * a_h[:, :, :, None] * a_w[:, :, None, :]
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-6)


def test_bam_reference():
    torch.manual_seed(0)
    block = create_attn("bam", 32, reduction=4).eval()
    _randomise_bn(block)
    x = torch.randn(2, 32, 9, 10)
    hid = torch.relu(x.mean(dim=(2, 3)) @ block.channel.fc1.weight.T + block.channel.fc1.bias)
    mc = _bn_eval(hid @ block.channel.fc2.weight.T + block.channel.fc2.bias, block.channel_bn)  # (B, C)
    s = x
    for idx, stage in enumerate(block.spatial_stages):
        conv, bn = stage[0], stage[1]
        if idx == 0:
            assert conv.kernel_size == (1, 1)
            s = _conv1x1(s, conv)
        else:
            assert conv.kernel_size == (3, 3) and conv.dilation == (4, 4)
            s = _conv_direct(s, conv.weight, conv.bias, pad=4, dil=4)
        s = torch.relu(_bn_eval(s, bn))
    assert len(block.spatial_stages) == 3  # 1x1 reduce + two dilated 3x3
    ms = _bn_eval(_conv1x1(s, block.spatial_out), block.spatial_bn)  # (B, 1, H, W)
    ref = x * (1 + torch.sigmoid(mc[:, :, None, None] + ms))
    with torch.no_grad():
        out = block(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # the known wrong variant x * sigmoid(Mc) * sigmoid(Ms) is distinguishable here
    wrong = x * torch.sigmoid(mc[:, :, None, None]) * torch.sigmoid(ms)
    assert not torch.allclose(out, wrong, atol=1e-3)


def test_scse_reference():
    torch.manual_seed(0)
    block = create_attn("scse", 16)
    x = torch.randn(2, 16, 5, 7)
    fc1, fc2 = block.channel.fc1, block.channel.fc2
    hid = torch.relu(x.mean(dim=(2, 3)) @ fc1.weight.T + fc1.bias)
    a_c = torch.sigmoid(hid @ fc2.weight.T + fc2.bias)
    a_s = torch.sigmoid(_conv1x1(x, block.spatial))
    torch.testing.assert_close(block(x), x * a_c[:, :, None, None] + x * a_s)
    block_max = create_attn("scse", 16, mode="max")
    block_max.load_state_dict(block.state_dict())
    torch.testing.assert_close(block_max(x), torch.maximum(x * a_c[:, :, None, None], x * a_s))


def test_simam_closed_form_energy():
    block = create_attn("simam", 8)
    assert len(list(block.parameters())) == 0
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 9, dtype=torch.float64)
    lam = 1e-4
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, correction=1)
    energy = 4 * (var + lam) / ((x - mu) ** 2 + 2 * var + 2 * lam)  # minimal energy e*_t (paper eq. 4)
    torch.testing.assert_close(block(x), x * torch.sigmoid(1 / energy))
    one = torch.randn(1, 8, 1, 1)
    torch.testing.assert_close(block(one), one * torch.sigmoid(torch.tensor(0.5)))


def test_da_starts_as_identity_and_matches_equations():
    torch.manual_seed(0)
    block = create_attn("da", 16)
    assert block.query.out_channels == 2 and create_attn("da", 8).query.out_channels == 1
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    block = block.to(torch.float64)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    # gradient still reaches the zero-initialised gammas
    block(x).pow(2).sum().backward()
    assert block.gamma_pos.grad.abs() > 0 and block.gamma_chan.grad.abs() > 0

    with torch.no_grad():
        block.gamma_pos.fill_(0.7)
        block.gamma_chan.fill_(-0.4)
    a = x.flatten(2)  # (B, C, N)
    q = _conv1x1(x, block.query).flatten(2)
    k = _conv1x1(x, block.key).flatten(2)
    v = _conv1x1(x, block.value).flatten(2)
    s = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # position i attends over positions j
    pam = torch.einsum("bij,bcj->bci", s, v)
    sc = torch.softmax(torch.einsum("bin,bjn->bij", a, a), dim=-1)
    cam = torch.einsum("bij,bjn->bin", sc, a)
    ref = x + (0.7 * pam + -0.4 * cam).view_as(x)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref)


def test_aft_reference_with_clamped_relative_bias():
    torch.manual_seed(0)
    block = create_attn("aft", 8, max_offset=2).to(torch.float64)
    with torch.no_grad():
        block.pos_bias.normal_()
        block.proj.weight.normal_(0, 0.3)
    assert block.pos_bias.shape == (5, 5)  # independent of the map size
    h, w = 3, 5
    x = torch.randn(2, 8, h, w, dtype=torch.float64)
    t = _layer_norm(x.flatten(2).transpose(1, 2), block.norm)  # (B, T, C)
    q, k, v = _linear(t, block.qkv).chunk(3, dim=-1)
    pos = [(i, j) for i in range(h) for j in range(w)]
    def clamp(d: int) -> int:
        return min(max(d, -2), 2) + 2

    table = block.pos_bias.detach()
    wb = torch.stack([torch.stack([table[clamp(pi - si), clamp(pj - sj)] for (si, sj) in pos]) for (pi, pj) in pos])
    weights = torch.exp(k[:, None, :, :] + wb[None, :, :, None])  # (B, T, T', d)
    y = torch.sigmoid(q) * (weights * v[:, None]).sum(2) / weights.sum(2)
    ref = x + _linear(y, block.proj).transpose(1, 2).reshape_as(x)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref)
        # same parameters, other map sizes
        assert block(torch.randn(1, 8, 9, 14, dtype=torch.float64)).shape == (1, 8, 9, 14)


@pytest.mark.parametrize(("name", "kw"), [("nl", {"pos_enc": False}), ("aft", {})])
def test_token_mixers_are_permutation_equivariant_without_positions(name: str, kw: dict):
    """Without positional information, attention over pixels commutes with any pixel permutation."""
    torch.manual_seed(0)
    block = create_attn(name, 16, **kw).to(torch.float64).eval()
    with torch.no_grad():
        block.proj.weight.normal_(0, 0.3)
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    perm = torch.randperm(20)
    xp = x.flatten(2)[:, :, perm].view_as(x)
    with torch.no_grad():
        torch.testing.assert_close(block(xp), block(x).flatten(2)[:, :, perm].view_as(x))
        # the depthwise positional encoding of "nl" breaks it, as it should
        if name == "nl":
            pe = create_attn("nl", 16).to(torch.float64).eval()
            pe.proj.weight.normal_(0, 0.3)
            assert not torch.allclose(pe(xp), pe(x).flatten(2)[:, :, perm].view_as(x))


@pytest.mark.parametrize("sr_ratio", [1, 2])
def test_nl_reference(sr_ratio: int):
    torch.manual_seed(0)
    c, h, w, heads = 16, 6, 7, 2
    block = create_attn("nl", c, heads=heads, reduction=1, sr_ratio=sr_ratio).to(torch.float64)
    with torch.no_grad():
        block.proj.weight.normal_(0, 0.3)
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    # conditional positional encoding: depthwise 3x3, zero padding
    xp = F.pad(x, (1, 1, 1, 1))
    dw = block.pos.weight[:, 0]  # (C, 3, 3)
    x1 = x + block.pos.bias.view(1, -1, 1, 1) + sum(
        dw[:, i, j].view(1, -1, 1, 1) * xp[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)
    )
    t = _layer_norm(x1.flatten(2).transpose(1, 2), block.norm)  # (B, N, C)
    if sr_ratio > 1:
        pooled = F.adaptive_avg_pool2d(x1, (math.ceil(h / sr_ratio), math.ceil(w / sr_ratio)))
        src = _layer_norm(_conv1x1(pooled, block.sr).flatten(2).transpose(1, 2), block.sr_norm)
    else:
        src = t
    q = _linear(t, block.q)
    k, v = _linear(src, block.kv).chunk(2, dim=-1)
    out = _heads_attention(q, k, v, heads)
    ref = x1 + _linear(out, block.proj).transpose(1, 2).reshape_as(x)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref)


def test_nl_heads_and_spatial_reduction():
    assert create_attn("nl", 512).heads == 8  # inner 256, head_dim 32
    assert create_attn("nl", 8).heads == 1
    assert create_attn("muse", 24).heads == 1
    with pytest.raises(ValueError):
        create_attn("nl", 64, heads=3)  # inner 32
    block = create_attn("nl", 32, sr_ratio=4).eval()
    with torch.no_grad():
        for shape in [(1, 32, 9, 14), (1, 32, 3, 5), (1, 32, 1, 1)]:
            y = block(torch.randn(shape))
            assert y.shape == shape and torch.isfinite(y).all()


def test_group_count_choices():
    assert create_attn("sge", 24).groups == 8
    assert create_attn("sge", 12).groups == 6
    assert create_attn("sge", 10).groups == 5
    assert create_attn("shuffle", 24).groups == 6  # 24 % 16 != 0 -> largest g with 24 % 2g == 0
    assert create_attn("shuffle", 8).groups == 4
    assert create_attn("shuffle", 512).groups == 8
    with pytest.raises(ValueError):
        create_attn("shuffle", 9)
    assert create_attn("psa", 8).groups == [1, 2, 2, 2]
    assert create_attn("psa", 64).groups == [1, 4, 8, 16]
    assert [c.kernel_size for c in create_attn("psa", 64).convs] == [(3, 3), (5, 5), (7, 7), (9, 9)]
    with pytest.raises(ValueError):
        create_attn("psa", 10)
    sk = create_attn("sk", 64)
    assert sk.fc.out_features == 32  # d = max(C / 16, L = 32)
    assert [b[0].dilation for b in sk.branches] == [(1, 1), (2, 2)]


def test_shuffle_reference():
    """Channel/spatial halves per group, then a 2-group channel shuffle (perturbed weights so gates vary)."""
    torch.manual_seed(0)
    block = create_attn("shuffle", 16, groups=2).to(torch.float64)
    with torch.no_grad():
        for p in (block.cweight, block.sweight):
            p.normal_()
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    outs = []
    for g in range(2):
        xc, xs = x[:, g * 8 : g * 8 + 4], x[:, g * 8 + 4 : g * 8 + 8]
        yc = xc * torch.sigmoid(block.cweight * xc.mean(dim=(2, 3), keepdim=True) + block.cbias)
        mu = xs.mean(dim=(2, 3), keepdim=True)
        var = xs.var(dim=(2, 3), keepdim=True, correction=0)
        gn = (xs - mu) / torch.sqrt(var + block.gn.eps)
        gn = gn * block.gn.weight.view(1, -1, 1, 1) + block.gn.bias.view(1, -1, 1, 1)
        ys = xs * torch.sigmoid(block.sweight * gn + block.sbias)
        outs += [yc, ys]
    cat = torch.cat(outs, dim=1)  # (B, 16, H, W)
    shuffled = torch.stack([cat[:, :8], cat[:, 8:]], dim=2).flatten(1, 2)  # channel i of half s -> 2 i + s
    with torch.no_grad():
        torch.testing.assert_close(block(x), shuffled)


def test_muse_reference():
    torch.manual_seed(0)
    block = create_attn("muse", 16, heads=2).to(torch.float64)
    with torch.no_grad():
        block.alpha.normal_()
        block.proj.weight.normal_(0, 0.3)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    t = _layer_norm(x.flatten(2).transpose(1, 2), block.norm)
    q, k, v = _linear(t, block.qkv).chunk(3, dim=-1)
    v_map = v.transpose(1, 2).reshape(2, 16, 5, 6)
    alpha = torch.softmax(block.alpha, dim=0)
    assert [c.kernel_size for c in block.convs] == [(1, 1), (3, 3), (5, 5)]
    conv = sum(alpha[i] * _depthwise_direct(v_map, c) for i, c in enumerate(block.convs))
    out = _heads_attention(q, k, v, 2) + conv.flatten(2).transpose(1, 2)
    ref = x + _linear(out, block.proj).transpose(1, 2).reshape_as(x)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref)


def test_psa_reference():
    torch.manual_seed(0)
    block = create_attn("psa", 32, reduction=2, min_hidden=2)
    x = torch.randn(2, 32, 7, 6)
    feats = [F.conv2d(x, c.weight, None, padding=c.kernel_size[0] // 2, groups=c.groups) for c in block.convs]
    z = torch.stack(
        [
            torch.sigmoid(
                torch.relu(f.mean(dim=(2, 3)) @ block.se.fc1.weight.T + block.se.fc1.bias) @ block.se.fc2.weight.T
                + block.se.fc2.bias
            )
            for f in feats
        ]
    )  # (S, B, C/S)
    att = torch.exp(z) / torch.exp(z).sum(dim=0, keepdim=True)  # softmax across the scales
    ref = torch.cat([f * a[:, :, None, None] for f, a in zip(feats, att)], dim=1)
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-6)


def test_sk_reference():
    torch.manual_seed(0)
    block = create_attn("sk", 32, min_hidden=8).eval()
    _randomise_bn(block)
    x = torch.randn(2, 32, 7, 9)
    feats = []
    for br, dil in zip(block.branches, (1, 2)):
        conv, bn = br[0], br[1]
        y = F.conv2d(x, conv.weight, None, padding=dil, dilation=dil, groups=conv.groups)
        feats.append(torch.relu(_bn_eval(y, bn)))
    s = (feats[0] + feats[1]).mean(dim=(2, 3))
    z = torch.relu(_bn_eval(s @ block.fc.weight.T, block.fc_bn))
    logits = torch.stack([z @ sel.weight.T for sel in block.select])  # (M, B, C)
    a = torch.exp(logits) / torch.exp(logits).sum(dim=0, keepdim=True)
    ref = a[0, :, :, None, None] * feats[0] + a[1, :, :, None, None] * feats[1]
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-6)


def test_a2_reference():
    torch.manual_seed(0)
    block = create_attn("a2", 32)
    x = torch.randn(2, 32, 5, 7)
    a = _conv1x1(x, block.conv_a).flatten(2)  # (B, m, N)
    b = torch.softmax(_conv1x1(x, block.conv_b).flatten(2), dim=2)  # each map sums to 1 over positions
    v = torch.softmax(_conv1x1(x, block.conv_v).flatten(2), dim=1)  # each position's vector sums to 1
    g = torch.einsum("bmi,bni->bmn", a, b)  # gather
    z = torch.einsum("bmn,bni->bmi", g, v).reshape(2, -1, 5, 7)  # distribute
    torch.testing.assert_close(block(x), x + _conv1x1(z, block.conv_out), rtol=1e-5, atol=1e-5)


def test_sge_reference():
    torch.manual_seed(0)
    block = create_attn("sge", 16, groups=4).to(torch.float64)
    with torch.no_grad():
        block.weight.normal_()
        block.bias.normal_()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    outs = []
    for g in range(4):
        xg = x[:, 4 * g : 4 * g + 4]
        c = (xg * xg.mean(dim=(2, 3), keepdim=True)).sum(dim=1)  # (B, H, W)
        var = c.var(dim=(1, 2), keepdim=True, correction=0)
        c_hat = (c - c.mean(dim=(1, 2), keepdim=True)) / torch.sqrt(var + 1e-5)
        outs.append(xg * torch.sigmoid(block.weight[0, g] * c_hat + block.bias[0, g])[:, None])
    torch.testing.assert_close(block(x), torch.cat(outs, dim=1))


# ----------------------------------------------------------------------------------------------- gate
@pytest.mark.parametrize("gating_hw", [(5, 7), (9, 14)])
def test_attention_gate_reference(gating_hw: tuple[int, int]):
    torch.manual_seed(0)
    gate = create_gate("gate", 16, 32)
    assert gate.theta_x.out_channels == 8 and gate.theta_x.bias is None and gate.theta_x.stride == (1, 1)
    skip = torch.randn(2, 16, 9, 14)
    gating = torch.randn(2, 32, *gating_hw)
    g_up = F.interpolate(gating, size=(9, 14), mode="bilinear", align_corners=False)  # resize, then W_g
    q = torch.relu(_conv1x1(skip, gate.theta_x) + _conv1x1(g_up, gate.phi_g))
    alpha = torch.sigmoid(_conv1x1(q, gate.psi))  # (B, 1, H, W)
    out = gate(skip, gating)
    assert out.shape == skip.shape
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(out, skip * alpha, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gate.attention_map(skip, gating), alpha, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gate.parameters())


def test_attention_gate_small_channels_and_batch1():
    gate = create_gate("gate", 1, 4).eval()
    assert gate.theta_x.out_channels == 1
    skip, gating = torch.randn(1, 1, 3, 5), torch.randn(1, 4, 1, 1)
    out = gate(skip, gating)
    assert out.shape == skip.shape and torch.isfinite(out).all()
    assert (out.abs() <= skip.abs()).all()
