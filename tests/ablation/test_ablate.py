"""End-to-end test of `fwi.ablate` on the tiny smoke ablation (configs/ablation/tiny.yaml), W&B offline."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path

import pytest
import yaml

from fwi import ablate
from fwi.ablation.cli import select_cells
from fwi.ablation.plots import axis_range
from fwi.ablation.results import read_csv
from fwi.ablation.spec import Cell, build_ablation
from fwi.config import load_config
from fwi.data.generate import generate

REPO = Path(__file__).resolve().parents[2]
METRICS = ("mae", "rmse", "ssim", "mae_ms", "rmse_ms", "iou", "dice", "data_misfit")


def tiny_spec(data: Path, **changes) -> dict:
    spec = yaml.safe_load((REPO / "configs" / "ablation" / "tiny.yaml").read_text())
    spec["base"] = str(REPO / "configs" / "tiny.yaml")
    spec["overrides"]["data"] = str(data)
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """The tiny ablation plus one cell that fails at runtime (batch larger than the 4-sample train split), run once."""
    tmp = tmp_path_factory.mktemp("ablate")
    data = generate(tmp / "tiny.h5", "tiny", sizes={"train": 4, "val": 2, "test": 2}, progress=False)
    # evaluate: false keeps the test fast; the test-split path is covered by test_report_prefers_test_metrics
    spec = tiny_spec(data, evaluate=False, notes="Chosen so that **this note** reaches the report.",
                     extra=[{"variant": {"label": "toobig", "batch_size": 64}, "seeds": [0]}])
    spec_path = tmp / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp / "experiments"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("OMP_NUM_THREADS", "1")
        rc = ablate.main([str(spec_path), "--out", str(out), "--jobs", "2"])  # two cells at a time
    return {"rc": rc, "dir": out / "tiny", "spec": spec_path, "out": out, "data": data}


def rows_of(abl_dir: Path) -> list[dict]:
    return read_csv(abl_dir / "results.csv")


def test_one_row_per_cell_and_failure_recorded(ablation):
    assert ablation["rc"] == 1  # one cell failed, the others finished
    rows = rows_of(ablation["dir"])
    assert [(r["label"], r["seed"]) for r in rows] == [("none", 0), ("none", 1), ("se-encskip", 0),
                                                        ("se-encskip", 1), ("toobig", 0)]
    for r in rows[:4]:
        assert r["status"] == "ok", r
        assert r["source"] == "val"
        for k in (*METRICS, "step_ms"):
            assert math.isfinite(r[k]), (r["run"], k)
        assert r["params"] > 0 and r["flops"] > 0 and r["best_epoch"] == 1 and r["epochs"] == 1
    assert rows[2]["flops"] > rows[0]["flops"] and rows[2]["params"] > rows[0]["params"]  # SE blocks add both
    failed = rows[4]
    assert failed["status"] == "failed" and failed["mae"] is None
    error = (ablation["dir"] / "runs" / failed["run"] / "error.txt").read_text()
    assert error.startswith("exit code 2") and "smaller than one batch" in error
    report = (ablation["dir"] / "report.md").read_text()
    assert "## Failed cells" in report and f"`{failed['run']}`" in report.split("## Failed cells")[1]
    for png in ("metrics_bars.png", "accuracy_vs_time.png"):
        assert (ablation["dir"] / png).stat().st_size > 1000


def test_report_variants_and_baseline_difference(ablation):
    rows = [r for r in rows_of(ablation["dir"]) if r["status"] == "ok"]
    report = (ablation["dir"] / "report.md").read_text()
    assert f"preset **tiny** (`{ablation['data']}`" in report and "python -m fwi.ablate" in report
    assert "validation** split" in report
    for variant in ("none", "se-encskip", "toobig"):
        assert f"`{variant}`" in report
    diff_section = report.split("## Difference to the baseline `none`")[1].split("## Ranking")[0]
    line = next(ln for ln in diff_section.splitlines() if ln.startswith("| `se-encskip` |"))
    for key, fmt in (("mae", "+.4f"), ("ssim", "+.4f"), ("mae_ms", "+.1f")):
        mean = {v: statistics.fmean(r[key] for r in rows if r["label"] == v) for v in ("none", "se-encskip")}
        assert format(mean["se-encskip"] - mean["none"], fmt) in line, (key, line)
    # the standard error from the seed variance pooled over both variants (2 + 2 runs: 2 degrees of freedom)
    groups = {v: [r["mae"] for r in rows if r["label"] == v] for v in ("none", "se-encskip")}
    pooled = sum(statistics.variance(x) for x in groups.values()) / 2
    diff = statistics.fmean(groups["se-encskip"]) - statistics.fmean(groups["none"])
    se = math.sqrt(pooled * (1 / 2 + 1 / 2))
    star = abs(diff) > 4.302653 * se  # Student's t, two-sided 5 %, 2 degrees of freedom
    assert f"{diff:+.4f} ± {se:.4f}{' *' if star else ''} |" in line, line
    assert "degrees of freedom (here 2: t = 4.30)" in diff_section
    paired = {r["seed"]: r["mae"] for r in rows if r["label"] == "se-encskip"}
    base = {r["seed"]: r["mae"] for r in rows if r["label"] == "none"}
    assert f"s1: {paired[1] - base[1]:+.4f}" in line
    per_variant = report.split("## Per variant")[1].split("## Difference")[0]
    none = [r["mae"] for r in rows if r["label"] == "none"]
    assert f"{statistics.fmean(none):.4f} ± {statistics.stdev(none):.4f}" in per_variant
    ranking = report.split("## Ranking")[1]
    assert "By MAE" in ranking and "By IoU" in ranking
    iou = {r["seed"]: r["iou"] for r in rows if r["label"] == "none"}
    assert (f"`none` reaches a salt IoU of {statistics.fmean(iou.values()):.3f} on the val split "
            f"(seed 0: {iou[0]:.3f}, seed 1: {iou[1]:.3f})") in report
    assert "## Preset\n\nChosen so that **this note** reaches the report." in report


def test_wandb_summary_run_offline(ablation):
    runs = sorted((ablation["dir"] / "wandb").glob("offline-run-*"))
    assert runs, "no offline summary run"
    assert list(runs[-1].glob("run-*.wandb")) and b"ablation" in next(runs[-1].glob("run-*.wandb")).read_bytes()
    tables = list(runs[-1].glob("files/media/table/ablation_*.table.json"))
    assert tables, "the ablation table was not logged"
    table = json.loads(tables[0].read_text())
    kinds = [row[table["columns"].index("row")] for row in table["data"]]
    assert kinds.count("run") == 5 and kinds.count("variant") == 3
    # every cell is a run of the same W&B group
    cell_run = ablation["dir"] / "runs" / "tiny-none-nophys-s0" / "wandb"
    assert list(cell_run.glob("offline-run-*/run-*.wandb"))


def test_report_subcommand_rebuilds_identical_csv(ablation, capsys):
    abl_dir = ablation["dir"]
    before = (abl_dir / "results.csv").read_bytes()
    report_before = (abl_dir / "report.md").read_text()
    for name in ("results.csv", "report.md", "metrics_bars.png"):
        (abl_dir / name).unlink()
    assert ablate.main(["report", str(abl_dir)]) == 0
    assert (abl_dir / "results.csv").read_bytes() == before
    assert (abl_dir / "report.md").read_text() == report_before
    assert (abl_dir / "metrics_bars.png").exists()
    # notes and findings written into the spec after the runs started reach the rebuilt report (only the prose is
    # re-read); the findings come before the preset
    spec_text = ablation["spec"].read_text()
    spec = yaml.safe_load(spec_text)
    assert "## Findings" not in report_before
    ablation["spec"].write_text(yaml.safe_dump({**spec, "notes": "Measured later.", "findings": "SE wins.",
                                                "epochs_note": "ignored"}))
    try:
        assert ablate.main(["report", str(abl_dir)]) == 0
        report = (abl_dir / "report.md").read_text()
        assert "## Preset\n\nMeasured later." in report and "this note" not in report
        assert report.index("## Findings\n\nSE wins.\n") < report.index("## Preset")
        assert report.replace("## Findings\n\nSE wins.\n\n", "").replace(
            "Measured later.", "Chosen so that **this note** reaches the report.") == report_before
    finally:
        ablation["spec"].write_text(spec_text)
        ablate.main(["report", str(abl_dir)])
    assert not list(abl_dir.glob(".*.tmp*"))  # atomic writes leave no temporary files


def test_second_invocation_skips_finished_cells(ablation):
    runs = ablation["dir"] / "runs"
    ok = [r["run"] for r in rows_of(ablation["dir"]) if r["status"] == "ok"]
    mtimes = {run: os.stat(runs / run / "best.pt").st_mtime_ns for run in ok}
    logs = {run: (runs / run / "ablate.out.log").read_text() for run in ok}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        rc = ablate.main([str(ablation["spec"]), "--out", str(ablation["out"]), "--wandb", "disabled"])
    assert rc == 1  # the failing cell is retried and fails again
    for run in ok:
        assert os.stat(runs / run / "best.pt").st_mtime_ns == mtimes[run]
        assert (runs / run / "ablate.out.log").read_text() == logs[run]  # no new training command
    assert [r["status"] for r in rows_of(ablation["dir"])] == ["ok"] * 4 + ["failed"]


def test_dry_run_lists_cells(ablation, capsys):
    assert ablate.main([str(ablation["spec"]), "--out", str(ablation["out"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5 cells" in out and out.count("[     ok]") == 4 and "[ failed] tiny-toobig-nophys-s0" in out
    assert "attn=se encoder_attn=true skip_attn=true" in out and "cell.yaml" in out


def test_only_runs_the_matching_cells(ablation, capsys):
    base = [str(ablation["spec"]), "--out", str(ablation["out"])]
    assert ablate.main([*base, "--dry-run", "--only", "se-encskip", "--only", "*-s1"]) == 0
    listed = re.findall(r"\] (tiny-\S+)", capsys.readouterr().out)
    assert listed == ["tiny-none-nophys-s1", "tiny-se-encskip-nophys-s0", "tiny-se-encskip-nophys-s1"]
    # without the failing cell nothing is retried, so the run succeeds (the full ablation exits 1)
    recorded = json.loads((ablation["dir"] / "ablation.json").read_text())["command"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        assert ablate.main([*base, "--wandb", "disabled", "--jobs", "1", "--only", "tiny-none-*"]) == 0
    # a partial run keeps the full run's reproduce command
    assert json.loads((ablation["dir"] / "ablation.json").read_text())["command"] == recorded
    assert "--only" not in recorded and "--jobs 1" not in recorded
    assert ablate.main([*base, "--dry-run", "--only", "nope*"]) == 2
    assert "--only nope* matches no cell; the cells are: tiny-none-nophys-s0" in capsys.readouterr().err


def test_only_matches_the_spec_label_of_a_physics_cell():
    """A physics cell's variant is its label with +phys; the label as written in the spec selects it too."""
    cells = [Cell("w10-last3", True, 0, "grid", {}, run="sweep-w10-last3-phys-s0"),
             Cell("w1-last3", True, 0, "grid", {}, run="sweep-w1-last3-phys-s0"),
             Cell("nophys", False, 0, "extra", {}, run="sweep-nophys-nophys-s0")]
    assert [c.run for c in select_cells(cells, ["w10-last3", "nophys"])] == [cells[0].run, cells[2].run]
    assert [c.label for c in select_cells(cells, ["*+phys"])] == ["w10-last3", "w1-last3"]
    assert [c.label for c in select_cells(cells, ["w1-last3+phys"])] == ["w1-last3"]
    with pytest.raises(ValueError, match="matches no cell"):
        select_cells(cells, ["w3-*"])


