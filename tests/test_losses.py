"""FWILoss: supervised / SSIM / salt terms against hand formulas, and the deepwave physics term."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fwi.data.transforms import Normalizer, decimate_time, signed_log1p
from fwi.losses import DICE_SMOOTH, FWILoss, LossConfig, bce_dice_loss
from fwi.metrics import ssim01
from fwi.physics import Survey, forward_model

SURVEY = Survey(nz=20, nx=24, dx=10.0, nt=150, dt=0.001, n_sources=3, n_receivers=12, max_velocity=4000.0)


def true_velocity(batch: int = 2) -> torch.Tensor:
    """(B, nz, nx) layered model with a fast 'salt' block, different per sample."""
    v = torch.empty(batch, SURVEY.nz, SURVEY.nx)
    z = torch.arange(SURVEY.nz)[:, None].float()
    for b in range(batch):
        v[b] = 1800 + 40 * z + 0 * torch.arange(SURVEY.nx)[None].float()
        v[b, 8 + b: 14 + b, 6 + 3 * b: 15 + 3 * b] = 3500.0
    return v


@pytest.fixture(scope="module")
def setup():
    """Observed raw gathers of the true models, a Normalizer built from them, and the normalised dataset items."""
    v = true_velocity()
    raw = forward_model(v, SURVEY)  # (B, S, T, R)
    out = {"v": v, "raw": raw}
    for dec in (1, 2):
        d = decimate_time(raw, dec)
        logd = signed_log1p(d)
        norm = Normalizer(1500.0, 4000.0, float(logd.min()), float(logd.max()))
        out[dec] = (norm, {"gathers": norm.gathers(d), "velocity": norm.velocity(v)[:, None],
                           "salt_mask": (v >= 3500).float()[:, None]})
    return out


def perturbed(v_norm: torch.Tensor) -> torch.Tensor:
    p = v_norm.clone()
    p[:, :, 3:9, 4:20] += 0.08  # ~100 m/s faster in a shallow block
    return p


def physics_cfg(**kw) -> LossConfig:
    base = dict(supervised_weight=0.0, salt_weight=0.0, physics_weight=1.0)
    base.update(kw)
    return LossConfig(**base)


def pred_of(v_norm: torch.Tensor, logits: torch.Tensor | None = None) -> dict:
    logits = torch.zeros_like(v_norm) if logits is None else logits
    return {"velocity": v_norm, "salt_logits": logits}


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize("change, field", [
    (dict(velocity_loss="l3"), "velocity_loss"),
    (dict(physics_norm="huber"), "physics_norm"),
    (dict(physics_storage="gpu"), "physics_storage"),
    (dict(salt_weight=-0.1), "salt_weight"),
    (dict(ssim_weight=float("nan")), "ssim_weight"),
    (dict(supervised_weight=0.0, salt_weight=0.0), "at least one"),
    (dict(physics_shots=-1), "physics_shots"),
    (dict(physics_gradient_sampling=-1), "physics_gradient_sampling"),
    (dict(physics_checkpoint_segments=-2), "physics_checkpoint_segments"),
    (dict(physics_ramp_epochs=1.5), "physics_ramp_epochs"),
    (dict(physics_depth_power=-1.0), "physics_depth_power"),
    (dict(physics_depth_power=float("inf")), "physics_depth_power"),
    (dict(supervised_weight=0.0, salt_weight=0.0, physics_weight=1.0, physics_start_epoch=3), "physics_start_epoch"),
])
def test_config_validation_names_the_field(change, field):
    cfg = dataclasses.replace(LossConfig(), **change)
    with pytest.raises(ValueError, match=field):
        cfg.validate()


def test_config_defaults_are_valid_and_flat():
    LossConfig().validate()
    names = [f.name for f in dataclasses.fields(LossConfig)]
    assert names == ["velocity_loss", "supervised_weight", "ssim_weight", "salt_weight", "physics_weight",
                     "physics_norm", "physics_shots", "physics_samples", "physics_start_epoch", "physics_ramp_epochs",
                     "physics_storage", "physics_compression", "physics_gradient_sampling",
                     "physics_checkpoint_segments", "physics_depth_power"]
    with pytest.raises(ValueError, match="must divide"):
        FWILoss(physics_cfg(physics_gradient_sampling=4), SURVEY, Normalizer(1500, 4000, -1, 1))  # 150 % 4 != 0


# ---------------------------------------------------------------------- supervised terms
def test_bce_dice_matches_hand_formula():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 5, 6, generator=gen, dtype=torch.float64)
    target = (torch.rand(3, 1, 5, 6, generator=gen) > 0.6).double()
    target[2] = 0  # one sample without salt
    bce, dice = bce_dice_loss(logits, target)
    p = 1 / (1 + np.exp(-logits.numpy()))
    t = target.numpy()
    bce_hand = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    dice_hand = np.mean([1 - (2 * (p[i] * t[i]).sum() + DICE_SMOOTH) / (p[i].sum() + t[i].sum() + DICE_SMOOTH)
                         for i in range(3)])
    assert float(bce) == pytest.approx(bce_hand, rel=1e-10)
    assert float(dice) == pytest.approx(dice_hand, rel=1e-10)
    # a confident, correct prediction has (almost) zero loss, incl. two empty masks
    perfect = torch.where(target > 0, 30.0, -30.0)
    b0, d0 = bce_dice_loss(perfect, target)
    assert float(b0) < 1e-10 and float(d0) < 1e-10


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_total_is_the_weighted_sum_of_hand_computed_terms(kind, setup):
    norm, batch = setup[1]
    gen = torch.Generator().manual_seed(1)
    v = (batch["velocity"] + 0.1 * torch.randn(batch["velocity"].shape, generator=gen)).requires_grad_()
    logits = torch.randn(v.shape, generator=gen).requires_grad_()
    cfg = LossConfig(velocity_loss=kind, supervised_weight=2.0, ssim_weight=0.3, salt_weight=0.7)
    loss = FWILoss(cfg, SURVEY, norm)
    total, comps = loss(pred_of(v, logits), batch)
    d = (v - batch["velocity"]).detach().numpy()
    vel_hand = np.abs(d).mean() if kind == "l1" else (d**2).mean()
    assert comps["velocity"] == pytest.approx(vel_hand, rel=1e-5)
    assert comps["ssim"] == pytest.approx(1 - float(ssim01(v.detach(), batch["velocity"])), rel=1e-6)
    bce, dice = bce_dice_loss(logits.detach(), batch["salt_mask"])
    assert comps["salt_bce"] == pytest.approx(float(bce), rel=1e-6)
    assert comps["salt_dice"] == pytest.approx(float(dice), rel=1e-6)
    assert comps["physics"] == 0.0 and comps["physics_weight_now"] == 0.0 and loss.n_forward_calls == 0
    expected = 2.0 * vel_hand + 0.3 * comps["ssim"] + 0.7 * (float(bce) + float(dice))
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    assert comps["total"] == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert v.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


# ---------------------------------------------------------------------- physics term
@pytest.mark.parametrize("dec", [1, 2])
def test_physics_is_zero_at_the_true_velocity_and_positive_otherwise(dec, setup):
    """With dataset time decimation ``dec`` the observed gathers are decimate_time(raw, dec); the loss must match."""
    norm, batch = setup[dec]
    assert batch["gathers"].shape[2] == -(-SURVEY.nt // dec)
    loss = FWILoss(physics_cfg(), SURVEY, norm, data_time_decimation=dec)
    _, at_true = loss(pred_of(batch["velocity"]), batch)
    _, off = loss(pred_of(perturbed(batch["velocity"])), batch)
    assert at_true["physics"] < 1e-6
    assert off["physics"] > 1e-6 and off["physics"] > 1e3 * at_true["physics"]
    assert loss.n_forward_calls == 2
    # a loss that forgets the dataset's decimation does not silently compare different time axes
    if dec == 2:
        with pytest.raises(ValueError, match="data_time_decimation"):
            FWILoss(physics_cfg(), SURVEY, norm, data_time_decimation=1)(pred_of(batch["velocity"]), batch)


def test_physics_gradient_is_correct_and_points_downhill(setup):
    norm, batch = setup[1]
    batch64 = {k: (t.double() if torch.is_tensor(t) else t) for k, t in batch.items()}
    loss = FWILoss(physics_cfg(), SURVEY, norm)
    v = perturbed(batch64["velocity"]).requires_grad_()
    total, _ = loss(pred_of(v), batch64)
    (grad,) = torch.autograd.grad(total, v)
    assert grad.abs().max() > 0
    direction = -grad / grad.abs().max()

    def at(x):
        with torch.no_grad():
            return float(loss(pred_of(x), batch64)[0])
    l0 = float(total.detach())
    assert at(v.detach() + 1e-3 * direction) < l0  # a small step along -grad lowers the loss
    # directional derivative vs central finite difference
    h = 1e-4
    fd = (at(v.detach() + h * direction) - at(v.detach() - h * direction)) / (2 * h)
    assert fd == pytest.approx(float((grad * direction).sum()), rel=0.02)


@pytest.mark.parametrize("power", [1.0, 2.5])
def test_depth_power_keeps_the_loss_and_scales_its_gradient_by_depth(power, setup):
    """Same physics value; gradient = the unweighted gradient x ((row + 1) / nz)^p, row by row (hand weights)."""
    norm, batch = setup[1]
    batch64 = {k: (t.double() if torch.is_tensor(t) else t) for k, t in batch.items()}
    v = perturbed(batch64["velocity"])
    results = []
    for p in (0.0, power):
        x = v.clone().requires_grad_()
        total, parts = FWILoss(physics_cfg(physics_depth_power=p), SURVEY, norm)(pred_of(x), batch64)
        results.append((parts["physics"], torch.autograd.grad(total, x)[0]))
    (plain_value, plain_grad), (value, grad) = results
    assert value == plain_value
    weights = torch.tensor([((row + 1) / SURVEY.nz) ** power for row in range(SURVEY.nz)], dtype=torch.float64)
    torch.testing.assert_close(grad, plain_grad * weights.view(1, 1, -1, 1))
    assert grad[..., 0, :].abs().max() < 0.2 * plain_grad[..., 0, :].abs().max()  # the top row is damped


def test_shot_subsampling_is_reproducible_and_equals_the_misfit_of_those_shots(setup):
    norm, batch = setup[1]
    loss = FWILoss(physics_cfg(physics_shots=1, physics_norm="l1"), SURVEY, norm)
    v = perturbed(batch["velocity"])
    _, comps = loss(pred_of(v), batch, generator=torch.Generator().manual_seed(7))
    shots = loss.last_shots.clone()
    assert shots.shape == (2, 1) and 0 <= int(shots.min()) and int(shots.max()) < SURVEY.n_sources
    _, again = loss(pred_of(v), batch, generator=torch.Generator().manual_seed(7))
    assert torch.equal(loss.last_shots, shots) and again["physics"] == comps["physics"]
    draws = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        draws.add(tuple(loss.choose_shots(2, gen)[:, 0].tolist()))
    assert len(draws) > 1  # random, not a fixed subset
    # independent recomputation: model exactly those shots, one sample at a time
    v_ms = norm.velocity_inverse(v[:, 0])
    per_sample = []
    for b in range(2):
        s = int(shots[b, 0])
        modelled = norm.gathers(forward_model(v_ms[b:b + 1], SURVEY, shots=[s]))[0, 0]
        per_sample.append((modelled - batch["gathers"][b, s]).abs().mean())
    assert comps["physics"] == pytest.approx(float(torch.stack(per_sample).mean()), rel=1e-5)
    # two distinct shots per sample with physics_shots=2
    two = FWILoss(physics_cfg(physics_shots=2), SURVEY, norm).choose_shots(5, torch.Generator().manual_seed(3))
    assert two.shape == (5, 2) and bool((two[:, 1] > two[:, 0]).all())


def test_sample_subsampling_equals_the_misfit_of_those_samples(setup):
    norm, batch = setup[1]
    loss = FWILoss(physics_cfg(physics_samples=1, physics_shots=2), SURVEY, norm)
    v = perturbed(batch["velocity"])
    _, comps = loss(pred_of(v), batch, generator=torch.Generator().manual_seed(5))
    (b,), shots = loss.last_samples.tolist(), loss.last_shots
    assert shots.shape == (1, 2)
    picked = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        picked.add(int(loss.choose_samples(2, gen)[0]))
    assert picked == {0, 1}  # random, not always the first sample
    # independent recomputation: only sample b, only its shots
    modelled = norm.gathers(forward_model(norm.velocity_inverse(v[b:b + 1, 0]), SURVEY, shots=shots[0].tolist()))
    expected = (modelled[0] - batch["gathers"][b, shots[0]]).pow(2).mean()
    assert comps["physics"] == pytest.approx(float(expected), rel=1e-5)
    # the other sample gets no gradient from the physics term
    v_req = v.clone().requires_grad_()
    total, _ = FWILoss(physics_cfg(physics_samples=1, supervised_weight=0.0, salt_weight=0.0), SURVEY, norm)(
        pred_of(v_req), batch, generator=torch.Generator().manual_seed(5))
    total.backward()
    grad_norms = v_req.grad.flatten(1).abs().sum(1)
    assert grad_norms[b] > 0 and grad_norms[1 - b] == 0
    assert FWILoss(physics_cfg(physics_samples=4), SURVEY, norm).choose_samples(3) is None  # k >= B: all


def test_unsupervised_mode_gets_its_gradient_only_through_physics(setup):
    norm, batch = setup[1]
    loss = FWILoss(physics_cfg(), SURVEY, norm)
    v = perturbed(batch["velocity"]).requires_grad_()
    logits = torch.randn(v.shape).requires_grad_()
    total, comps = loss(pred_of(v, logits), batch)
    total.backward()
    assert logits.grad is None  # salt term not in the graph
    assert comps["velocity"] > 0 and comps["salt_bce"] > 0  # still reported, without gradient
    v2 = v.detach().clone().requires_grad_()
    loss.physics_loss(v2, batch["gathers"]).backward()
    assert v.grad.abs().max() > 0
    assert torch.allclose(v.grad, v2.grad, rtol=1e-5, atol=1e-7 * float(v2.grad.abs().max()))
    # and the physics term is the total
    assert comps["total"] == pytest.approx(comps["physics"], rel=1e-6)


def test_ramp_schedule():
    loss = FWILoss(LossConfig(physics_weight=2.0, physics_start_epoch=3, physics_ramp_epochs=4), SURVEY,
                   Normalizer(1500, 4000, -1, 1))
    assert [loss.physics_weight_at(e) for e in (0, 2, 2.99)] == [0.0, 0.0, 0.0]
    assert loss.physics_weight_at(3) == 0.0
    assert loss.physics_weight_at(4) == pytest.approx(0.5)
    assert loss.physics_weight_at(5.5) == pytest.approx(1.25)
    assert loss.physics_weight_at(7) == pytest.approx(2.0)
    assert loss.physics_weight_at(100) == pytest.approx(2.0)
    no_ramp = FWILoss(LossConfig(physics_weight=2.0, physics_start_epoch=3), SURVEY, Normalizer(1500, 4000, -1, 1))
    assert no_ramp.physics_weight_at(2.9) == 0.0 and no_ramp.physics_weight_at(3) == 2.0


def test_deepwave_is_not_run_while_the_physics_weight_is_zero(setup):
    norm, batch = setup[1]
    cfg = LossConfig(supervised_weight=1.0, salt_weight=0.5, physics_weight=1.0, physics_start_epoch=2,
                     physics_ramp_epochs=2)
    loss = FWILoss(cfg, SURVEY, norm)
    v = perturbed(batch["velocity"])
    _, before = loss(pred_of(v), batch, epoch=1.5)
    assert before["physics"] == 0.0 and before["physics_weight_now"] == 0.0 and loss.n_forward_calls == 0
    total, during = loss(pred_of(v), batch, epoch=3.0)
    assert loss.n_forward_calls == 1 and during["physics_weight_now"] == pytest.approx(0.5) and during["physics"] > 0
    expected = during["velocity"] + 0.5 * (during["salt_bce"] + during["salt_dice"]) + 0.5 * during["physics"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    # supervised-only configuration never models
    sup = FWILoss(LossConfig(), SURVEY, norm)
    sup(pred_of(v), batch, epoch=50)
    assert sup.n_forward_calls == 0


def test_memory_options_keep_the_loss_and_the_gradient(setup):
    norm, batch = setup[1]
    v0 = perturbed(batch["velocity"])

    def run(**kw):
        v = v0.clone().requires_grad_()
        total, _ = FWILoss(physics_cfg(**kw), SURVEY, norm)(pred_of(v), batch)
        total.backward()  # deepwave's checkpointing is reentrant: backward(), not autograd.grad
        return float(total.detach()), v.grad.flatten()

    ref_loss, ref_grad = run()
    for kw, exact in ((dict(physics_storage="cpu"), True), (dict(physics_checkpoint_segments=3), True),
                      (dict(physics_gradient_sampling=3), False), (dict(physics_compression=True), False)):
        value, grad = run(**kw)
        assert value == pytest.approx(ref_loss, rel=1e-5), kw
        cos = float(F.cosine_similarity(grad, ref_grad, dim=0))
        assert cos > (0.9999 if exact else 0.9), (kw, cos)


def test_memory_estimate_follows_the_documented_bound(setup):
    norm, _ = setup[1]
    loss = FWILoss(physics_cfg(physics_shots=2, physics_gradient_sampling=3), SURVEY, norm)
    est = loss.memory_estimate(batch_size=4)
    pad = 2 * SURVEY.pml_width + SURVEY.accuracy
    floats = 4 * 2 * (SURVEY.nz + pad) * (SURVEY.nx + pad) * SURVEY.nt // 3
    assert est["backward_storage_bytes"] == 4 * floats
