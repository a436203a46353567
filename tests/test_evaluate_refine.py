"""`python -m fwi.evaluate RUN --refine`: FWI refinement (real deepwave) of a tiny trained run's predictions, reported
beside the network-only metrics; every number checked against an independent computation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fwi import evaluate as E
from fwi.evaluation.external import evaluate_models
from fwi.evaluation.refine_settings import refine_config
from fwi.evaluation.refinement import refine_split, score_models
from fwi.evaluation.report import REFINE_FILES
from fwi.evaluation.split import evaluate_split
from fwi.run import load_run
from fwi.data.dataset import SALT_THRESHOLD, FWIDataset
from fwi.data.transforms import decimate_time
from fwi.invert import RefineConfig
from fwi.physics import forward_model

INDICES = [3, 1]  # out of order: the refined section keeps the order asked for
ARGS = ["--device", "cpu", "--refine", "--refine-iterations", "6", "--refine-schedule", "8,full",
        "--refine-indices", ",".join(map(str, INDICES))]


@pytest.fixture(scope="module")
def refined(tiny_run, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("refine") / "eval"
    assert E.main([str(tiny_run), "--out", str(out), *ARGS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return {"out": out, "metrics": metrics, "section": metrics["refined"]}


def _by_index(per_sample: list[dict]) -> dict[int, dict]:
    return {s["index"]: s for s in per_sample}


def test_refined_section_layout_and_settings(refined):
    r = refined["section"]
    assert r["n"] == 2 and r["indices"] == INDICES
    assert [s["index"] for s in r["per_sample"]] == INDICES == [s["index"] for s in r["before"]["per_sample"]]
    # the settings are fwi.invert's defaults with only the given flags changed
    assert r["settings"] == RefineConfig(iterations=6, schedule=(8.0, None)).to_dict()
    assert r["method"] == RefineConfig().param and r["iterations"] == 6 and r["schedule"] == [8.0, None]
    assert r["seconds"] > 0 and r["seconds_per_model"] == pytest.approx(r["seconds"] / 2)
    network_keys = set(refined["metrics"]["mean"])
    assert set(r["mean"]) == set(r["before"]["mean"]) == network_keys  # same metric names as the network-only ones
    for part in (r, r["before"]):
        for key in network_keys:
            values = np.array([s[key] for s in part["per_sample"]])
            assert part["mean"][key] == pytest.approx(values.mean(), rel=1e-12) and np.isfinite(values).all()
            assert part["std"][key] == pytest.approx(values.std(), rel=1e-9, abs=1e-12)
        assert part["pooled"]["rmse_ms"] == pytest.approx(np.sqrt(part["mean"]["mse_ms"]))


def test_before_is_the_network_only_evaluation_of_the_same_samples(refined, tiny_run):
    m, r = refined["metrics"], refined["section"]
    network = _by_index(m["per_sample"])
    for s in r["before"]["per_sample"]:
        assert s == network[s["index"]]  # the same numbers, not a second computation
    # and those numbers are the network's: MAE in m/s and salt IoU recomputed from the checkpoint's model directly
    run = load_run(tiny_run, "cpu")
    ds = FWIDataset(run.data, "test", time_decimation=run.time_decimation, normalizer=run.normalizer)
    scale = (run.normalizer.v_max - run.normalizer.v_min) / 2
    with torch.no_grad():
        for i in INDICES:
            item = ds[i]
            out = run.model(item["gathers"][None])
            mae_ms = float((out["velocity"][0] - item["velocity"]).abs().mean()) * scale
            pm, tm = (out["salt_logits"][0, 0] > 0).numpy(), item["salt_mask"][0].numpy() > 0.5
            union = (pm | tm).sum()
            iou = (pm & tm).sum() / union if union else 1.0
            assert network[i]["mae_ms"] == pytest.approx(mae_ms, rel=1e-4)
            assert network[i]["iou"] == pytest.approx(iou, abs=1e-6)


def test_after_numbers_match_an_independent_computation_from_the_refined_models(refined, tiny_run):
    out, r = refined["out"], refined["section"]
    refined_v = np.load(out / "refined.npy")
    assert refined_v.shape == (2, 32, 33) and refined_v.dtype == np.float32
    run = load_run(tiny_run, "cpu")
    raw = FWIDataset(run.data, "test", normalize=False)  # full-rate gathers, m/s velocities
    after = _by_index(r["per_sample"])
    for v, i in zip(refined_v, INDICES):
        item = raw[i]
        true_v, true_mask = item["velocity"][0].numpy(), item["salt_mask"][0].numpy() > 0.5
        assert not np.array_equal(v, true_v)
        err = v.astype(np.float64) - true_v
        assert after[i]["mae_ms"] == pytest.approx(np.abs(err).mean(), rel=1e-4)
        assert after[i]["rmse_ms"] == pytest.approx(np.sqrt((err ** 2).mean()), rel=1e-4)
        salt = v > SALT_THRESHOLD
        union = (salt | true_mask).sum()
        assert after[i]["iou"] == pytest.approx((salt & true_mask).sum() / union if union else 1.0, abs=1e-6)
        # data misfit: the refined model re-modelled and decimated like the run's data, against the observed data
        modelled = decimate_time(forward_model(torch.from_numpy(v)[None], run.survey), run.time_decimation)[0]
        observed = decimate_time(item["gathers"][None], run.time_decimation)[0]
        misfit = float((modelled - observed).norm() / observed.norm())
        assert after[i]["data_misfit"] == pytest.approx(misfit, rel=1e-3)
        # FWI fits the data: the misfit falls for every refined model
        assert after[i]["data_misfit"] < _by_index(r["before"]["per_sample"])[i]["data_misfit"]


def test_side_by_side_table_and_figures(refined):
    out, r = refined["out"], refined["section"]
    text = (out / "refined.md").read_text()
    row = next(ln for ln in text.splitlines() if ln.startswith("| MAE (m/s) |"))
    before, after = r["before"]["mean"]["mae_ms"], r["mean"]["mae_ms"]
    assert f"| {before:.1f} ± {r['before']['std']['mae_ms']:.1f} | {after:.1f} ± {r['std']['mae_ms']:.1f} |" in row
    assert f"{100 * (after - before) / before:+.1f} %" in row
    misfit_row = next(ln for ln in text.splitlines() if ln.startswith("| data misfit |"))
    assert misfit_row.endswith("| 2/2 |")  # both models fit the data better
    assert "indices 3, 1" in text and "6 iterations" in text and "8 Hz, full band" in text
    for name in ("refined-before.png", "refined-after.png", "refined-comparison.png", "refined-convergence.png"):
        assert (out / name).stat().st_size > 1000, name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_without_refine_the_metrics_are_the_network_only_bytes(refined, tiny_run, tmp_path, capsys):
    """A plain evaluation writes what the refined one wrote minus its 'refined' section, byte for byte, and removes
    the refinement outputs of the earlier run from the folder."""
    out = tmp_path / "eval"
    shutil.copytree(refined["out"], out)
    assert E.main([str(tiny_run), "--out", str(out), "--device", "cpu", "--no-figures"]) == 0
    network_only = {k: v for k, v in refined["metrics"].items() if k != "refined"}
    assert (out / "metrics.json").read_text() == json.dumps(network_only, indent=1)
    for name in REFINE_FILES:
        assert not (out / name).exists(), name
    assert "FWI refinement" not in capsys.readouterr().out


def test_refined_scoring_is_the_evaluation_scoring(tiny_run):
    """`score_models` on the network's own predictions gives the network-only metrics: before and after are scored
    the same way."""
    run = load_run(tiny_run, "cpu")
    evaluation = evaluate_split(run, "test", progress=False)
    positions = [2, 0]
    scores = score_models(evaluation, positions, torch.from_numpy(evaluation.pred_velocity[positions]),
                            torch.from_numpy(evaluation.pred_mask[positions]).float() * 2 - 1)
    assert list(scores) == list(evaluation.metrics)
    for key, values in scores.items():
        np.testing.assert_allclose(values, evaluation.metrics[key][positions], rtol=1e-4, atol=1e-6, err_msg=key)


def test_refine_flags_change_only_their_settings():
    args = E.build_parser().parse_args(["run", "--refine", "--refine-lr", "0.02", "--refine-depth-power", "2",
                                        "--refine-mute-cells", "5", "--refine-schedule", "3,5,8,full",
                                        "--refine-keep-best"])
    config = refine_config(args.refine_iterations, (3.0, 5.0, 8.0, None), args.refine_method, lr=args.refine_lr,
                           depth_power=args.refine_depth_power, mute_cells=args.refine_mute_cells,
                           keep_best=args.refine_keep_best)
    assert config == RefineConfig(schedule=(3.0, 5.0, 8.0, None), lr=0.02, depth_power=2.0, mute_cells=5,
                                  keep_best=True)
    assert refine_config().keep_best is False  # not given: the default


def test_batches_do_not_change_the_refinement(tiny_run):
    run = load_run(tiny_run, "cpu")
    evaluation = evaluate_split(run, "test", samples=[0, 1], progress=False)
    config = refine_config(iterations=3, schedule=(8.0, None))
    one = refine_split(evaluation, config, [1, 0], batch_size=1, progress=False)
    two = refine_split(evaluation, config, [1, 0], batch_size=2, progress=False)
    assert list(one.index) == [1, 0] and len(one.history) == 3 and len(one.history[0]["misfit"]) == 2
    np.testing.assert_allclose(one.velocity, two.velocity, rtol=1e-4, atol=0.05)  # m/s
    assert (one.velocity != one.evaluation.pred_velocity[[1, 0]]).any()


@pytest.mark.parametrize("extra, message", [
    (["--refine", "--refine-iterations", "0"], "--refine-iterations must be >= 1"),
    (["--refine", "--refine-indices", "2:9"], "--refine-indices '2:9' selects nothing or leaves the test split"),
    (["--refine", "--refine-indices", "x"], "--refine-indices 'x'"),
    (["--refine", "--refine-schedule", "4,900"], "Nyquist"),
    (["--refine", "--refine-schedule", "4,,8"], "--refine-schedule '4,,8'"),
    (["--refine", "--refine-method", "nope"], "--refine-method 'nope'"),
    (["--refine-iterations", "3"], "without --refine"),
    (["--refine-lr", "0.02"], "--refine-lr without --refine"),
    (["--refine-keep-best"], "--refine-keep-best without --refine"),
    (["--refine", "--refine-lr", "0"], "--refine-lr must be a positive step"),
    (["--refine", "--refine-mute-cells", "-1"], "--refine-mute-cells must be >= 0"),
    (["--refine", "--no-misfit"], "drop --no-misfit"),
    (["--refine", "--split", "nope"], "no 'nope' split"),
])
def test_bad_refinement_input_is_one_line_exit_2_nothing_written(tiny_run, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert E.main([str(tiny_run), "--out", str(out), "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_refine_needs_a_split_evaluation(tiny_run):
    run = load_run(tiny_run, "cpu")
    evaluation = evaluate_models(run, np.full((1, 32, 33), 2500.0, dtype=np.float32), misfit=False,
                                   progress=False)
    with pytest.raises(ValueError, match="needs a split evaluation"):
        refine_split(evaluation)