def test_only_matches_the_run_name_without_the_ablation_name():
    """``none-n1500-nophys-s0`` selects ``learning_curve-none-n1500-nophys-s0`` (the name a user reads in the run
    folder, less the prefix every cell shares); a partial name still needs a wildcard."""
    spec = {"name": "lc", "base": "configs/quick.yaml",
            "grid": {"variants": [{"label": "none"}, {"label": "se", "attn": "se", "skip_attn": True}],
                     "seeds": [0, 1]}}
    cells = build_ablation(spec).cells
    assert [c.run for c in cells][:2] == ["lc-none-nophys-s0", "lc-none-nophys-s1"]
    assert [c.run for c in select_cells(cells, ["se-nophys-s1"])] == ["lc-se-nophys-s1"]
    assert [c.run for c in select_cells(cells, ["*-s0"])] == ["lc-none-nophys-s0", "lc-se-nophys-s0"]
    with pytest.raises(ValueError, match="matches no cell"):
        select_cells(cells, ["se-nophys"])


@pytest.mark.parametrize("change, message", [
    ({"nmae": "x"},
     r"unknown key\(s\) \['nmae'\] in ablation spec .*valid keys: name, description, notes, findings, base"),
    ({"grid": {"variants": [{"label": "a", "atn": "se"}]}},
     r"unknown key\(s\) \['atn'\] in grid.variants\[0\]; valid keys: label, physics_weight, branch_of, branch_at, "
     r"data, .*attn, encoder_attn"),
    ({"grid": {"variants": [{"label": "none"}], "seed": [0]}},
     r"unknown key\(s\) \['seed'\] in grid; valid keys: variants, physics, seeds"),
    ({"extra": [{"variant": {"label": "x"}, "seed": [0]}]}, r"in extra\[0\]; valid keys: variant, seeds, physics"),
    ({"overrides": {"seed": 3}}, r"overrides sets 'seed'.*use the seeds factor"),
    # the resolved Config of each cell is validated up front
    ({"grid": {"variants": [{"label": "none"}, {"label": "se", "attn": "se"}]}}, r"variant 'se'.*no place for it"),
    ({"grid": {"variants": [{"label": "none"}], "physics": [False, True]}},
     r"physics: true need a positive physics_weight \(top level, or the variant.s own\), got None for variant .none."),
    ({"baseline": "plain"}, r"baseline 'plain' is not a variant label"),
    ({"test_families": {"shifted": {"data": "s.h5", "preset": "nope"}}},
     r"test_families.shifted: unknown preset 'nope'; presets: .*tiny"),
    ({"test_families": {"shifted": {"preset": "tiny"}}}, r"test_families.shifted needs 'data'"),
    ({"test_families": {"test": {"data": "s.h5", "preset": "tiny"}}}, r"a family needs a short name other than 'test'"),
])
def test_spec_errors(tmp_path, capsys, change, message):
    spec = tiny_spec(tmp_path / "missing.h5", **change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert ablate.main([str(path), "--out", str(tmp_path / "exp"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0]), err
    assert not (tmp_path / "exp").exists()


def test_test_family_generated_evaluated_and_reported(ablation, tmp_path):
    """A spec's test family: the runner generates its file (preset tiny, another data seed), evaluates each cell
    there with the real fwi.evaluate as soon as it is trained (before the next cell starts), results.csv carries that
    evaluation's metrics and the report a section; a second invocation evaluates nothing again."""
    from fwi.data.store import read_info

    out = tmp_path / "experiments"
    family = tmp_path / "other.h5"
    spec = yaml.safe_load(ablation["spec"].read_text())
    spec.update(evaluate=True, test_families={"other": {"data": str(family), "preset": "tiny", "seed": 5}})
    spec_path = tmp_path / "family.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    argv = [str(spec_path), "--out", str(out), "--wandb", "disabled", "--only", "none-*", "--jobs", "1"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        assert ablate.main(argv) == 0
        info = read_info(family)
        assert str(info.attrs["seed"]) == "5" and info.sizes["test"] == 4
        runs = out / "tiny" / "runs"
        first, second = runs / "tiny-none-nophys-s0", runs / "tiny-none-nophys-s1"
        for name in ("eval-test", "eval-other-test"):  # evaluated before the second cell began training
            assert os.stat(first / name / "metrics.json").st_mtime_ns < os.stat(second / "config.yaml").st_mtime_ns
            assert (second / name / "metrics.json").is_file()
        run_dir = first
        test = json.loads((run_dir / "eval-test" / "metrics.json").read_text())
        other = json.loads((run_dir / "eval-other-test" / "metrics.json").read_text())
        assert other["n"] == 4 and other["mean"]["mae_ms"] != test["mean"]["mae_ms"]  # other models
        row = next(r for r in read_csv(out / "tiny" / "results.csv") if r["run"] == run_dir.name)
        for key in ("mae_ms", "ssim", "iou", "data_misfit"):
            assert row[f"other/{key}"] == pytest.approx(other["mean"][key], rel=1e-12)
        assert row["source"] == "test" and row["mae_ms"] == pytest.approx(test["mean"]["mae_ms"], rel=1e-12)
        report = (out / "tiny" / "report.md").read_text()
        section = report[report.index("## Test family `other`"):report.index("## Failed cells")]
        ratio = other["mean"]["mae_ms"] / test["mean"]["mae_ms"]
        line = next(ln for ln in section.splitlines() if ln.startswith("| `none` |"))
        other2 = json.loads((second / "eval-other-test" / "metrics.json").read_text())["mean"]["mae_ms"]
        test2 = json.loads((second / "eval-test" / "metrics.json").read_text())["mean"]["mae_ms"]
        ratio = (ratio + other2 / test2) / 2
        mean = (other["mean"]["mae_ms"] + other2) / 2
        std = statistics.stdev([other["mean"]["mae_ms"], other2])
        assert line.startswith(f"| `none` | 2 | {mean:.1f} ± {std:.1f} | ") and line.endswith(f"| {ratio:.2f} |")
        assert "| `none` | 2 |" in section and "| `se-encskip` |" not in section  # not trained here
        assert ablate.main(argv) == 0
    log = (run_dir / "evaluate-other-test.out.log").read_text().splitlines()
    assert sum(ln.startswith("$ ") for ln in log) == 1  # one evaluation command, none the second time


def test_report_prefers_test_metrics(ablation):
    """A run with ``eval-test/metrics.json`` (as written by fwi.evaluate) is reported on the test split."""
    abl_dir = ablation["dir"]
    run_dir = abl_dir / "runs" / "tiny-none-nophys-s0"
    mean = {"mae": 0.25, "rmse": 0.3, "ssim": 0.5, "mae_ms": 350.0, "rmse_ms": 420.0, "mse": 0.09, "mse_ms": 1.7e5,
            "iou": 0.4, "dice": 0.55, "data_misfit": 0.7}
    (run_dir / "eval-test").mkdir()
    (run_dir / "eval-test" / "metrics.json").write_text(json.dumps(
        {"split": "test", "n": 2, "mean": mean, "pooled": {"rmse": 0.31, "rmse_ms": 430.0}}))
    try:
        assert ablate.main(["report", str(abl_dir)]) == 0
        row = rows_of(abl_dir)[0]
        assert row["source"] == "test" and row["mae"] == 0.25 and row["rmse"] == 0.31 and row["iou"] == 0.4
        assert [r["source"] for r in rows_of(abl_dir)[1:4]] == ["val"] * 3
        assert "mixed sources" in (abl_dir / "report.md").read_text()
    finally:
        (run_dir / "eval-test" / "metrics.json").unlink()
        (run_dir / "eval-test").rmdir()


def test_cell_config_written_and_read_back(tmp_path):
    """A cell's cell.yaml, read back with load_config, equals its resolved config, with the spec's values in it."""
    from fwi.ablation.runner import write_cell_config

    spec = tiny_spec(tmp_path / "tiny.h5")
    abl = build_ablation(spec, out=tmp_path / "exp")
    cell = next(c for c in abl.cells if c.label == "se-encskip" and c.seed == 1)
    path = write_cell_config(cell, tmp_path)
    cfg = load_config(path)
    assert cfg.to_dict() == abl.cell_config(cell).to_dict()
    assert (cfg.model.attn, cfg.model.encoder_attn, cfg.model.skip_attn, cfg.run.name) == \
        ("se", True, True, cell.run)
    text = path.read_text()
    write_cell_config(cell, tmp_path)
    assert path.read_text() == text  # deterministic: --resume sees the same config


def test_submitit_local_launcher_reports_return_code(tmp_path):
    """submitit's LocalExecutor runs a real command that writes a file; its exit code comes back."""
    from fwi.launch import Command, LaunchOptions, launch

    out = tmp_path / "x.txt"
    cmds = [Command(["python", "-c", f"open({str(out)!r}, 'w').write('hi'); raise SystemExit(3)"]), ["true"]]
    rcs = launch(cmds, LaunchOptions(launcher="submitit-local", jobs=2, folder=str(tmp_path / "submitit")))
    assert rcs == [3, 0] and out.read_text() == "hi"


def test_axis_range_leaves_out_only_far_outliers():
    # 14 U-Net-like MAEs within 0.007 and one InversionNet-like 0.181 (the recorded ablation's shape)
    near = [0.1424, 0.1436, 0.1440, 0.1441, 0.1443, 0.1444, 0.1447, 0.1459, 0.1465, 0.1465, 0.1470, 0.1471, 0.1477,
            0.1492]
    lo, hi = axis_range(near + [0.181], keep=[0.1465])
    assert lo < min(near) and hi > max(near) and hi < 0.181
    pad = 0.08 * (max(near) - min(near))
    assert lo == pytest.approx(min(near) - pad) and hi == pytest.approx(max(near) + pad)
    # the baseline is never left out (so here nothing is); nothing is left out of a tight set or a small one
    assert axis_range(near + [0.181], keep=[0.181]) is None
    assert axis_range(near) is None
    assert axis_range([0.14, 0.15, 0.30]) is None  # fewer than 5 values: a spread, not an outlier
    assert axis_range([0.1] * 6 + [0.5]) is None  # zero MAD: no scale to judge by


def test_report_shows_metrics_after_fwi_refinement(ablation, tmp_path):
    """Runs with a refined evaluation (``fwi.evaluate RUN --refine``, real FWI) get the after-FWI columns and report
    section; without the refined sections the report and results.csv are those of today, byte for byte."""
    import csv
    import shutil

    from fwi import evaluate
    from fwi.ablation.results import COLUMNS, REFINED_COLUMNS

    abl_dir = tmp_path / "tiny"
    shutil.copytree(ablation["dir"], abl_dir)
    refined_runs = {"none": "tiny-none-nophys-s0", "se-encskip": "tiny-se-encskip-nophys-s0"}
    sections = {}
    for label, run in refined_runs.items():
        assert evaluate.main([str(abl_dir / "runs" / run), "--device", "cpu", "--no-figures", "--refine",
                              "--refine-iterations", "2", "--refine-schedule", "full", "--refine-indices", "0:2"]) == 0
        sections[label] = json.loads((abl_dir / "runs" / run / "eval-test" / "metrics.json").read_text())["refined"]
    assert ablate.main(["report", str(abl_dir)]) == 0
    csv_text, report = (abl_dir / "results.csv").read_text(), (abl_dir / "report.md").read_text()
    assert csv_text.splitlines()[0] == ",".join((*COLUMNS, *REFINED_COLUMNS))
    rows = {r["run"]: r for r in read_csv(abl_dir / "results.csv")}
    for label, run in refined_runs.items():
        r, s = rows[run], sections[label]
        assert r["source"] == "test" and r["fwi_n"] == 2 and r["fwi_setup"] == "velocity 2 it full Hz models 0-1"
        for key in ("mae_ms", "ssim", "iou", "data_misfit"):
            assert r[f"fwi_{key}_before"] == pytest.approx(s["before"]["mean"][key], rel=1e-12)
            assert r[f"fwi_{key}_after"] == pytest.approx(s["mean"][key], rel=1e-12)
        assert r["fwi_data_misfit_after"] < r["fwi_data_misfit_before"]  # FWI fitted the data
    assert all(r["fwi_n"] is None for run, r in rows.items() if run not in refined_runs.values())
    section = report[report.index("## After FWI refinement"):report.index("## Failed cells")]
    assert "2 of 4 finished runs refined" in section and "`velocity 2 it full Hz models 0-1`" in section
    line = next(ln for ln in section.splitlines() if ln.startswith("| `se-encskip` |"))
    se, none = sections["se-encskip"], sections["none"]
    assert f"{se['before']['mean']['mae_ms']:.1f} → {se['mean']['mae_ms']:.1f}" in line
    assert f"{se['before']['mean']['data_misfit']:.4f} → {se['mean']['data_misfit']:.4f}" in line
    assert line.endswith(f"| {se['mean']['mae_ms'] - none['mean']['mae_ms']:+.1f} | "
                         f"{se['mean']['iou'] - none['mean']['iou']:+.4f} |")
    # the refined sections removed: the report loses exactly its after-FWI section, results.csv its columns
    for run in refined_runs.values():
        path = abl_dir / "runs" / run / "eval-test" / "metrics.json"
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "refined"},
                                   indent=1))
    assert ablate.main(["report", str(abl_dir)]) == 0
    assert (abl_dir / "report.md").read_text() == report.replace(section, "")
    plain = (abl_dir / "results.csv").read_text()
    assert plain.splitlines()[0] == ",".join(COLUMNS)
    assert list(csv.DictReader(plain.splitlines())) == [
        {k: v for k, v in r.items() if k in COLUMNS} for r in csv.DictReader(csv_text.splitlines())]


