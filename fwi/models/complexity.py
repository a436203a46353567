"""Model complexity: trainable parameters and forward FLOPs (library code; `fwi.models.summary` is its CLI).

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` for one forward pass (a multiply-add counts 2);
only the matrix-multiply-like ops it knows (conv, linear, matmul, attention) are counted, not element-wise ops,
norms or pooling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = ["count_params", "count_flops"]


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel that
# F.scaled_dot_product_attention dispatches to on CPU; without this the attention matmuls would count 0.
_EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of ``model(example)`` (forward only, eval mode, no grad), as counted by FlopCounterMode.

    A multiply-add counts 2 (a k x k conv: 2*Cin*Cout*k*k*H*W); element-wise ops are not counted.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
