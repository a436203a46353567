"""Branches: a run started from another run's kept epoch (``--keep-epochs`` / ``--branch-from``) trains what a run
of its config trained from scratch would, and refuses a trunk whose first epochs it would not have trained alike."""

import json
from pathlib import Path

import pytest
import torch

from fwi.checkpoint import load_checkpoint, save_checkpoint
from fwi.config import load_config
from fwi.continuation import branch_conflicts, physics_off_before, snapshot_epoch, snapshot_name
from fwi.train import main, train

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
TIMING = ("epoch_time_s", "samples_per_s")


def config(dataset, out, name, physics_weight=0.0, **run):
    """The tiny config for 3 epochs; with physics from epoch 3 (start 2, no ramp) when ``physics_weight`` > 0."""
    cfg = load_config(TINY)
    cfg.data.data = str(dataset)
    cfg.run.out, cfg.run.name, cfg.run.wandb, cfg.run.misfit_samples = str(out), name, "disabled", 0
    cfg.optim.epochs = 3
    cfg.loss.physics_weight, cfg.loss.physics_start_epoch, cfg.loss.physics_ramp_epochs = physics_weight, 2, 0
    cfg.loss.physics_shots = 1
    for key, value in run.items():
        setattr(cfg.run, key, value)
    return cfg.validate()


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trunk(tiny_dataset, tmp_path_factory):
    """A 3-epoch run without physics that keeps epoch-2.pt."""
    out = tmp_path_factory.mktemp("branch-runs")
    return train(config(tiny_dataset, out, "trunk", keep_epochs=(2,)))


def test_a_branch_trains_what_a_run_of_its_config_trains_from_scratch(tiny_dataset, trunk, tmp_path):
    snapshot = load_checkpoint(trunk / "epoch-2.pt")
    assert snapshot["epoch"] == 2 and len(snapshot["history"]) == 2
    scratch = train(config(tiny_dataset, tmp_path, "scratch", physics_weight=3.0))
    branch = train(config(tiny_dataset, tmp_path, "branch", physics_weight=3.0, branch_from=str(trunk / "epoch-2.pt")))
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(scratch / name), load_checkpoint(branch / name)
        assert a["epoch"] == b["epoch"] and same_weights(a["model"], b["model"]), name
    assert records(branch) == records(scratch)
    assert records(branch)[:2] == records(trunk)[:2]  # the trunk's epochs, then physics made a difference:
    assert records(branch)[2]["train/physics_weight_now"] == 3.0 != records(trunk)[2]["train/physics_weight_now"]
    assert not same_weights(load_checkpoint(trunk / "last.pt")["model"], load_checkpoint(branch / "last.pt")["model"])
    summary = json.loads((branch / "summary.json").read_text())
    assert summary["branch_from"] == str(trunk / "epoch-2.pt") and "branch_from" not in json.loads(
        (scratch / "summary.json").read_text())
    assert load_checkpoint(branch / "last.pt")["config"]["loss"]["physics_weight"] == 3.0  # its own config


def test_a_branch_keeps_the_trunks_best_epoch_when_it_came_earlier(tiny_dataset, trunk, tmp_path):
    """A snapshot whose best epoch precedes it carries that epoch's weights; the branch's best.pt is them until the
    branch does better (here never: the recorded best is unbeatable)."""
    state = load_checkpoint(trunk / "epoch-2.pt")
    earlier = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in state["model"].items()}
    forged = tmp_path / "epoch-2.pt"
    save_checkpoint({**{k: v for k, v in state.items() if k != "format"}, "best_model": earlier, "best_epoch": 1,
                     "best": -1.0}, forged)
    branch = train(config(tiny_dataset, tmp_path, "branch", physics_weight=3.0, branch_from=str(forged)))
    best = load_checkpoint(branch / "best.pt")
    assert best["epoch"] == 1 and same_weights(best["model"], earlier)
    assert json.loads((branch / "summary.json").read_text())["best_epoch"] == 1


@pytest.mark.parametrize("flags, message", [
    (["--physics-start-epoch", "1"], "the physics term acts before epoch 3 in this run"),
    (["--lr", "0.5"], "optim.lr (0.002 -> 0.5)"),
    (["--epochs", "2"], "this run has only 2 epochs"),
])
def test_a_branch_that_would_not_have_trained_the_trunks_epochs_is_refused(trunk, tmp_path, capsys, flags, message):
    argv = ["--config", str(TINY), "--data", load_checkpoint(trunk / "last.pt")["data"], "--out", str(tmp_path),
            "--name", "branch", "--wandb", "disabled", "--no-progress", "--epochs", "3", "--misfit-samples", "0",
            "--physics-weight", "3", "--physics-start-epoch", "2", "--physics-shots", "1",
            "--branch-from", str(trunk / "epoch-2.pt"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --branch-from") and message in err[0], err
    assert not (tmp_path / "branch").exists()  # nothing written


def test_a_missing_snapshot_and_a_snapshot_at_the_last_epoch_are_errors(tiny_dataset, tmp_path, capsys):
    assert main(["--config", str(TINY), "--data", str(tiny_dataset), "--out", str(tmp_path), "--name", "b",
                 "--wandb", "disabled", "--branch-from", str(tmp_path / "nope" / "epoch-2.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "b").exists()
    cfg = load_config(TINY)
    cfg.optim.epochs, cfg.run.keep_epochs = 2, (2,)  # after the last epoch: that is last.pt
    with pytest.raises(ValueError, match=r"keep_epochs \[2\]: every epoch must be in 1..1"):
        cfg.validate()

def test_physics_settings_may_differ_only_while_the_term_is_off_in_both_runs():
    off = load_config(TINY).to_dict()
    late = json.loads(json.dumps(off))
    late["loss"].update(physics_weight=10.0, physics_start_epoch=22, physics_shots=1)
    assert physics_off_before(off, 22) and physics_off_before(late, 22) and not physics_off_before(late, 23)
    assert branch_conflicts(late, off, 22) == []
    conflicts = branch_conflicts(late, off, 23)
    assert "loss.physics_weight (0.0 -> 10.0)" in conflicts and "in this run" in conflicts[-1]
    assert branch_conflicts(off, late, 23)[-1].split(" in ")[1].startswith("the trunk")
    other = json.loads(json.dumps(late))
    other["model"]["attn"] = "se"
    assert branch_conflicts(other, off, 22) == ["model.attn ('none' -> 'se')"]


def test_snapshot_epoch_inverts_snapshot_name():
    assert [snapshot_epoch(f"runs/trunk/{snapshot_name(k)}") for k in (1, 17, 220)] == [1, 17, 220]
    assert [snapshot_epoch(p) for p in ("runs/trunk/last.pt", "best.pt", "epoch-x.pt", "epoch-3.pth")] == [None] * 4