def test_recorded_ablation_rebuilds_byte_identically(tmp_path, monkeypatch):
    """``python -m fwi.ablate report experiments/salt70_attention`` (on a copy) reproduces the committed report,
    results.csv and figures byte for byte (its runs have no refined evaluation)."""
    import shutil

    recorded = REPO / "experiments" / "salt70_attention"
    copy = tmp_path / "salt70_attention"
    shutil.copytree(recorded, copy)
    names = ("report.md", "results.csv", "metrics_bars.png", "accuracy_vs_time.png")
    for name in names:
        (copy / name).unlink()
    monkeypatch.chdir(REPO)  # the spec path recorded in ablation.json (re-read for the prose) is relative
    assert ablate.main(["report", str(copy)]) == 0
    for name in names:
        assert (copy / name).read_bytes() == (recorded / name).read_bytes(), name


def test_report_of_some_seeds_only(ablation, capsys):
    """``report --seeds 1``: the same rows as the full results.csv, restricted to seed 1, in seeds-1/, and a report
    that says so; the full report is untouched; an unknown seed is one error line."""
    abl_dir = ablation["dir"]
    full_csv, full_report = (abl_dir / "results.csv").read_bytes(), (abl_dir / "report.md").read_text()
    assert ablate.main(["report", str(abl_dir), "--seeds", "1"]) == 0
    sub = rows_of(abl_dir / "seeds-1")
    assert sub and sub == [r for r in rows_of(abl_dir) if r["seed"] == 1]
    report = (abl_dir / "seeds-1" / "report.md").read_text()
    assert "Only the cells of seed(s) 1" in report and "seeds-1" not in full_report
    assert (abl_dir / "results.csv").read_bytes() == full_csv and (abl_dir / "report.md").read_text() == full_report
    capsys.readouterr()
    assert ablate.main(["report", str(abl_dir), "--seeds", "7"]) == 2
    assert "the ablation's seeds are 0, 1" in capsys.readouterr().err
