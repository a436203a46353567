"""Checkpoint compatibility: a state dict with the keys and shapes recorded in ``state_dict_keys.json`` loads into
every configuration with ``load_state_dict(strict=True)`` (keys of layers renamed since are renamed at load, by
`fwi.models.legacy_keys`), so a checkpoint written before a refactor still loads, and holds the same weights.

The fixture covers the plain U-Net, every attention block in every place (encoder, skip, bottleneck, decoder; and
after each stage of the mix decoder), every skip gate (with both decoders), the mix decoder, InversionNet and a few
blocks with structure-changing options. It was recorded with the code as it was before the refactor of issue 13; the
keys that issue 28 renamed (CBAM / scSE / BAM / PSA channel layers under ``channel.`` / ``se.``, the U-Net decoder's
levels under ``decoder.blocks.<j>.``) stay recorded under their old names: they are the names old checkpoints hold.

``reference_outputs.json`` holds, per case, output fingerprints written by the code before the refactor of issue 28
(commit cd03a34): of the seed-0 network (same seeded weights), and of the network holding a state dict with exactly
the recorded keys whose values are drawn from each key's name (same weights under the old names). A renamed layer
whose old key is not remapped at load fails to load; one remapped to the wrong layer changes the outputs.

    python tests/models/test_state_dict_keys.py          # add entries for new cases (never rewrites old ones)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

from fwi.models.attention.registry import list_attn, list_gates
from fwi.models.build import build_model
from fwi.models.config import ModelConfig
from fwi.models.legacy_keys import optimizer_state_for
from fwi.models.unet import AttentionUNet

FIXTURE = Path(__file__).with_name("state_dict_keys.json")
REFERENCE = Path(__file__).with_name("reference_outputs.json")
DATA, GRID = (2, 40, 11), (12, 16)  # gathers (S, T, R) and output grid of every case
SMALL = {"depth": 2, "base_channels": 8}
MIX = {"decoder": "mix", "mix_dim": 16, "mix_heads": 2}
PLACES = ["encoder_attn", "skip_attn", "bottleneck_attn", "decoder_attn"]
# Block options that change a block's structure (hence its keys), reachable through AttentionUNet(attn_kwargs=...).
EXTRA_KWARGS = {
    "nl-sr2": ("nl", {"sr_ratio": 2}),
    "nl-nopos": ("nl", {"pos_enc": False}),
    "sk-3dil": ("sk", {"dilations": (1, 2, 3)}),
    "psa-2scales": ("psa", {"kernels": (3, 5), "conv_groups": (1, 4)}),
    "eca-k5": ("eca", {"kernel_size": 5}),
    "cbam-k3": ("cbam", {"kernel_size": 3}),
}


def cases() -> dict[str, dict]:
    """Case name -> {"model": non-default ModelConfig fields, optionally "attn_kwargs"}."""
    out: dict[str, dict] = {"unet": {"model": dict(SMALL)}, "mix": {"model": {**SMALL, **MIX}},
                            "inversionnet": {"model": {"name": "inversionnet"}}}
    for attn in list_attn()[1:]:
        for place in PLACES:
            out[f"unet-{attn}-{place}"] = {"model": {**SMALL, "attn": attn, place: True}}
        out[f"mix-{attn}-decoder_attn"] = {"model": {**SMALL, **MIX, "attn": attn, "decoder_attn": True}}
    out["unet-se-skip_attn-reduction4"] = {"model": {**SMALL, "attn": "se", "skip_attn": True, "attn_reduction": 4}}
    for gate in list_gates():
        out[f"unet-gate:{gate}"] = {"model": {**SMALL, "skip_gate": gate}}
        out[f"mix-gate:{gate}"] = {"model": {**SMALL, **MIX, "skip_gate": gate}}
    for label, (attn, kwargs) in EXTRA_KWARGS.items():
        out[f"unet-{label}-encoder_attn+bottleneck_attn"] = {
            "model": {**SMALL, "attn": attn, "encoder_attn": True, "bottleneck_attn": True},
            "attn_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}
    return out


def model_config(fields: dict) -> ModelConfig:
    """ModelConfig from recorded fields; the family was recorded as ``name`` (also accepted as ``arch``)."""
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    fields = dict(fields)
    if "name" in fields and "name" not in names and "arch" in names:
        fields["arch"] = fields.pop("name")
    return ModelConfig(**fields)


def build(case: dict) -> nn.Module:
    """The network of one case (seeded, so repeated builds are identical)."""
    cfg = model_config(case["model"])
    torch.manual_seed(0)
    if "attn_kwargs" not in case:
        return build_model(cfg, DATA, GRID)
    cfg.validate()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in case["attn_kwargs"].items()}
    return AttentionUNet(*DATA, grid=GRID, depth=cfg.depth, base_channels=cfg.base_channels, norm=cfg.norm,
                         act=cfg.act, attn=cfg.attn, attn_kwargs=kwargs, decoder=cfg.decoder,
                         **{p: getattr(cfg, p) for p in PLACES})


def keys_and_shapes(model: nn.Module) -> list[list]:
    """[[key, [shape...]], ...] in state-dict order."""
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def _load_fixture() -> dict:
    return json.loads(FIXTURE.read_text())


RECORDED = _load_fixture() if FIXTURE.exists() else {}


def test_fixture_covers_every_registered_block_and_gate():
    names = set(RECORDED)
    assert {"unet", "mix", "inversionnet"} <= names
    for attn in list_attn()[1:]:
        for place in PLACES:
            assert f"unet-{attn}-{place}" in names, f"{attn}@{place}: run python {__file__} to add it"
    for gate in list_gates():
        assert f"unet-gate:{gate}" in names


def recorded_keys(name: str) -> list[list]:
    """[[key, shape], ...] of case ``name`` as recorded: its base network's keys, then its own."""
    entry = RECORDED[name]
    return (RECORDED[entry["base"]]["keys"] if "base" in entry else []) + entry["keys"]


