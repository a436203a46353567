"""`fwi.evaluate` (split and external-model evaluation, CLI errors) and `fwi.attention_maps` on a tiny trained run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fwi import evaluate as E
from fwi.evaluation.external import check_models
from fwi.run import load_run
from fwi.checkpoint import load_checkpoint
from fwi.data.dataset import FWIDataset
from fwi.attention_maps import capture_attention, list_attention_modules
from fwi.models.build import build_model
from fwi.models.config import ModelConfig

COMPARED = ("mae", "rmse", "ssim", "mae_ms", "iou", "dice", "data_misfit")


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def tiny_h5(tiny_dataset) -> Path:
    return tiny_dataset


@pytest.fixture(scope="module")
def test_velocity(tiny_h5) -> np.ndarray:
    with h5py.File(tiny_h5, "r") as f:
        return f["test/velocity"][:, 0]


@pytest.fixture(scope="module")
def split_eval(run_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    assert E.main([str(run_dir), "--out", str(out), "--device", "cpu"]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def _sample(metrics: dict, index: int) -> dict:
    return next(s for s in metrics["per_sample"] if s["index"] == index)


def test_metrics_json_means_are_the_per_sample_means(split_eval):
    _, m = split_eval
    assert m["n"] == len(m["per_sample"]) == 4 and m["split"] == "test"
    assert [s["index"] for s in m["per_sample"]] == [0, 1, 2, 3]
    for key in ("mae", "rmse", "ssim", "mae_ms", "rmse_ms", "iou", "dice", "data_misfit"):
        values = np.array([s[key] for s in m["per_sample"]])
        assert np.all(np.isfinite(values)), key
        assert m["mean"][key] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12), key
        assert m["std"][key] == pytest.approx(values.std(), rel=1e-6, abs=1e-9), key
    assert m["pooled"]["rmse"] == pytest.approx(math.sqrt(m["mean"]["mse"]))


def test_mae_agrees_with_an_independent_recomputation(run_dir, split_eval):
    _, m = split_eval
    state = load_checkpoint(run_dir / "best.pt")
    cfg = state["config"]
    model = build_model(ModelConfig(**cfg["model"]), tuple(state["data_shape"]),
                        (state["survey"]["nz"], state["survey"]["nx"]))
    model.load_state_dict(state["model"])
    model.eval()
    ds = FWIDataset(state["data"], "test", time_decimation=cfg["data"]["time_decimation"])
    scale = (state["normalisation"]["v_max"] - state["normalisation"]["v_min"]) / 2
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            pred = model(item["gathers"][None])["velocity"][0]
            mae = float((pred - item["velocity"]).abs().mean())
            assert _sample(m, i)["mae"] == pytest.approx(mae, rel=1e-4, abs=1e-6)
            assert _sample(m, i)["mae_ms"] == pytest.approx(mae * scale, rel=1e-4)


def test_worst_median_best_figures(split_eval):
    out, m = split_eval
    for name in ("worst", "median", "best"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}-gathers.png").stat().st_size > 1000
    assert (out / "histogram.png").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    ranked = {k: _sample(m, i)["mae"] for k, i in m["ranked_by_mae"].items()}
    assert ranked["worst"] >= ranked["median"] >= ranked["best"]
    maes = [s["mae"] for s in m["per_sample"]]
    assert ranked["worst"] == max(maes) and ranked["best"] == min(maes)


def test_external_npy_and_segy_match_the_split_sample(run_dir, split_eval, test_velocity, tmp_path):
    from fwi.io.segy import write_velocity

    _, m = split_eval
    np.save(tmp_path / "sample2.npy", test_velocity[2])  # (nz, nx)
    write_velocity(tmp_path / "sample2.sgy", test_velocity[2], dx=10.0)
    out = tmp_path / "out"
    assert E.main([str(run_dir), "--models", str(tmp_path / "sample2.npy"), str(tmp_path / "sample2.sgy"),
                   "--out", str(out)]) == 0
    expected = _sample(m, 2)
    for name in ("sample2", "sample2-sgy"):
        ext = json.loads((out / "external" / name / "metrics.json").read_text())
        assert ext["n"] == 1
        got = ext["per_sample"][0]
        for key in COMPARED:
            assert got[key] == pytest.approx(expected[key], rel=1e-3, abs=1e-4), (name, key)
        assert (out / "external" / name / "worst.png").exists()


def test_external_fwi_dataset_h5_uses_the_split_velocities(run_dir, split_eval, tiny_h5, tmp_path):
    _, m = split_eval
    out = tmp_path / "out"
    data = tiny_h5
    assert E.main([str(run_dir), "--models", str(data), "--split", "test", "--no-misfit", "--no-figures",
                   "--out", str(out)]) == 0
    ext = json.loads((out / "external" / "tiny" / "metrics.json").read_text())
    assert ext["n"] == 4 and "data_misfit" not in ext["mean"]
    assert sorted(p.name for p in (out / "external" / "tiny").iterdir()) == ["metrics.json"]  # --no-figures
    assert ext["mean"]["mae"] == pytest.approx(m["mean"]["mae"], rel=1e-3)


def test_resample_flag(run_dir, test_velocity, tmp_path, capsys):
    big = np.repeat(np.repeat(test_velocity[:2], 2, axis=1), 2, axis=2)  # (2, 64, 66)
    np.save(tmp_path / "big.npy", big)
    out = tmp_path / "out"
    assert E.main([str(run_dir), "--models", str(tmp_path / "big.npy"), "--out", str(out), "--no-misfit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert "64 x 66" in err[0] and "32 x 33" in err[0] and "--resample" in err[0]
    assert not out.exists()
    assert E.main([str(run_dir), "--models", str(tmp_path / "big.npy"), "--out", str(out), "--no-misfit",
                   "--no-figures", "--resample"]) == 0
    ext = json.loads((out / "external" / "big" / "metrics.json").read_text())
    assert ext["original_shape"] == [64, 66] and ext["resampled_to"] == [32, 33] and ext["n"] == 2
    assert all(math.isfinite(s["mae"]) for s in ext["per_sample"])


def test_nan_model_is_a_clean_error(run_dir, test_velocity, tmp_path, capsys):
    bad = test_velocity[:1].copy()
    bad[0, 5, 5] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    out = tmp_path / "out"
    assert E.main([str(run_dir), "--models", str(tmp_path / "bad.npy"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN" in err[0] and "bad.npy" in err[0]
    assert not out.exists()


def test_corrupt_checkpoint_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    assert E.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable checkpoint" in err[0]
    assert not (tmp_path / "eval-test").exists()


def test_missing_checkpoint_cli(tmp_path, capsys):
    # In-process `main` (what `python -m fwi.evaluate` runs): an unexpected exception would fail the test with its
    # traceback, so this checks the same as a subprocess without paying for a second interpreter's imports.
    out = tmp_path / "out"
    assert E.main([str(tmp_path / "nope"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "does not exist" in lines[0]
    assert "Traceback" not in captured.err and not out.exists()


def test_load_run_and_capture_attention(run_dir, tmp_path):
    run = load_run(run_dir / "best.pt", "cpu")
    assert not run.model.training and run.checkpoint.name == "best.pt" and run.time_decimation == 2
    names = list_attention_modules(run.model)
    assert names == ["skip_attn.0", "skip_attn.1"]
    ds = FWIDataset(run.data, "test", time_decimation=run.time_decimation, normalizer=run.normalizer)
    gathers = torch.stack([ds[0]["gathers"], ds[1]["gathers"]])
    maps = capture_attention(run.model, gathers)
    nz, nx = run.grid
    assert set(maps) == set(names)
    for level, name in enumerate(names):
        assert maps[name].shape == (2, math.ceil(nz / 2 ** level), math.ceil(nx / 2 ** level))
        # SE multiplies by sigmoid weights in (0, 1): the gain can only shrink the features.
        assert float(maps[name].min()) >= 0 and float(maps[name].max()) <= 1 + 1e-5
    assert list(capture_attention(run.model, gathers, ["skip_attn.1"])) == ["skip_attn.1"]
    with pytest.raises(ValueError, match="available"):
        capture_attention(run.model, gathers, ["encoder_attn.0"])


def test_capture_attention_gate_map_is_alpha():
    torch.manual_seed(0)
    model = build_model(ModelConfig(attn="cbam", bottleneck_attn=True, skip_gate="gate", depth=2, base_channels=8),
                        (3, 40, 17), (16, 17))
    model.train()
    names = list_attention_modules(model)
    assert names == ["bottleneck_attn", "decoder.blocks.0.gate", "decoder.blocks.1.gate"]  # not CBAM's parts
    seen = {}
    gate = dict(model.named_modules())["decoder.blocks.1.gate"]
    handle = gate.register_forward_hook(lambda m, inp, out: seen.update(alpha=m.attention_map(*inp)[:, 0]))
    gathers = torch.randn(2, 3, 40, 17)
    maps = capture_attention(model, gathers)
    handle.remove()
    assert model.training  # mode restored
    assert maps["decoder.blocks.1.gate"].shape == (2, 16, 17) and maps["decoder.blocks.0.gate"].shape == (2, 8, 9)
    assert maps["bottleneck_attn"].shape == (2, 4, 5)
    torch.testing.assert_close(maps["decoder.blocks.1.gate"], seen["alpha"], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- the shared scoring loop (fwi.scoring)
def _val_loader_and_loss(run):
    from torch.utils.data import DataLoader

    from fwi.config import from_dict
    from fwi.losses import FWILoss, LossConfig

    ds = FWIDataset(run.data, "val", time_decimation=run.time_decimation, normalizer=run.normalizer)
    loss_fn = FWILoss(from_dict(LossConfig, run.config["loss"], "loss"), run.survey, run.normalizer,
                      data_time_decimation=run.time_decimation)
    return ds, DataLoader(ds, batch_size=3), loss_fn  # 4 samples: batches of 3 and 1 (unequal weights)


def test_evaluate_loader_equals_an_independent_per_sample_computation(run_dir):
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    from fwi.data.transforms import decimate_time
    from fwi.physics import forward_model
    from fwi.scoring import evaluate_loader

    run = load_run(run_dir, "cpu")
    ds, loader, loss_fn = _val_loader_and_loss(run)
    metrics, first = evaluate_loader(run.model, loader, run.normalizer, run.survey, torch.device("cpu"),
                                     time_decimation=run.time_decimation, misfit_samples=2,
                                     loss_parts=lambda pred, batch: loss_fn(pred, batch, with_physics=False)[1])
    scale = (run.normalizer.v_max - run.normalizer.v_min) / 2
    per: dict[str, list[float]] = {k: [] for k in ("mae", "mse", "ssim", "iou", "dice", "misfit")}
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            out = run.model(item["gathers"][None])
            p, t = out["velocity"][0, 0].double(), item["velocity"][0].double()
            per["mae"].append(float((p - t).abs().mean()))
            per["mse"].append(float((p - t).pow(2).mean()))
            per["ssim"].append(float(ssim((p[None, None] + 1) / 2, (t[None, None] + 1) / 2, gaussian_kernel=True,
                                          sigma=1.5, kernel_size=11, data_range=1.0)))
            pm = (out["salt_logits"][0, 0] > 0).numpy()
            tm = item["salt_mask"][0].numpy() > 0.5
            union, size = (pm | tm).sum(), pm.sum() + tm.sum()
            per["iou"].append((pm & tm).sum() / union if union else 1.0)
            per["dice"].append(2 * (pm & tm).sum() / size if size else 1.0)
            if i < 2:
                v_ms = run.normalizer.velocity_inverse(out["velocity"][0]).clamp(1000.0, run.survey.max_velocity)
                modelled = decimate_time(forward_model(v_ms, run.survey, check=False), run.time_decimation)
                obs = run.normalizer.gathers_inverse(item["gathers"])
                per["misfit"].append(float((modelled - obs).norm() / obs.norm()))
    for key in ("mae", "mse", "ssim", "iou", "dice"):
        assert metrics[key] == pytest.approx(np.mean(per[key]), rel=1e-5, abs=1e-7), key
    assert metrics["mae_ms"] == pytest.approx(np.mean(per["mae"]) * scale, rel=1e-5)
    assert metrics["rmse"] == pytest.approx(math.sqrt(np.mean(per["mse"])), rel=1e-5)
    assert metrics["rmse_ms"] == pytest.approx(math.sqrt(np.mean(per["mse"])) * scale, rel=1e-5)
    assert metrics["data_misfit"] == pytest.approx(np.mean(per["misfit"]), rel=1e-4)
    # the loss parts are batch means, weighted by the batch sizes (3 and 1)
    losses = []
    with torch.no_grad():
        for batch in loader:
            pred = {k: v.float() for k, v in run.model(batch["gathers"]).items()}
            losses.append((loss_fn(pred, batch, with_physics=False)[1]["total"], len(batch["index"])))
    assert metrics["loss"] == pytest.approx(sum(v * n for v, n in losses) / 4, rel=1e-9)
    assert first["batch"]["gathers"].shape[0] == 3 and first["pred"]["velocity"].shape == (3, 1, *run.grid)


def test_find_run_resolves_against_the_working_directory_then_the_given_roots(run_dir, tmp_path, monkeypatch):
    from fwi.run import find_run

    monkeypatch.chdir(tmp_path)
    rel = Path(run_dir.name)
    assert find_run(rel) == rel  # not found: unchanged (load_run names it in its error)
    assert find_run(rel, tmp_path, run_dir.parent) == run_dir.parent / rel
    (tmp_path / rel).mkdir()
    assert find_run(rel, run_dir.parent) == rel  # the working directory comes first


def test_velocity_file_readers_table(tmp_path, test_velocity):
    from fwi.io.velocity_files import READERS, load_velocity_file

    assert {".npy", ".h5", ".hdf5", ".sgy", ".segy"} <= set(READERS)
    np.save(tmp_path / "m.npy", test_velocity[:2, None])  # (N, 1, nz, nx)
    v, dx = load_velocity_file(tmp_path / "m.npy")
    assert v.dtype == np.float32 and dx is None and np.array_equal(v, test_velocity[:2])
    (tmp_path / "m.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unsupported model file type '.txt'; use one of .npy"):
        load_velocity_file(tmp_path / "m.txt")


def test_check_models_is_the_survey_validator(run_dir, test_velocity):
    from fwi.physics import SurveyError

    run = load_run(run_dir, "cpu")
    check_models(test_velocity, run, "x.npy")
    bad = test_velocity.copy()
    bad[2, 0, 0] = np.inf
    with pytest.raises(SurveyError, match=r"x.npy contains NaN or inf values \(model\(s\) \[2\]\)"):
        check_models(bad, run, "x.npy")
    with pytest.raises(SurveyError, match="max_velocity"):
        check_models(test_velocity * 10, run, "x.npy")
    with pytest.raises(SurveyError, match="positive"):
        check_models(-test_velocity, run, "x.npy")
