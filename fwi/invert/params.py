"""Velocity parameterisations: what the optimiser updates, and how it becomes a velocity (B, nz, nx) in m/s.

Registry ``PARAMETERISATIONS`` (name -> class). Every parameterisation stores velocities in km/s (so that Adam's
step size and L-BFGS's first step are of order one), clamps its velocity into [vmin, vmax] (gradient-free outside)
and projects its variables back into the bounds after every optimiser step.

* ``velocity``: one free value per cell (classic FWI).
* ``salt_pin``: salt guidance by pinning. Cells where the network's salt probability exceeds ``confidence`` are
  fixed to one salt velocity per model (a learnable scalar, initialised to ``salt_velocity``); only the sediment
  cells are free. The salt head supplies the prior FWI cannot find on its own: the high-contrast body whose
  top reflection the data fits, but whose interior a smooth update cannot reach.
* ``salt_soft``: salt and sediments parameterised separately, v = p vs + (1 - p) v_sed with p = sigmoid(phi): phi
  (initialised from the network's salt logits) moves the salt boundary, v_sed the sediments, vs the salt velocity
  (cf. level-set / shape-optimisation salt FWI, Lewis et al., 2012; Kadu, van Leeuwen & Mulder, 2017).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from fwi.registry import Registry

KM = 1000.0
#: Network salt logits are clipped to +-LOGIT_CLIP before they initialise phi, so the sigmoid keeps a gradient.
LOGIT_CLIP = 4.0


class Parameterisation:
    """Base class. ``velocity()`` -> (B, nz, nx) m/s, differentiable in the tensors of ``groups()``."""

    name = "base"

    def __init__(self, vmin: float, vmax: float) -> None:
        self.vmin, self.vmax = float(vmin), float(vmax)

    def groups(self, lr: float) -> list[dict[str, Any]]:
        raise NotImplementedError

    def velocity(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def project(self) -> None:
        """Put the variables back into their bounds after an optimiser step."""

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The variables, copied to the CPU (to be saved)."""
        return {k: v.detach().cpu().clone() for k, v in self.tensors().items()}

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The variables, copied where they live (no host copy on CUDA): ``keep_best``'s per-iteration copy."""
        return {k: v.detach().clone() for k, v in self.tensors().items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in self.tensors().items():
            v.copy_(state[k].to(v))

    def merge(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
              take_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Two ``state_dict`` s (or snapshots) mixed per model: model i's variables from ``b`` where ``take_b``
        (B,) bool, else from ``a``, on ``b``'s device. Here every tensor is per model along its first dimension."""
        return {k: torch.where(take_b.to(b[k].device).view(-1, *[1] * (a[k].dim() - 1)), b[k], a[k].to(b[k].device))
                for k in a}

    def salt_probability(self) -> torch.Tensor | None:
        """(B, nz, nx) salt probability the parameterisation holds (None when it has no salt variable)."""
        return None

    def _clamp(self, v_kms: torch.Tensor) -> torch.Tensor:
        return (v_kms * KM).clamp(self.vmin, self.vmax)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().float().requires_grad_(True)


class VelocityCells(Parameterisation):
    name = "velocity"

    def __init__(self, start: torch.Tensor, vmin: float, vmax: float, **_: Any) -> None:
        super().__init__(vmin, vmax)
        self.x = _leaf(start.clamp(vmin, vmax) / KM)

    def groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [self.x], "lr": lr}]

    def velocity(self) -> torch.Tensor:
        return self._clamp(self.x)

    @torch.no_grad()
    def project(self) -> None:
        self.x.clamp_(self.vmin / KM, self.vmax / KM)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x}


