"""Parameters and FLOPs of configured models.

    python -m fwi.models.summary --attn ca --encoder-attn --skip-attn --grid 70 70 --shots 5 --nt 1000 --nrec 70
    python -m fwi.models.summary --all-attn --grid 30 40 --nt 64 --nrec 20

FLOPs are counted by `fwi.models.complexity` (FlopCounterMode) for one forward pass of one sample (a multiply-add
counts 2); only the matrix-multiply-like ops it knows (conv, linear, matmul, attention) are counted, not element-wise
ops, norms or pooling.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from fwi.cli import ArgumentParser, friendly_errors
from fwi.models.attention.registry import list_attn, list_gates
from fwi.models.build import build_model
from fwi.models.complexity import count_flops, count_params
from fwi.models.config import PLACE_FLAGS, ModelConfig


def describe(cfg: ModelConfig) -> str:
    """Short label of a configuration, e.g. 'unet ca@encoder+skip', 'unet mix-decoder', 'inversionnet'."""
    if cfg.arch != "unet":
        return cfg.arch
    parts = ["unet"]
    if cfg.attn != "none":
        parts.append(f"{cfg.attn}@" + "+".join(p.removesuffix("_attn") for p in cfg.places()))
    if cfg.skip_gate != "none":
        parts.append(f"{cfg.skip_gate}@skips")
    if cfg.decoder != "unet":
        parts.append(f"{cfg.decoder}-decoder")
    return " ".join(parts)


def model_summary(cfg: ModelConfig, data_shape: tuple[int, int, int], grid: tuple[int, int]) -> dict:
    """{'model', 'params', 'flops'} of the model built from ``cfg`` (FLOPs per sample)."""
    model = build_model(cfg, data_shape, grid)
    example = torch.zeros(1, *data_shape)
    return {"model": describe(cfg), "params": count_params(model), "flops": count_flops(model, example)}


def all_attn_configs(base: ModelConfig) -> list[ModelConfig]:
    """Plain U-Net, every registered block in encoder+skip, every gate on the skips, the mix decoder, InversionNet."""
    plain = dataclasses.replace(base, arch="unet", attn="none", skip_gate="none", decoder="unet",
                                **{f: False for f in PLACE_FLAGS})
    cfgs = [plain]
    cfgs += [dataclasses.replace(plain, attn=a, encoder_attn=True, skip_attn=True) for a in list_attn() if a != "none"]
    cfgs += [dataclasses.replace(plain, skip_gate=g) for g in list_gates()]
    cfgs.append(dataclasses.replace(plain, decoder="mix"))
    cfgs.append(dataclasses.replace(plain, arch="inversionnet"))
    return cfgs


def format_table(rows: list[dict], ref_flops: int | None = None) -> str:
    lines = [f"{'model':<34} {'params':>12} {'GFLOPs':>9} {'x plain':>8}"]
    for r in rows:
        ratio = f"{r['flops'] / ref_flops:.3f}" if ref_flops else "-"
        lines.append(f"{r['model']:<34} {r['params']:>12,} {r['flops'] / 1e9:>9.3f} {ratio:>8}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m fwi.models.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", "--model", dest="arch", default="unet", help="network family: unet | inversionnet")
    p.add_argument("--attn", default="none", help=f"attention block: {', '.join(list_attn())}")
    for field, flag in PLACE_FLAGS.items():
        p.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, default=False,
                       help=f"insert --attn at the {field.removesuffix('_attn')} place(s)")
    p.add_argument("--skip-gate", default="none", help=f"gate on the skips: none, {', '.join(list_gates())}")
    p.add_argument("--decoder", default="unet", help="unet | mix")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--norm", default="batch")
    p.add_argument("--act", default="relu")
    p.add_argument("--attn-reduction", type=int, default=None)
    p.add_argument("--mix-dim", type=int, default=64)
    p.add_argument("--mix-heads", type=int, default=4)
    p.add_argument("--mix-mlp-ratio", type=float, default=4.0)
    p.add_argument("--downsample", default="maxpool", help="maxpool | conv")
    p.add_argument("--grid", type=int, nargs=2, default=[70, 70], metavar=("NZ", "NX"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--nt", type=int, default=1000)
    p.add_argument("--nrec", type=int, default=70)
    p.add_argument("--all-attn", action="store_true",
                   help="one row per registered block (in encoder+skip), gate, mix decoder and InversionNet")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in vars(args).items() if k in fields})


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_shape, grid = (args.shots, args.nt, args.nrec), tuple(args.grid)
    cfg = config_from_args(args)
    if args.all_attn:  # the rows choose block and places themselves
        cfg = dataclasses.replace(cfg, attn="none", **{f: False for f in PLACE_FLAGS})
    cfg.validate()
    cfgs = all_attn_configs(cfg) if args.all_attn else [cfg]
    rows = [model_summary(c, data_shape, grid) for c in cfgs]
    print(f"gathers (S, T, R) = {data_shape}, grid = {grid}, FLOPs per sample (forward)")
    print(format_table(rows, rows[0]["flops"] if args.all_attn else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
