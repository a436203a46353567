"""deepwave forward modelling against analytic results and wave-equation invariants."""

import numpy as np
import pytest
import scipy.special as sp
import torch

from fwi.physics import PHYSICS_MIN_VELOCITY, Survey, SurveyError, clamp_velocity, forward_model


def analytic_trace(wavelet: np.ndarray, r: float, c: float, dt: float) -> np.ndarray:
    """Wavelet convolved with the 2D Green's function of (1/c^2) u_tt - lap u = delta(x) delta(t).

    In the frequency domain (numpy's e^{+i w t} convention) G(r, w) = -(i/4) H0^(2)(w r / c).
    """
    nt = len(wavelet)
    n = 8 * nt
    spectrum = np.fft.rfft(wavelet, n)
    omega = 2 * np.pi * np.fft.rfftfreq(n, dt)
    green = np.zeros_like(spectrum)
    green[1:] = -0.25j * sp.hankel2(0, omega[1:] * r / c)
    return np.fft.irfft(spectrum * green, n)[:nt]


@pytest.mark.parametrize("dx", [4.0, 6.0])
def test_homogeneous_trace_matches_analytic_green_function(dx):
    c, n, nt, dt, f = 2000.0, 81, 400, 0.0005, 25.0
    centre = n // 2
    receivers = tuple(np.arange(centre, n) * dx)
    survey = Survey(nz=n, nx=n, dx=dx, nt=nt, dt=dt, freq=f, source_x=(centre * dx,), receiver_x=receivers,
                    source_depth=centre * dx, receiver_depth=centre * dx, max_velocity=c, pml_width=30, accuracy=8)
    gathers = forward_model(torch.full((n, n), c, dtype=torch.float64), survey)[0].numpy()  # (T, R)
    wavelet = survey.wavelet().double().numpy()
    for offset_cells in (10, 25):
        r = offset_cells * dx
        expected = analytic_trace(wavelet, r, c, dt)
        got = gathers[:, offset_cells]
        # deepwave injects the amplitude into one cell of the RHS of lap u - u_tt / c^2 = s,
        # i.e. a point source of strength -dx^2 in the convention of `analytic_trace`.
        expected = -dx**2 * expected
        rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
        assert rel < 0.02, f"waveform misfit {rel:.3%} at r = {r} m"
        # arrival: the peak arrives at the wavelet peak + r / c (within one sample)
        assert abs(np.argmax(np.abs(got)) - np.argmax(np.abs(expected))) <= 1