def named_state(keys: list[list]) -> dict[str, torch.Tensor]:
    """A state dict with exactly ``keys``, each value drawn from a generator seeded by the key's name."""
    out = {}
    for key, shape in keys:
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = 0.3 * torch.randn(shape, generator=g)
    return out


def fingerprint(model: nn.Module) -> list[float]:
    """Eval-mode outputs on a fixed batch: (sum, sum of squares, a fixed random projection) of both heads."""
    x = torch.randn(2, *DATA, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        out = model(x)
    stats = []
    for head in ("velocity", "salt_logits"):
        y = out[head].double().flatten()
        w = torch.randn(y.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        stats += [float(y.sum()), float((y * y).sum()), float((w * y).sum())]
    return stats


def outputs(name: str) -> dict[str, list[float]]:
    """{"seeded": fingerprint of the seed-0 network, "named": fingerprint after loading `named_state`}."""
    model = build(RECORDED[name])
    seeded = fingerprint(model)
    model.load_state_dict(named_state(recorded_keys(name)), strict=True)
    return {"seeded": seeded, "named": fingerprint(model)}


REFERENCE_OUTPUTS = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_keys_load_strictly_and_give_the_recorded_outputs(name):
    # A state dict with exactly the recorded keys and shapes loads with strict=True (old names remapped at load) ...
    got = outputs(name)
    # ... and holds the same weights: the network's outputs are those the code gave before the refactor, both from
    # the seed-0 weights (same initialisation order) and from the weights loaded under the recorded names.
    ref = REFERENCE_OUTPUTS[name]
    for kind in ("seeded", "named"):
        assert got[kind] == pytest.approx(ref[kind], rel=1e-4, abs=1e-5), kind


def test_every_recorded_case_has_reference_outputs():
    assert set(REFERENCE_OUTPUTS) == set(RECORDED)


@pytest.mark.parametrize("name", ["unet-gate:gate", "unet-cbam-decoder_attn", "unet-psa-skip_attn"])
def test_an_optimizer_state_saved_in_the_old_parameter_order_is_reordered(name):
    """The decoder's levels moved into `DecoderBlock`s, so ``parameters()`` runs in another order than when old
    checkpoints were written, and an optimizer keys its state by position: `optimizer_state_for` reorders it."""
    keys = recorded_keys(name)
    old_state = named_state(keys)
    model = build(RECORDED[name])
    model.load_state_dict(old_state, strict=True)
    # Which old key each parameter came from, found by value (each value is drawn from its key's name), not by name.
    old_name = {n: next(k for k, v in old_state.items() if v.shape == p.shape and torch.equal(v, p))
                for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model.train()(torch.randn(2, *DATA, generator=torch.Generator().manual_seed(3)))
    (out["velocity"].sum() + out["salt_logits"].square().sum()).backward()
    optimizer.step()
    today = optimizer.state_dict()
    old_order = [k for k, _ in keys if k in set(old_name.values())]  # parameters in the order they were saved
    assert old_order != [old_name[n] for n, _ in model.named_parameters()]
    saved = {**today, "state": {old_order.index(old_name[n]): today["state"][i]
                                for i, (n, _) in enumerate(model.named_parameters())}}
    reordered = optimizer_state_for(model, [k for k, _ in keys], saved)
    assert set(reordered["state"]) == set(today["state"])
    for i, entry in today["state"].items():
        for field, value in entry.items():
            assert torch.equal(reordered["state"][i][field], value), (i, field)
    assert optimizer_state_for(model, list(model.state_dict()), today) is today  # today's order: unchanged


def dumps(recorded: dict) -> str:
    """JSON with one [key, shape] pair per line (readable diffs)."""
    lines = ["{"]
    for i, (name, entry) in enumerate(recorded.items()):
        head = {k: v for k, v in entry.items() if k != "keys"}
        pairs = ",\n".join(f"   {json.dumps(e)}" for e in entry["keys"])
        body = json.dumps(head)[1:-1]
        comma = "," if i < len(recorded) - 1 else ""
        lines.append(f' {json.dumps(name)}: {{{body}, "keys": [\n{pairs}\n  ]}}{comma}')
    return "\n".join(lines + ["}"]) + "\n"


def main() -> int:
    recorded = RECORDED
    added = []
    todo = cases()
    for name in sorted(todo):
        if name not in recorded:  # a new case records all its keys (the old ones name a base with the old keys)
            recorded[name] = {**todo[name], "keys": keys_and_shapes(build(todo[name]))}
            added.append(name)
    FIXTURE.write_text(dumps(recorded))
    print(f"{FIXTURE}: {len(recorded)} cases, {len(added)} added")
    reference = dict(REFERENCE_OUTPUTS)
    for name in sorted(recorded):
        reference.setdefault(name, outputs(name))
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(reference.items()))
    REFERENCE.write_text("{\n" + body + "\n}\n")
    print(f"{REFERENCE}: {len(reference)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
