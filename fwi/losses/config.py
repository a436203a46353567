"""`LossConfig`: weights and options of the training loss (`fwi.losses.FWILoss`). Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

_CHOICES = {
    "velocity_loss": ("l1", "l2"),
    "physics_norm": ("l1", "l2"),
    "physics_storage": ("device", "cpu", "disk"),
}


@dataclass
class LossConfig:
    """Weights and options of `FWILoss`. Flat on purpose: the training config exposes each field as a CLI flag."""

    velocity_loss: Literal["l1", "l2"] = "l1"  # supervised, on the normalised velocity
    supervised_weight: float = 1.0  # 0 -> fully unsupervised (UPFWI, Jin et al., ICLR 2022)
    ssim_weight: float = 0.0  # adds weight * (1 - SSIM) on velocity mapped to [0, 1]
    salt_weight: float = 0.5  # salt mask: BCE + Dice on salt_logits
    physics_weight: float = 0.0  # physics-informed data misfit
    physics_norm: Literal["l1", "l2"] = "l2"
    physics_shots: int = 0  # shots modelled per sample (0 = all); random subset per sample
    physics_samples: int = 0  # samples of each batch re-modelled (0 = all); random subset per batch
    physics_start_epoch: int = 0  # physics term off before this epoch
    physics_ramp_epochs: int = 0  # then linear ramp of its weight over this many epochs
    physics_storage: Literal["device", "cpu", "disk"] = "device"
    physics_compression: bool = False
    physics_gradient_sampling: int = 1  # wavefield every k-th step for the gradient (0: the lossless k of the survey)
    physics_checkpoint_segments: int = 0  # 0 = off
    physics_depth_power: float = 0.0  # > 0: physics gradient w.r.t. the predicted velocity x (z / z_max)^p

    def validate(self) -> None:
        """Raise ValueError naming the offending field and its valid values."""
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"loss.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        weights = ("supervised_weight", "ssim_weight", "salt_weight", "physics_weight")
        for name in weights:
            value = float(getattr(self, name))
            if not (value >= 0 and value != float("inf")):
                raise ValueError(f"loss.{name} must be a finite number >= 0, got {value}")
        if all(float(getattr(self, name)) == 0 for name in weights):
            raise ValueError(f"at least one of loss.{', loss.'.join(weights)} must be > 0 (nothing to train on)")
        for name, low in (("physics_shots", 0), ("physics_samples", 0), ("physics_start_epoch", 0),
                          ("physics_ramp_epochs", 0), ("physics_gradient_sampling", 0),
                          ("physics_checkpoint_segments", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"loss.{name} must be an integer >= {low}, got {value!r}")
        power = self.physics_depth_power
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 <= power < float("inf"):
            raise ValueError(f"loss.physics_depth_power must be a finite number >= 0, got {power!r}")
        if not isinstance(self.physics_compression, bool):
            raise ValueError(f"loss.physics_compression must be true or false, got {self.physics_compression!r}")
        others = sum(float(getattr(self, n)) for n in ("supervised_weight", "ssim_weight", "salt_weight"))
        if others == 0 and self.physics_start_epoch > 0:
            raise ValueError("with loss.physics_weight as the only non-zero weight, loss.physics_start_epoch must be 0 "
                             f"(got {self.physics_start_epoch}): there would be nothing to train on before it")
