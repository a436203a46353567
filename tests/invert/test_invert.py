"""fwi.invert: filters, misfits, preconditioning, parameterisations, optimisers, the refinement loop (one call and in
chunks), resume and the CLI.

Tiny grids (24 x 24 cells, 3 shots, 200 steps) keep each test to about a second of deepwave."""

from __future__ import annotations

import dataclasses
import json
import math

import h5py
import numpy as np
import pytest
import scipy.ndimage
import torch

from fwi.invert import RefineConfig, refine, refine_batches
from fwi.invert.cli import main
from fwi.invert.filters import FrequencyError, lowpass
from fwi.invert.misfits import MISFITS, correlation, envelope, l2
from fwi.invert.params import SaltPinned
from fwi.invert.precondition import Preconditioner, gaussian_smooth, mute_taper, source_illumination
from fwi.physics import Survey, forward_model

SURVEY = Survey(nz=24, nx=24, dx=10.0, nt=200, dt=0.001, freq=25.0, n_sources=3, n_receivers=24, pml_width=10)


def true_model(batch: int = 1) -> torch.Tensor:
    v = torch.full((batch, 24, 24), 2000.0)
    v[:, 12:] = 2600.0
    v[:, 14:19, 8:16] = 3200.0
    return v


def test_lowpass_passes_low_and_stops_high_frequencies():
    t = torch.arange(1000) * 0.001
    low, high = torch.sin(2 * math.pi * 3 * t), torch.sin(2 * math.pi * 40 * t)
    x = (low + high)[None, :, None]  # (1, T, 1)
    y = lowpass(x, 10.0, 0.001)[0, :, 0]
    mid = slice(200, 800)  # away from the ends
    assert torch.allclose(y[mid], low[mid], atol=0.02)
    assert float(lowpass(high[None, :, None], 10.0, 0.001).abs()[0, mid].max()) < 0.01
    assert lowpass(x, None, 0.001) is x
    with pytest.raises(FrequencyError, match="Nyquist"):
        lowpass(x, 500.0, 0.001)


def test_lowpass_is_self_adjoint():
    a, b = torch.randn(2, 3, 64, 5, dtype=torch.float64), torch.randn(2, 3, 64, 5, dtype=torch.float64)
    assert torch.allclose((lowpass(a, 50.0, 0.001) * b).sum(), (a * lowpass(b, 50.0, 0.001)).sum())