def sediment_fill(start: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """Start velocity (B, nz, nx) with the cells of boolean ``salt`` replaced by the mean sediment velocity of their
    row (the model's overall sediment mean for a row that is all salt)."""
    sed = (~salt).to(start.dtype)
    row_n = sed.sum(-1, keepdim=True)
    overall = (start * sed).flatten(1).sum(1) / sed.flatten(1).sum(1).clamp_min(1)
    row_mean = torch.where(row_n > 0, (start * sed).sum(-1, keepdim=True) / row_n.clamp_min(1),
                           overall.view(-1, 1, 1).expand_as(row_n))
    return torch.where(salt, row_mean.expand_as(start), start)


class SaltPinned(Parameterisation):
    name = "salt_pin"

    def __init__(self, start: torch.Tensor, vmin: float, vmax: float, *, salt_prob: torch.Tensor,
                 confidence: float = 0.9, salt_velocity: float = 4500.0, learn_salt_velocity: bool = True,
                 **_: Any) -> None:
        super().__init__(vmin, vmax)
        self.mask = salt_prob > confidence  # (B, nz, nx) bool, fixed
        self.x = _leaf(sediment_fill(start.clamp(vmin, vmax), self.mask) / KM)
        self.vs = _leaf(torch.full((start.shape[0],), salt_velocity / KM, device=start.device))
        self.learn_vs = learn_salt_velocity

    def groups(self, lr: float) -> list[dict[str, Any]]:
        groups = [{"params": [self.x], "lr": lr}]
        if self.learn_vs:
            groups.append({"params": [self.vs], "lr": lr})
        return groups

    def velocity(self) -> torch.Tensor:
        return self._clamp(torch.where(self.mask, self.vs.view(-1, 1, 1).expand_as(self.x), self.x))

    @torch.no_grad()
    def project(self) -> None:
        self.x.clamp_(self.vmin / KM, self.vmax / KM)
        self.vs.clamp_(self.vmin / KM, self.vmax / KM)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "vs": self.vs}

    def salt_probability(self) -> torch.Tensor:
        return self.mask.float()


class SaltSoft(Parameterisation):
    name = "salt_soft"

    def __init__(self, start: torch.Tensor, vmin: float, vmax: float, *, salt_prob: torch.Tensor,
                 salt_velocity: float = 4500.0, learn_salt_velocity: bool = True, logit_lr_scale: float = 10.0,
                 **_: Any) -> None:
        super().__init__(vmin, vmax)
        p = salt_prob.clamp(1e-6, 1 - 1e-6)
        self.phi = _leaf(torch.logit(p).clamp(-LOGIT_CLIP, LOGIT_CLIP))
        self.x = _leaf(sediment_fill(start.clamp(vmin, vmax), p > 0.5) / KM)
        self.vs = _leaf(torch.full((start.shape[0],), salt_velocity / KM, device=start.device))
        self.learn_vs, self.logit_lr_scale = learn_salt_velocity, logit_lr_scale

    def groups(self, lr: float) -> list[dict[str, Any]]:
        groups = [{"params": [self.x], "lr": lr}, {"params": [self.phi], "lr": lr * self.logit_lr_scale}]
        if self.learn_vs:
            groups.append({"params": [self.vs], "lr": lr})
        return groups

    def velocity(self) -> torch.Tensor:
        p = torch.sigmoid(self.phi)
        return self._clamp(p * self.vs.view(-1, 1, 1) + (1 - p) * self.x)

    @torch.no_grad()
    def project(self) -> None:
        self.x.clamp_(self.vmin / KM, self.vmax / KM)
        self.vs.clamp_(self.vmin / KM, self.vmax / KM)
        self.phi.clamp_(-2 * LOGIT_CLIP, 2 * LOGIT_CLIP)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "phi": self.phi, "vs": self.vs}

    def salt_probability(self) -> torch.Tensor:
        return torch.sigmoid(self.phi.detach())


PARAMETERISATIONS: Registry[Callable[..., Parameterisation]] = Registry("parameterisation")
for _cls in (VelocityCells, SaltPinned, SaltSoft):
    PARAMETERISATIONS.register(_cls.name, _cls)
#: Parameterisations that need the network's salt probability.
NEEDS_SALT = {"salt_pin", "salt_soft"}
