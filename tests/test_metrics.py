"""Evaluation metrics against independent computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fwi.data.transforms import Normalizer, decimate_time
from fwi.metrics import data_misfit, salt_metrics, velocity_metrics
from fwi.physics import Survey, forward_model

NORM = Normalizer(v_min=1500.0, v_max=4500.0, g_min=-5.0, g_max=5.0)


def smooth_random(shape, seed, passes=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    for _ in range(passes):
        x = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    return 2 * (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True)) - 1


def ssim_direct(x: torch.Tensor, y: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Per-image SSIM (Wang et al., 2004, eq. 13) with an 11 x 11 Gaussian window (sigma 1.5), images in [0, 1].

    ``padding="reflect"``: reflect-pad by 5 and average the map over the original image (torchmetrics 1.x).
    ``padding="zeros"``: zero-pad by 5 (OpenFWI's pytorch_ssim).
    """
    c1, c2 = 0.01**2, 0.03**2
    r = np.arange(-5, 6)
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()
    w = torch.from_numpy(np.outer(g, g))[None, None].to(x.dtype)
    if padding == "reflect":
        x, y = F.pad(x, (5, 5, 5, 5), mode="reflect"), F.pad(y, (5, 5, 5, 5), mode="reflect")
        pad = 0
    else:
        pad = 5
    mu_x, mu_y = F.conv2d(x, w, padding=pad), F.conv2d(y, w, padding=pad)
    s_xx = F.conv2d(x * x, w, padding=pad) - mu_x**2
    s_yy = F.conv2d(y * y, w, padding=pad) - mu_y**2
    s_xy = F.conv2d(x * y, w, padding=pad) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (s_xx + s_yy + c2))
    return ssim_map.flatten(1).mean(1)


# ---------------------------------------------------------------------- velocity
def test_mae_rmse_match_numpy_on_both_scales():
    pred, true = smooth_random((3, 1, 24, 30), 0), smooth_random((3, 1, 24, 30), 1)
    p, t = pred.numpy(), true.numpy()
    m = velocity_metrics(pred, true, NORM)
    assert m["mae"] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-5)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((p - t) ** 2)), rel=1e-5)
    p_ms, t_ms = (p + 1) / 2 * 3000 + 1500, (t + 1) / 2 * 3000 + 1500
    assert m["mae_ms"] == pytest.approx(np.mean(np.abs(p_ms - t_ms)), rel=1e-5)
    assert m["rmse_ms"] == pytest.approx(np.sqrt(np.mean((p_ms - t_ms) ** 2)), rel=1e-5)
    per = velocity_metrics(pred, true, NORM, reduction="none")
    assert per["mae"].shape == per["rmse"].shape == per["ssim"].shape == (3,)
    np.testing.assert_allclose(per["mae"].numpy(), np.abs(p - t).reshape(3, -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(per["rmse"].numpy(), np.sqrt(((p - t) ** 2).reshape(3, -1).mean(1)), rtol=1e-5)
    np.testing.assert_allclose(per["rmse_ms"].numpy(), np.sqrt(((p_ms - t_ms) ** 2).reshape(3, -1).mean(1)),
                               rtol=1e-4)
    assert m["ssim"] == pytest.approx(float(per["ssim"].mean()), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        velocity_metrics(pred, true, NORM, reduction="sum")


def test_ssim_of_identical_images_is_one():
    v = smooth_random((2, 1, 24, 30), 3)
    assert velocity_metrics(v, v, NORM)["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(velocity_metrics(v, v, NORM, reduction="none")["ssim"], torch.ones(2, dtype=torch.float32))


def test_ssim_matches_a_direct_implementation_with_reflect_padding():
    """Convention check: torchmetrics reflect-pads by 5 cells and averages over the whole original image."""
    pred = smooth_random((4, 1, 24, 30), 10)
    true = 0.6 * pred + 0.4 * smooth_random((4, 1, 24, 30), 11)  # related images: SSIM well inside (0, 1)
    got = velocity_metrics(pred.float(), true.float(), NORM, reduction="none")["ssim"].double()
    expected = ssim_direct((pred + 1) / 2, (true + 1) / 2, "reflect")
    assert float((got - expected).abs().max()) < 1e-4
    assert 0.2 < float(expected.min()) and float(expected.max()) < 0.99
    # the border convention matters: zero padding (OpenFWI's pytorch_ssim) gives a different number
    zero_padded = ssim_direct((pred + 1) / 2, (true + 1) / 2, "zeros")
    assert float((got - zero_padded).abs().max()) > 1e-3


# ---------------------------------------------------------------------- salt
def test_salt_iou_and_dice_on_hand_made_masks():
    mask = torch.zeros(3, 1, 4, 5)
    logits = torch.full((3, 1, 4, 5), -10.0)
    # sample 0: truth 6 cells, prediction 4 cells, 3 shared -> IoU 3/7, Dice 6/10
    mask[0, 0, 0, :3] = 1
    mask[0, 0, 1, :3] = 1
    logits[0, 0, 0, :3] = 10
    logits[0, 0, 3, 4] = 10
    # sample 1: both empty -> 1, 1
    # sample 2: truth 2 cells, empty prediction -> 0, 0
    mask[2, 0, 2, 2:4] = 1
    per = salt_metrics(logits, mask, reduction="none")
    np.testing.assert_allclose(per["iou"].numpy(), [3 / 7, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(per["dice"].numpy(), [6 / 10, 1.0, 0.0], rtol=1e-6)
    mean = salt_metrics(logits, mask)
    assert mean["iou"] == pytest.approx((3 / 7 + 1) / 3) and mean["dice"] == pytest.approx((0.6 + 1) / 3)
    # the threshold is on the probability: sigmoid(0.5) = 0.62 counts at 0.5, not at 0.7
    soft = torch.full((1, 1, 2, 2), 0.5)
    full = torch.ones(1, 1, 2, 2)
    assert salt_metrics(soft, full)["iou"] == 1.0 and salt_metrics(soft, full, threshold=0.7)["iou"] == 0.0


# ---------------------------------------------------------------------- data misfit
@pytest.mark.parametrize("dec", [1, 2])
def test_data_misfit_is_zero_for_the_true_model(dec):
    survey = Survey(nz=20, nx=24, dx=10.0, nt=150, dt=0.001, n_sources=3, n_receivers=12, max_velocity=4000.0)
    v = 2000 + 800 * (smooth_random((2, 1, 20, 24), 5)[:, 0].float() + 1) / 2
    observed = decimate_time(forward_model(v, survey), dec)
    exact = data_misfit(v, observed, survey, time_decimation=dec)
    assert exact.shape == (2,) and float(exact.max()) < 1e-6
    wrong = v.clone()
    wrong[1] *= 1.05
    misfit = data_misfit(wrong[:, None], observed, survey, time_decimation=dec)  # (B, 1, nz, nx) accepted too
    assert float(misfit[0]) < 1e-6 and float(misfit[1]) > 0.05
    # independent relative L2 of sample 1
    d1 = decimate_time(forward_model(wrong[1:], survey), dec)[0]
    ref = float((d1 - observed[1]).norm() / observed[1].norm())
    assert float(misfit[1]) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="time_decimation"):
        data_misfit(v, observed, survey, time_decimation=3 - dec)