def test_source_receiver_reciprocity_in_heterogeneous_medium():
    torch.manual_seed(0)
    n = 40
    survey = Survey(nz=n, nx=n, dx=10.0, nt=300, dt=0.001, freq=10.0, n_sources=4, n_receivers=n,
                    source_depth=20.0, receiver_depth=20.0, max_velocity=3500.0)
    v = 2000 + 1000 * torch.rand(n, n, dtype=torch.float64)
    v = torch.nn.functional.avg_pool2d(v[None, None], 5, 1, 2, count_include_pad=False)[0, 0]
    v[:, : n // 2] *= 0.7  # strong lateral contrast: the two ends of each pair sit in different velocities
    g = forward_model(v, survey)  # (S, T, R); receivers cover every cell, sources at some of them
    src_cells = survey.source_cells()[:, 0, 1].tolist()
    rec_cells = survey.receiver_cells()[0, :, 1].tolist()
    for i, si in enumerate(src_cells):
        for j, sj in enumerate(src_cells):
            if i < j:
                a, b = g[i, :, rec_cells.index(sj)], g[j, :, rec_cells.index(si)]
                assert torch.allclose(a, b, rtol=0, atol=1e-4 * g.abs().max()), (i, j)
                # the tolerance discriminates: the neighbouring receiver differs by more
                assert (a - g[i, :, rec_cells.index(sj) - 1]).abs().max() > 1e-3 * g.abs().max()


def test_batched_call_equals_individual_calls():
    survey = Survey(nz=30, nx=36, dx=10.0, nt=200, dt=0.001, freq=15.0, n_sources=3, n_receivers=12)
    torch.manual_seed(1)
    v = 1800 + 1500 * torch.rand(3, 30, 36)
    batched = forward_model(v, survey)
    assert batched.shape == (3, 3, 200, 12)
    for b in range(3):
        single = forward_model(v[b], survey)
        assert torch.allclose(batched[b], single, atol=1e-5 * single.abs().max())
    assert not torch.allclose(batched[0], batched[1])


def test_shot_subsampling_selects_the_same_traces():
    survey = Survey(nz=30, nx=30, dx=10.0, nt=150, dt=0.001, n_sources=4, n_receivers=10)
    v = torch.full((2, 30, 30), 2500.0)
    v[1, 15:] = 3200.0
    full = forward_model(v, survey)
    sub = forward_model(v, survey, shots=torch.tensor([[3, 0], [1, 2]]))
    assert torch.allclose(sub[0], full[0, [3, 0]], atol=1e-6 * full.abs().max())
    assert torch.allclose(sub[1], full[1, [1, 2]], atol=1e-6 * full.abs().max())


def test_gradient_matches_finite_differences():
    survey = Survey(nz=16, nx=18, dx=10.0, nt=120, dt=0.001, freq=20.0, n_sources=2, n_receivers=6,
                    max_velocity=3000.0, pml_width=8)
    gen = torch.Generator().manual_seed(3)
    v0 = (2000 + 500 * torch.rand(16, 18, generator=gen, dtype=torch.float64))
    weights = torch.randn(2, 120, 6, generator=gen, dtype=torch.float64)
    direction = torch.randn(16, 18, generator=gen, dtype=torch.float64)

    def loss(v):
        return (forward_model(v, survey) * weights).sum()

    v = v0.clone().requires_grad_(True)
    loss(v).backward()
    analytic = (v.grad * direction).sum().item()
    eps = 1.0  # m/s
    numeric = ((loss(v0 + eps * direction) - loss(v0 - eps * direction)) / (2 * eps)).item()
    assert abs(analytic - numeric) <= 1e-3 * abs(numeric)


def test_memory_options_give_the_same_gradient():
    survey = Survey(nz=20, nx=20, dx=10.0, nt=100, dt=0.001, n_sources=2, n_receivers=8, max_velocity=3000.0)
    v0 = torch.full((1, 20, 20), 2200.0)
    v0[:, 10:] = 2700.0

    def grad(**kw):
        v = v0.clone().requires_grad_(True)
        forward_model(v, survey, **kw).square().sum().backward()
        return v.grad

    ref = grad()
    assert torch.allclose(grad(storage_mode="cpu"), ref, rtol=1e-5, atol=1e-6 * ref.abs().max())
    assert torch.allclose(grad(checkpoint_segments=2), ref, rtol=1e-4, atol=1e-5 * ref.abs().max())
    sampled = grad(gradient_sampling_interval=2)
    assert torch.nn.functional.cosine_similarity(sampled.flatten(), ref.flatten(), dim=0) > 0.95


def test_the_lossless_gradient_sampling_keeps_the_gradient_and_a_coarser_one_does_not():
    """Survey.lossless_gradient_sampling: the forward x adjoint product is band-limited to ~6 x the Ricker frequency,
    so summing it every k-th step with 1 / (k dt) above that keeps the gradient; far below it aliasing shows."""
    survey = Survey(nz=24, nx=30, dx=10.0, nt=300, dt=0.001, freq=15.0, n_sources=2, n_receivers=30)
    k = survey.lossless_gradient_sampling()
    assert k == 10 and survey.nt % k == 0 and 1 / (k * survey.dt) > 6 * survey.freq
    assert Survey(nt=1250, dt=0.0016, freq=7.0).lossless_gradient_sampling() == 10  # fieldsalt's
    assert Survey(nt=997, dt=0.001).lossless_gradient_sampling() == 1  # a prime nt: nothing divides it
    true = torch.full((1, 24, 30), 2200.0)
    true[:, 12:] = 3000.0
    observed = forward_model(true, survey)

    def grad(interval: int) -> torch.Tensor:
        v = torch.full((1, 24, 30), 2400.0, requires_grad=True)
        forward_model(v, survey, gradient_sampling_interval=interval).sub(observed).square().sum().backward()
        return v.grad[0, 2:].flatten().double()  # below the source row

    exact = grad(1)
    cos = [float(torch.nn.functional.cosine_similarity(grad(i), exact, dim=0)) for i in (k, 50)]
    assert cos[0] > 1 - 1e-6
    assert cos[1] < 1 - 1e-4  # 50 ms sampling (Nyquist 10 Hz) aliases: the test can fail


@pytest.mark.parametrize("bad, message", [
    (torch.full((1, 20, 20), float("nan")), "NaN"),
    (torch.full((1, 20, 20), -5.0), "positive"),
    (torch.full((1, 20, 21), 2000.0), "shape"),
    (torch.full((1, 20, 20), 9000.0), "max_velocity"),
])
def test_bad_velocity_is_rejected_with_a_clear_message(bad, message):
    survey = Survey(nz=20, nx=20, dx=10.0, nt=50, dt=0.001, n_sources=1, n_receivers=5)
    with pytest.raises(SurveyError, match=message):
        forward_model(bad, survey)


def test_clamp_keeps_the_propagation_stable():
    survey = Survey(nz=20, nx=20, dx=10.0, nt=50, dt=0.001, n_sources=1, n_receivers=5, max_velocity=4000.0)
    v = torch.tensor([[-5.0, 500.0, 2500.0, 9000.0]])
    assert clamp_velocity(v, survey).tolist() == [[PHYSICS_MIN_VELOCITY, 1000.0, 2500.0, 4000.0]]
    with pytest.raises(ValueError, match="must exceed the physics lower clamp"):
        clamp_velocity(v, Survey(nz=20, nx=20, n_sources=1, n_receivers=5, max_velocity=900.0))


def test_check_velocity_names_the_source_and_bad_models():
    survey = Survey(nz=20, nx=20, dx=10.0, nt=50, dt=0.001, n_sources=1, n_receivers=5)
    v = torch.full((3, 20, 20), 2000.0)
    v[1, 3, 3] = float("nan")
    with pytest.raises(SurveyError, match=r"^m.npy contains NaN or inf values \(model\(s\) \[1\]\)$"):
        survey.check_velocity(v, name="m.npy")
    big = torch.full((2, 40, 40), 2000.0)
    survey.check_velocity(big, check_shape=False)  # e.g. before resampling to the grid
    with pytest.raises(SurveyError, match=r"models are 40 x 40 \(nz x nx\) but the survey's grid is 20 x 20.*; hint$"):
        survey.check_velocity(big, shape_hint="; hint")
