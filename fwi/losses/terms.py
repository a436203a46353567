"""Training losses: supervised velocity (L1/L2, optional SSIM), salt mask (BCE + Dice) and a physics-informed data
misfit.

The physics term re-models the shot gathers of the *predicted* velocity with deepwave and compares them with the
observed gathers, as in UPFWI (Jin et al., "Unsupervised learning of full-waveform inversion: connecting CNN and
partial differential equation in a loop", ICLR 2022). With ``supervised_weight = 0`` and ``salt_weight = 0`` the
network is trained from the data alone.

Memory of the physics term
--------------------------
Backpropagating through deepwave needs the wavefield history: for every modelled shot deepwave keeps one snapshot of
the padded grid every ``model_gradient_sampling_interval`` user time steps (its internal CFL sub-steps are strided
over already). For a batch of B models with S' shots each that is about::

    B * S' * (nz + 2 * pml + accuracy) * (nx + 2 * pml + accuracy) * nt / gradient_sampling   floats

(``pml = survey.pml_width``; ``accuracy // 2`` finite-difference halo cells on each side). For OpenFWI (70 x 70,
pml 20, accuracy 4, nt 1000) and B = 16, S' = 5 this is ~4.2 GB in float32; `FWILoss.memory_estimate` asks
``deepwave.estimate_memory`` for the exact figure of a configuration. The levers, all deepwave options of
``deepwave.scalar`` (see its docstring, "storage_mode", "storage_compression", "model_gradient_sampling_interval",
"checkpoint_segments"):

* ``physics_shots`` (S' < S): fewer shots per sample, linear saving; a random subset is drawn per sample.
* ``physics_storage = "cpu" | "disk"``: the history lives in host memory or on disk instead of the device
  (deepwave ``storage_mode``); only a small double buffer stays on the device.
* ``physics_compression``: 8-bit block quantisation of the history (deepwave ``storage_compression``), ~3.8x smaller
  in 2-D for float32; *lossy*: deepwave documents a 0.2-4 % relative L2 change of the model gradient in 2-D.
* ``physics_gradient_sampling = k``: store every k-th step (deepwave ``model_gradient_sampling_interval``), k x
  smaller; valid while the wavefield is sampled above twice its highest frequency; k must divide ``nt``.
* ``physics_checkpoint_segments = n``: run the time axis in n checkpointed segments (``torch.utils.checkpoint``),
  peak memory ~ one segment's history plus n boundary states, at the cost of a second forward pass. deepwave's
  checkpointing is reentrant: take gradients with ``loss.backward()``, not ``torch.autograd.grad``.

Depth weighting
---------------
``physics_depth_power = p > 0`` multiplies the physics term's gradient w.r.t. the predicted velocity by
(z / z_max)^p before it reaches the network (the loss value is unchanged): the depth preconditioning of FWI
(`fwi.invert --depth-power`) applied in training. At the sweep's branch point 98 % of the physics gradient's
energy lies in the top third of the model (`experiments/physics_sweep/gradient_share.md`); measured on ablation70,
p = 2 moves it down but does not improve the velocity model (`experiments/fwi_refine/README.md`).
"""

from __future__ import annotations

import deepwave
import torch
import torch.nn.functional as F
from torch import nn

from fwi.data.transforms import Normalizer, decimate_time
from fwi.losses.config import LossConfig
from fwi.metrics import ssim01
from fwi.physics import PHYSICS_MIN_VELOCITY, Survey, clamp_velocity, forward_model
from fwi.physics.depth import depth_weights, scale_gradient