def test_misfits_vanish_at_the_data_and_have_their_invariances():
    o = torch.randn(2, 3, 128, 4, dtype=torch.float64)
    for fn in map(MISFITS.get, MISFITS):
        assert torch.allclose(fn(o, o), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    scale = torch.rand(1, 1, 1, 4, dtype=torch.float64) + 0.5  # per-trace gain
    assert torch.allclose(correlation(o * scale, o), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    assert float(l2(o * scale, o).min()) > 1e-3
    # a 90-degree phase rotation leaves the envelope unchanged but not the waveform
    t = torch.arange(512, dtype=torch.float64) * 0.001
    env = torch.exp(-((t - 0.25) / 0.03) ** 2)
    a = (env * torch.cos(2 * math.pi * 60 * t)).view(1, 1, -1, 1)
    b = (env * torch.sin(2 * math.pi * 60 * t)).view(1, 1, -1, 1)
    assert float(envelope(b, a)) < 1e-3 < float(l2(b, a))


def test_gaussian_smoothing_matches_scipy_and_mute_zeroes_the_top():
    x = torch.randn(2, 20, 17, dtype=torch.float64)
    ref = np.stack([scipy.ndimage.gaussian_filter(a, 1.5, mode="reflect", truncate=3.0) for a in x.numpy()])
    # scipy's "reflect" repeats the edge sample; torch's reflect does not: compare away from the border
    assert np.allclose(gaussian_smooth(x, 1.5).numpy()[:, 5:-5, 5:-5], ref[:, 5:-5, 5:-5], atol=1e-6)
    assert torch.allclose(gaussian_smooth(torch.ones(1, 9, 9), 2.0), torch.ones(1, 9, 9), atol=1e-6)
    w = mute_taper(10, 3)
    assert (w[:3] == 0).all() and (w[6:] == 1).all() and (w[3:6, 0].diff() > 0).all()
    g = Preconditioner(smooth_sigma=1.0, mute_cells=3)(torch.randn(1, 10, 10))
    assert (g[:, :3] == 0).all()


def test_illumination_is_strongest_at_the_sources():
    h = source_illumination(torch.full((1, 24, 24), 2000.0), SURVEY)
    assert h.shape == (1, 24, 24)
    row_top, row_bottom = h[0, 1].mean(), h[0, -2].mean()
    assert float(row_top) > 5 * float(row_bottom)


def test_salt_pin_keeps_confident_cells_at_the_salt_velocity():
    start = torch.full((1, 6, 6), 2500.0)
    prob = torch.zeros(1, 6, 6)
    prob[:, 2:4, 2:4] = 0.95
    p = SaltPinned(start, 1400.0, 5000.0, salt_prob=prob, confidence=0.9, salt_velocity=4500.0)
    v = p.velocity()
    assert torch.all(v[prob > 0.9] == 4500.0) and torch.all(v[prob <= 0.9] == 2500.0)
    v.sum().backward()
    assert float(p.x.grad[prob > 0.9].abs().max()) == 0.0  # pinned cells get no update


@pytest.fixture(scope="module")
def observed() -> torch.Tensor:
    return forward_model(true_model(2), SURVEY)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_refine_reduces_the_misfit_within_the_bounds(observed, optimizer):
    start = gaussian_smooth(true_model(2), 4.0)
    cfg = RefineConfig(iterations=6, schedule=(15.0, None), optimizer=optimizer, smooth_sigma=1.0, mute_cells=1,
                       vmax=3300.0, lr=0.01)
    r = refine(SURVEY, observed, start, None, cfg, truth=true_model(2), progress=False)
    assert r.complete and r.iterations == 6 and len(r.history) == 6
    assert (r.misfit_after < 0.9 * r.misfit_before).all()
    assert r.velocity.max() <= 3300.0 and r.velocity.min() >= 1400.0
    assert r.metrics_after["mae_ms"].mean() < r.metrics_before["mae_ms"].mean()
    assert r.n_evals >= 6


def test_resume_continues_to_the_same_result(observed, tmp_path):
    start = gaussian_smooth(true_model(2), 4.0)
    cfg = RefineConfig(iterations=4, schedule=(None,), save_every=1, shots_per_iter=2)
    full = refine(SURVEY, observed, start, None, cfg, progress=False)
    state = tmp_path / "state.pt"
    part = refine(SURVEY, observed, start, None, cfg, state_path=state, stop_after=2, progress=False)
    assert not part.complete and part.iterations == 2 and state.exists()
    rest = refine(SURVEY, observed, start, None, cfg, state_path=state, progress=False)
    assert rest.complete and len(rest.history) == 4
    assert np.allclose(rest.velocity, full.velocity, atol=1e-3)
    with pytest.raises(ValueError, match="another configuration"):
        refine(SURVEY, observed, start, None, RefineConfig(iterations=5, schedule=(None,)), state_path=state,
               progress=False)


@pytest.mark.parametrize("change, message", [
    (dict(iterations=0), "iterations"),
    (dict(schedule=(4.0, 600.0)), "Nyquist"),
    (dict(param="salt_pin"), "salt probability"),
])
def test_bad_configurations_are_rejected(observed, change, message):
    with pytest.raises(ValueError, match=message):
        refine(SURVEY, observed, true_model(2), None, RefineConfig(**change), progress=False)


def test_bad_models_and_gathers_are_rejected(observed):
    bad = true_model(2)
    bad[0, 0, 0] = float("nan")
    for start, obs, message in ((bad, observed, "NaN"), (true_model(2) * 3, observed, "max_velocity"),
                                (true_model(2)[:, :20], observed, "24, 24"),
                                (true_model(2), observed[:, :, :150], "do not match the survey")):
        with pytest.raises(ValueError, match=message):
            refine(SURVEY, obs, start, None, RefineConfig(iterations=1), progress=False)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from fwi.data.generate import generate

    path = tmp_path_factory.mktemp("invert") / "tiny.h5"
    generate(path, "tiny", seed=2, sizes={"train": 2, "test": 3}, progress=False)
    return path


def test_cli_writes_every_output(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--data", str(tiny_data), "--indices", "0:2", "--start", "trend", "--out", str(out), "--device",
               "cpu", "--iterations", "2", "--schedule", "8,full", "--smooth-sigma", "1", "--segy"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    refined = np.load(out / "refined.npy")
    assert refined.shape[0] == 2 and metrics["iterations"] == 2
    with h5py.File(out / "refined.h5") as f:
        assert np.array_equal(f["test/velocity"][:, 0], refined)
    for name in ("history.jsonl", "convergence.png", "comparison.png", "before.png", "after.png", "refined-0.sgy"):
        assert (out / name).exists(), name
    assert len(list((out / "state").glob("models-0-1-*.pt"))) == 1  # the default --batch-size (8) holds both
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    # read back (the notebook's view): the start is the trend, the truth the dataset's, scores agree with metrics.json
    from fwi.invert.outputs import load_refinement
    from fwi.invert.starts import trend_start

    r = load_refinement(out)
    assert r.split == "test" and r.indices == [0, 1] and np.array_equal(r.refined, refined)
    np.testing.assert_allclose(r.start, trend_start(tiny_data, 2).numpy(), atol=1e-3)
    with h5py.File(tiny_data) as f:
        np.testing.assert_array_equal(r.truth, f["test/velocity"][:2, 0])
        np.testing.assert_array_equal(r.true_mask, f["test/salt_mask"][:2, 0])
    mae_before = np.abs(r.start - r.truth).mean(axis=(1, 2))
    np.testing.assert_allclose(mae_before, metrics["per_model"]["mae_ms_before"], rtol=1e-4)
    assert [h["iteration"] for h in r.history] == [1, 2]
    assert len(r.figure().axes) >= 10  # 2 models x 5 panels (+ colour bars)


@pytest.mark.parametrize("extra, message", [
    (["--iterations", "0"], "iterations"),
    (["--schedule", "4,900"], "Nyquist"),
    (["--indices", "5:9"], "indices"),
    (["--start", "smooth:-1"], "sigma"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(tiny_data, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    args = ["--data", str(tiny_data), "--indices", "0:2", "--start", "trend", "--out", str(out), "--device", "cpu"]
    rc = main(args + extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_rejects_a_starting_model_of_the_wrong_grid(tiny_data, tmp_path, capsys):
    path = tmp_path / "start.npy"
    np.save(path, np.full((1, 10, 10), 2000.0, dtype=np.float32))
    out = tmp_path / "out"
    rc = main(["--data", str(tiny_data), "--start", f"file:{path}", "--out", str(out), "--device", "cpu"])
    assert rc == 2 and "error:" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------------------------- chunks
def _starts() -> torch.Tensor:
    """Two different starting models (the true model smoothed, one of them slowed down)."""
    start = gaussian_smooth(true_model(2), 4.0)
    start[1] *= 0.95
    return start


def test_chunked_refinement_equals_one_call_for_adam(observed, tmp_path):
    cfg = RefineConfig(iterations=4, schedule=(15.0, None), smooth_sigma=1.0, lr=0.01, save_every=1)
    one = refine(SURVEY, observed, _starts(), None, cfg, truth=true_model(2), progress=False)
    chunked = refine_batches(SURVEY, observed, _starts(), None, cfg, batch_size=1, truth=true_model(2),
                             progress=False)
    np.testing.assert_allclose(chunked.velocity, one.velocity, rtol=0, atol=0.05)  # m/s
    assert np.abs(chunked.velocity - chunked.start).max() > 10  # the models did move
    np.testing.assert_allclose(chunked.start, one.start)
    for name in ("misfit_before", "misfit_after"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(one, name), rtol=1e-4, err_msg=name)
    for key in ("mae_ms", "ssim", "iou"):
        np.testing.assert_allclose(chunked.metrics_after[key], one.metrics_after[key], rtol=1e-4, atol=1e-6)
    # the merged history: one record per iteration, per-model lists over both models, counts summed over chunks
    assert chunked.complete and chunked.iterations == 4 and len(chunked.history) == len(one.history) == 4
    for a, b in zip(chunked.history, one.history):
        assert (a["iteration"], a["stage"], a["cutoff"]) == (b["iteration"], b["stage"], b["cutoff"])
        for key in ("misfit", "mae_ms", "ssim", "iou"):
            assert len(a[key]) == 2
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)
        assert a["n_evals"] == 2 * b["n_evals"]
    assert chunked.n_evals == 2 * one.n_evals == 8 and chunked.seconds > 0
    assert chunked.summary()["n"] == 2

    # each chunk keeps its own state: an interrupted chunked refinement continues to the same models
    states = tmp_path / "states"
    part = refine_batches(SURVEY, observed, _starts(), None, cfg, batch_size=1, state_dir=states, stop_after=2,
                          progress=False)
    assert not part.complete and part.iterations == 2 and len(list(states.glob("models-*.pt"))) == 2
    rest = refine_batches(SURVEY, observed, _starts(), None, cfg, batch_size=1, state_dir=states, progress=False)
    assert rest.complete and len(rest.history) == 4
    np.testing.assert_allclose(rest.velocity, chunked.velocity, rtol=0, atol=0.05)
    # other models never pick up these states
    other = refine_batches(SURVEY, observed, _starts() * 1.01, None, cfg, batch_size=1, state_dir=states,
                           stop_after=1, progress=False)
    assert other.iterations == 1 and len(list(states.glob("models-*.pt"))) == 4
    with pytest.raises(ValueError, match="batch size"):
        refine_batches(SURVEY, observed, _starts(), None, cfg, batch_size=0, progress=False)


def test_cli_honours_batch_size_and_resumes_each_batch(tiny_data, tmp_path, capsys):
    args = ["--data", str(tiny_data), "--indices", "0:3", "--start", "trend", "--device", "cpu", "--iterations",
            "2", "--schedule", "full", "--smooth-sigma", "1"]
    two, three = tmp_path / "b2", tmp_path / "b3"
    assert main([*args, "--out", str(two), "--batch-size", "2"]) == 0, capsys.readouterr().err
    assert main([*args, "--out", str(three), "--batch-size", "3"]) == 0, capsys.readouterr().err
    refined = np.load(two / "refined.npy")
    assert refined.shape[0] == 3
    np.testing.assert_allclose(refined, np.load(three / "refined.npy"), rtol=0, atol=0.05)
    assert sorted(p.name.rsplit("-", 1)[0] for p in (two / "state").iterdir()) == ["models-0-1", "models-2-2"]
    assert len(list((three / "state").iterdir())) == 1
    history = [json.loads(line) for line in (two / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(len(h["misfit"]) == 3 for h in history)
    # a rerun continues from the batches' states: nothing left to do, the same models and seconds
    seconds = json.loads((two / "metrics.json").read_text())["seconds"]
    assert main([*args, "--out", str(two), "--batch-size", "2"]) == 0
    assert json.loads((two / "metrics.json").read_text())["seconds"] == seconds
    assert np.array_equal(np.load(two / "refined.npy"), refined)
    assert main([*args, "--out", str(two), "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- sgd
def test_gradient_normalisation_by_a_quantile():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 8, 9)).astype(np.float32)
    g[1] *= 1e-6  # a tiny gradient is normalised like a large one
    g[2, 0, 0] = 50.0  # an outlier is clipped, not allowed to set the scale
    out = Preconditioner(quantile=0.9)(torch.from_numpy(g)).numpy()
    scale = np.quantile(np.abs(g).reshape(3, -1), 0.9, axis=1)
    expected = np.clip(g / scale[:, None, None], -1.0, 1.0) / 1000.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-12)
    assert np.isclose(np.abs(out).max(), 1e-3) and (np.abs(out) == 1e-3).reshape(3, -1).sum(1).min() >= 7
    assert not Preconditioner().active and Preconditioner(quantile=0.9).active
    for bad in (1.5, 1.0, -0.1):
        with pytest.raises(ValueError, match="grad_quantile"):
            RefineConfig(grad_quantile=bad).validate(SURVEY)


def test_sgd_with_normalised_gradient_steps_by_lr_and_lowers_the_misfit(observed):
    lr = 0.02  # km/s
    cfg = RefineConfig(iterations=1, schedule=(None,), optimizer="sgd", grad_quantile=0.9, lr=lr)
    first = refine(SURVEY, observed, _starts(), None, cfg, progress=False)
    change = np.abs(first.velocity - first.start).reshape(2, -1)
    assert change.max() <= lr * 1000 + 0.01  # no cell moves by more than lr km/s
    # the cells at or above the 0.9 quantile of |g| (at least 10 % of them) move by lr km/s exactly
    assert (np.abs(change - lr * 1000) < 0.01).sum(1).min() >= int(0.1 * change.shape[1])
    longer = refine(SURVEY, observed, _starts(), None, dataclasses.replace(cfg, iterations=6), progress=False)
    assert (longer.misfit_after < 0.9 * longer.misfit_before).all()
    assert longer.velocity.min() >= cfg.vmin


def test_time_gain_weighs_each_sample_by_its_time_power():
    from fwi.invert.filters import time_gain

    x = torch.randn(2, 3, 50, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(time_gain(x, 0.0), x)
    t = np.arange(1, 51) / 50.0
    expected = x.numpy() * (t**2)[None, None, :, None]
    np.testing.assert_allclose(time_gain(x, 2.0).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="time_gain must be >= 0"):
        RefineConfig(time_gain=-1.0).validate(Survey(nz=20, nx=20, nt=100, n_sources=1, n_receivers=5))


def test_resume_inside_a_stage_is_bit_identical(observed, tmp_path):
    """Killed after iteration 3 of 5 (inside the second of two stages, SGD momentum state and all), a rerun ends with
    exactly the models and records of an uninterrupted refinement."""
    cfg = RefineConfig(iterations=5, schedule=(15.0, None), save_every=1, shots_per_iter=2)
    full = refine(SURVEY, observed, _starts(), None, cfg, truth=true_model(2), progress=False)
    state = tmp_path / "state.pt"
    refine(SURVEY, observed, _starts(), None, cfg, truth=true_model(2), state_path=state, stop_after=3,
           progress=False)
    rest = refine(SURVEY, observed, _starts(), None, cfg, truth=true_model(2), state_path=state, progress=False)
    assert np.array_equal(rest.velocity, full.velocity) and np.array_equal(rest.misfit_after, full.misfit_after)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in rest.history] == strip


def test_load_refinement_of_an_unfinished_output_says_so(tmp_path):
    from fwi.invert.outputs import load_refinement

    (tmp_path / "refined.npy").write_bytes(b"")  # a killed run leaves no metrics.json
    with pytest.raises(FileNotFoundError, match="no finished refinement"):
        load_refinement(tmp_path)
