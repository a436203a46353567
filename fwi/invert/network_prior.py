"""Network as a prior: optimise the trained network's weights for one survey with the physics loss.

Reparameterised FWI / test-time fine-tuning (Wu & McMechan, 2019, "Parametric convolutional neural network-domain
full-waveform inversion"; Zhu et al., 2022, "Integrating deep neural networks with full-waveform inversion";
the physics-loss of UPFWI, Jin et al., 2022, used at test time): the velocity is the network's output for the
observed gathers, v = N_w(d_obs), and FWI updates w instead of the cells. Each model of the batch gets its own copy
of the weights (the fine-tuning is per survey). The network stays in eval mode (batch-norm statistics frozen), so
only the weights move. The update inherits the network's inductive bias (blocky salt, layered sediments) that a
cell-wise update lacks.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from fwi.data.transforms import Normalizer
from fwi.invert.params import Parameterisation


class NetworkPrior(Parameterisation):
    name = "network"

    def __init__(self, model: nn.Module, inputs: torch.Tensor, normalizer: Normalizer, vmin: float, vmax: float,
                 **_: Any) -> None:
        """model: the trained network; inputs: its normalised gathers (B, S, T', R) for the B surveys."""
        super().__init__(vmin, vmax)
        self.inputs, self.normalizer = inputs, normalizer
        self.nets = nn.ModuleList(copy.deepcopy(model).eval() for _ in range(inputs.shape[0]))
        for p in self.nets.parameters():
            p.requires_grad_(True)
        self._salt: torch.Tensor | None = None

    def groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(self.nets.parameters()), "lr": lr}]

    def velocity(self) -> torch.Tensor:
        outs = [net(self.inputs[i:i + 1].to(torch.float32)) for i, net in enumerate(self.nets)]
        self._salt = torch.cat([o["salt_logits"][:, 0] for o in outs]).detach()
        v = self.normalizer.velocity_inverse(torch.cat([o["velocity"][:, 0] for o in outs]))
        return v.clamp(self.vmin, self.vmax)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{k}": v for i, net in enumerate(self.nets) for k, v in net.state_dict().items()}

    def merge(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
              take_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-model mix of two ``state_dict`` s (or snapshots): the weights of network i (keys ``"i.*"``) from
        ``b`` where ``take_b[i]``."""
        return {k: (b if bool(take_b[int(k.split(".", 1)[0])]) else a)[k] for k in a}

    def salt_probability(self) -> torch.Tensor | None:
        if self._salt is None:
            with torch.no_grad():
                self.velocity()
        return torch.sigmoid(self._salt)