#: Additive smoothing of the soft Dice coefficient (per sample); makes two empty masks a perfect match.
DICE_SMOOTH = 1.0


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy (mean over all cells) and soft Dice loss (mean over the batch) of salt logits.

    Dice per sample: 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s), p = sigmoid(logits), s = `DICE_SMOOTH`.
    """
    if logits.shape != target.shape:
        raise ValueError(f"salt logits {tuple(logits.shape)} and mask {tuple(target.shape)} differ in shape")
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + DICE_SMOOTH) / (p.sum(1) + t.sum(1) + DICE_SMOOTH)
    return bce, (1 - dice).mean()


class FWILoss(nn.Module):
    """Weighted sum of the supervised, SSIM, salt and physics terms (see `LossConfig`).

    ``n_forward_calls`` counts the deepwave forward-modelling calls this loss made and ``last_shots`` holds the
    (B, S') shot indices of the latest physics evaluation (None when all shots were modelled).
    """

    def __init__(self, cfg: LossConfig, survey: Survey, normalizer: Normalizer, data_time_decimation: int = 1) -> None:
        super().__init__()
        cfg.validate()
        if int(data_time_decimation) != data_time_decimation or data_time_decimation < 1:
            raise ValueError(f"data_time_decimation must be an integer >= 1, got {data_time_decimation}")
        if cfg.physics_weight > 0:
            if survey.nt % (cfg.physics_gradient_sampling or 1):
                raise ValueError(f"loss.physics_gradient_sampling ({cfg.physics_gradient_sampling}) must divide "
                                 f"survey.nt ({survey.nt}); deepwave refuses a remainder")
            if cfg.physics_checkpoint_segments > survey.nt:
                raise ValueError(f"loss.physics_checkpoint_segments ({cfg.physics_checkpoint_segments}) must not "
                                 f"exceed survey.nt ({survey.nt})")
            if PHYSICS_MIN_VELOCITY >= survey.max_velocity:
                raise ValueError(f"survey.max_velocity ({survey.max_velocity:g} m/s) must exceed the physics lower "
                                 f"clamp {PHYSICS_MIN_VELOCITY:g} m/s")
        self.cfg, self.survey, self.normalizer = cfg, survey, normalizer
        #: deepwave's model_gradient_sampling_interval (``physics_gradient_sampling``, 0: the survey's lossless one)
        self.gradient_sampling = cfg.physics_gradient_sampling or survey.lossless_gradient_sampling()
        self.data_time_decimation = int(data_time_decimation)
        self.n_forward_calls = 0
        self.last_shots: torch.Tensor | None = None  # (B', S') shots of the last physics evaluation
        self.last_samples: torch.Tensor | None = None  # (B',) batch samples of the last physics evaluation

    # ------------------------------------------------------------------ physics
    def physics_weight_at(self, epoch: float) -> float:
        """0 before ``physics_start_epoch``, then linear from 0 to ``physics_weight`` over ``physics_ramp_epochs``
        (epoch may be fractional: epoch + batch / batches_per_epoch gives a smooth ramp), then constant."""
        c = self.cfg
        if c.physics_weight == 0 or epoch < c.physics_start_epoch:
            return 0.0
        if c.physics_ramp_epochs == 0:
            return float(c.physics_weight)
        return float(c.physics_weight) * min(1.0, (epoch - c.physics_start_epoch) / c.physics_ramp_epochs)

    @property
    def shots_per_sample(self) -> int:
        k = self.cfg.physics_shots
        return self.survey.n_sources if k == 0 else min(k, self.survey.n_sources)

    def choose_shots(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """(B, S') sorted distinct shot indices, drawn independently per sample with ``generator``; None = all shots."""
        k, s = self.shots_per_sample, self.survey.n_sources
        if k >= s:
            return None
        device = generator.device if generator is not None else torch.device("cpu")
        keys = torch.rand(batch_size, s, generator=generator, device=device)
        return keys.argsort(dim=1)[:, :k].sort(dim=1).values

    def choose_samples(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """(B',) sorted distinct sample indices of a batch to re-model, drawn with ``generator``; None = all."""
        k = self.cfg.physics_samples
        if k == 0 or k >= batch_size:
            return None
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randperm(batch_size, generator=generator, device=device)[:k].sort().values

    def model_gathers(self, velocity: torch.Tensor, shots: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised, decimated gathers (B, S', T', R) of normalised velocities (B, 1, nz, nx) or (B, nz, nx).

        Differentiable w.r.t. ``velocity``; matches the dataset's ``gathers`` item for the true velocity.
        """
        if velocity.ndim == 4:
            if velocity.shape[1] != 1:
                raise ValueError(f"velocity must have one channel, got shape {tuple(velocity.shape)}")
            velocity = velocity[:, 0]
        if velocity.dtype not in (torch.float32, torch.float64):
            velocity = velocity.float()  # e.g. bf16 under autocast: deepwave propagates in float32 / float64
        c = self.cfg
        v_ms = clamp_velocity(self.normalizer.velocity_inverse(velocity), self.survey)
        self.n_forward_calls += 1
        raw = forward_model(
            v_ms, self.survey, shots=shots, storage_mode=c.physics_storage, storage_compression=c.physics_compression,
            gradient_sampling_interval=self.gradient_sampling,
            checkpoint_segments=c.physics_checkpoint_segments or None,
            check=False)  # clamped above; the per-call dispersion warning would only repeat itself
        return self.normalizer.gathers(decimate_time(raw, self.data_time_decimation))

    def physics_loss(self, velocity: torch.Tensor, observed: torch.Tensor, shots: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Mean L1 / squared-L2 misfit between modelled and observed normalised gathers (B, S, T', R) of ``shots``.

        With ``physics_depth_power`` p > 0 its gradient w.r.t. ``velocity`` is scaled by (z / z_max)^p."""
        if shots is not None:
            shots = shots.to(observed.device)
            observed = torch.take_along_dim(observed, shots[:, :, None, None], dim=1)
        if self.cfg.physics_depth_power > 0:
            velocity = scale_gradient(velocity, depth_weights(velocity.shape[-2], self.cfg.physics_depth_power))
        modelled = self.model_gathers(velocity, shots)
        if modelled.shape != observed.shape:
            raise ValueError(
                f"modelled gathers {tuple(modelled.shape)} do not match the observed ones {tuple(observed.shape)}; "
                f"is data_time_decimation ({self.data_time_decimation}) the dataset's time decimation, and the survey "
                "the dataset's?")
        diff = modelled - observed.to(modelled.dtype)
        return diff.abs().mean() if self.cfg.physics_norm == "l1" else diff.pow(2).mean()

    def memory_estimate(self, batch_size: int, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> dict:
        """deepwave's estimate (``deepwave.estimate_memory``) of what one physics evaluation needs, in bytes."""
        c = self.cfg
        return dict(deepwave.estimate_memory(
            "scalar", self.survey.shape, self.survey.nt, batch_size * self.shots_per_sample, dtype,
            accuracy=self.survey.accuracy, pml_width=self.survey.pml_width,
            model_gradient_sampling_interval=self.gradient_sampling, storage_mode=c.physics_storage,
            storage_compression=c.physics_compression, models_requiring_grad=["v"], device=device,
            n_segments=c.physics_checkpoint_segments or None))

    # ------------------------------------------------------------------ total
    def forward(self, pred: dict, batch: dict, epoch: float = 0.0, generator: torch.Generator | None = None,
                with_physics: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its components (unweighted values, plus ``physics_weight_now`` and ``total``).

        A term with weight 0 adds nothing to the graph; its value is still reported when cheap (computed without
        gradient). The physics term is only evaluated (deepwave run) when its current weight is > 0 and
        ``with_physics`` (validation leaves it out: the data misfit is measured separately there).
        """
        c = self.cfg
        v_pred = pred["velocity"]
        terms: list[torch.Tensor] = []
        comps: dict[str, torch.Tensor | float] = {}

        def add(name: str, weight: float, fn) -> None:
            if weight > 0:
                value = fn()
                terms.append(weight * value)
                comps[name] = value.detach()
            else:
                with torch.no_grad():
                    comps[name] = fn()

        if "velocity" in batch:
            v_true = batch["velocity"].to(v_pred.dtype)
            add("velocity", c.supervised_weight,
                lambda: F.l1_loss(v_pred, v_true) if c.velocity_loss == "l1" else F.mse_loss(v_pred, v_true))
            add("ssim", c.ssim_weight, lambda: 1 - ssim01(v_pred, v_true))
        else:
            if c.supervised_weight > 0 or c.ssim_weight > 0:
                raise KeyError("the batch has no 'velocity' but loss.supervised_weight or loss.ssim_weight is > 0")
            comps["velocity"] = comps["ssim"] = 0.0
        if "salt_logits" in pred and "salt_mask" in batch:
            with torch.set_grad_enabled(torch.is_grad_enabled() and c.salt_weight > 0):
                bce, dice = bce_dice_loss(pred["salt_logits"], batch["salt_mask"])
            if c.salt_weight > 0:
                terms.append(c.salt_weight * (bce + dice))
            comps["salt_bce"], comps["salt_dice"] = bce.detach(), dice.detach()
        else:
            if c.salt_weight > 0:
                raise KeyError("loss.salt_weight is > 0 but the prediction has no 'salt_logits' or the batch no "
                               "'salt_mask'")
            comps["salt_bce"] = comps["salt_dice"] = 0.0

        w_phys = self.physics_weight_at(epoch) if with_physics else 0.0
        comps["physics_weight_now"] = w_phys
        if w_phys > 0:
            self.last_samples = self.choose_samples(v_pred.shape[0], generator)
            v_phys, observed = v_pred, batch["gathers"]
            if self.last_samples is not None:
                idx = self.last_samples.to(v_pred.device)
                v_phys, observed = v_pred[idx], observed[idx]
            self.last_shots = self.choose_shots(v_phys.shape[0], generator)
            phys = self.physics_loss(v_phys, observed, self.last_shots)
            terms.append(w_phys * phys)
            comps["physics"] = phys.detach()
        else:
            comps["physics"] = 0.0

        total = sum(terms[1:], terms[0]) if terms else v_pred.sum() * 0.0
        comps["total"] = total.detach()
        # one device synchronisation for all components
        names = list(comps)
        values = torch.stack([torch.as_tensor(comps[n], dtype=torch.float64, device=total.device).reshape(())
                              for n in names]).tolist()
        return total, dict(zip(names, values))
