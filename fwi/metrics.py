"""Evaluation metrics: velocity (MAE / RMSE / SSIM as OpenFWI reports them, plus m/s), salt mask (IoU / Dice), data
misfit of a predicted model. The lower layer of `fwi.losses` (which takes `ssim01` from here).

Conventions
-----------
* Velocities are the normalised [-1, 1] maps the models output. ``mae`` / ``rmse`` are on that scale (OpenFWI,
  Deng et al., 2022); ``mae_ms`` / ``rmse_ms`` are the same errors in m/s (scale ``(v_max - v_min) / 2``).
* SSIM: velocities mapped to [0, 1], 11 x 11 Gaussian window with sigma 1.5, data range 1
  (``torchmetrics.functional.structural_similarity_index_measure``). Border convention of torchmetrics 1.x: both
  images are reflect-padded ("mirror", edge not repeated) by 5 cells and the SSIM map is averaged over every cell of
  the original image. OpenFWI's own ``pytorch_ssim`` zero-pads instead, which lowers the value near the borders a
  little; numbers are comparable within this code base, not bit-for-bit with OpenFWI's tables.
* ``reduction="mean"``: MAE over all cells of the batch, RMSE = sqrt(MSE over all cells of the batch), SSIM / IoU /
  Dice the mean of the per-sample values. ``reduction="none"``: (B,) tensors of per-sample values (RMSE per sample).
  For a data-set RMSE, average ``mse`` over the set and take the square root (averaging per-batch RMSEs is not the
  same number).
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from fwi.data.transforms import Normalizer, decimate_time
from fwi.physics import Survey, clamp_velocity, forward_model

Reduction = Literal["mean", "none"]

#: SSIM settings as used by OpenFWI: 11 x 11 Gaussian window with sigma 1.5, images in [0, 1].
SSIM_SIGMA = 1.5
SSIM_KERNEL = 11


def ssim01(pred: torch.Tensor, true: torch.Tensor, reduction: Literal["elementwise_mean", "none"] = "elementwise_mean"
           ) -> torch.Tensor:
    """SSIM of normalised velocities ([-1, 1]) mapped to [0, 1], as OpenFWI reports it (11 x 11 Gaussian, sigma 1.5,
    data range 1). Differentiable (the SSIM term of `fwi.losses.FWILoss` uses it). Border convention (torchmetrics
    1.x): the images are reflect-padded by 5 cells and the SSIM map is averaged over every cell of the original image.
    """
    return structural_similarity_index_measure(
        (pred + 1) / 2, (true + 1) / 2, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL,
        data_range=1.0, reduction=reduction)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


@torch.no_grad()
def velocity_metrics(pred: torch.Tensor, true: torch.Tensor, normalizer: Normalizer, reduction: Reduction = "mean"
                     ) -> dict:
    """MAE, MSE, RMSE, SSIM of normalised (B, 1, nz, nx) velocities, and MAE / MSE / RMSE in m/s (``*_ms``).

    ``reduction="mean"``: floats; ``"none"``: (B,) tensors.
    """
    _check_reduction(reduction)
    if pred.shape != true.shape or pred.ndim != 4:
        raise ValueError(f"pred and true must both be (B, C, nz, nx), got {tuple(pred.shape)} and {tuple(true.shape)}")
    pred, true = pred.detach().float(), true.detach().float()
    diff = (pred - true).flatten(1)
    mae, mse = diff.abs().mean(1), diff.pow(2).mean(1)
    ssim = ssim01(pred, true, reduction="none")
    scale = (normalizer.v_max - normalizer.v_min) / 2
    if reduction == "none":
        rmse = mse.sqrt()
        return {"mae": mae, "mse": mse, "rmse": rmse, "ssim": ssim,
                "mae_ms": mae * scale, "mse_ms": mse * scale**2, "rmse_ms": rmse * scale}
    mae_m, mse_m = float(mae.mean()), float(mse.mean())  # equal samples: mean of per-sample = over all cells
    return {"mae": mae_m, "mse": mse_m, "rmse": mse_m**0.5, "ssim": float(ssim.mean()),
            "mae_ms": mae_m * scale, "mse_ms": mse_m * scale**2, "rmse_ms": mse_m**0.5 * scale}


@torch.no_grad()
def salt_metrics(logits: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5, reduction: Reduction = "mean"
                 ) -> dict:
    """IoU and Dice of the predicted salt mask ``sigmoid(logits) > threshold`` against ``mask > 0.5``, per sample.

    Two empty masks agree perfectly: IoU = Dice = 1. ``reduction="mean"`` averages the per-sample values.
    """
    _check_reduction(reduction)
    if logits.shape != mask.shape:
        raise ValueError(f"salt logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ in shape")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
    p = (torch.sigmoid(logits.detach().float()) > threshold).flatten(1)
    t = (mask.detach() > 0.5).flatten(1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    size = p.sum(1).double() + t.sum(1).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    dice = torch.where(size > 0, 2 * inter / size.clamp_min(1), torch.ones_like(size))
    if reduction == "none":
        return {"iou": iou.float(), "dice": dice.float()}
    return {"iou": float(iou.mean()), "dice": float(dice.mean())}


@torch.no_grad()
def data_misfit(velocity_ms: torch.Tensor, observed_raw: torch.Tensor, survey: Survey, time_decimation: int = 1
                ) -> torch.Tensor:
    """(B,) relative L2 data misfit ||d_model - d_obs|| / ||d_obs|| over all shots of each sample.

    velocity_ms: (B, nz, nx) or (B, 1, nz, nx) in m/s, clamped like the physics loss (`fwi.physics.clamp_velocity`) so
    that any prediction can be propagated. observed_raw: (B, S, T', R) raw (un-normalised) amplitudes, decimated in
    time by ``time_decimation`` with `decimate_time` (T' = ceil(nt / time_decimation)); the modelled data are
    decimated the same way.
    """
    if velocity_ms.ndim == 4:
        velocity_ms = velocity_ms[:, 0]
    v = velocity_ms.detach()
    if not torch.isfinite(v).all():
        raise ValueError("velocity contains NaN or inf values")
    modelled = decimate_time(forward_model(clamp_velocity(v, survey), survey, check=False), time_decimation)
    if modelled.shape != observed_raw.shape:
        raise ValueError(f"modelled data {tuple(modelled.shape)} do not match the observed {tuple(observed_raw.shape)}"
                         f" (time_decimation {time_decimation})")
    obs = observed_raw.to(modelled).flatten(1)
    return (modelled.flatten(1) - obs).norm(dim=1) / obs.norm(dim=1).clamp_min(torch.finfo(obs.dtype).tiny)
