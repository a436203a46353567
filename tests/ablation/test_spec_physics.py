"""Ablation specs: a variant's own physics weight and physics settings (the physics-weight sweep)."""

from pathlib import Path

import pytest

from fwi.ablation.spec import build_ablation

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")


def spec(**extra):
    return {"name": "sweep", "base": TINY, "physics_weight": 10.0, "baseline": "w10",
            "physics_overrides": {"physics_start_epoch": 1, "physics_shots": 1},
            "grid": {"variants": [{"label": "w1", "physics_weight": 1.0},
                                  {"label": "w10"},
                                  {"label": "w3-early", "physics_weight": 3.0, "physics_start_epoch": 0}],
                     "physics": [True], "seeds": [0]}, **extra}


def test_variants_set_their_own_weight_and_win_over_the_physics_overrides():
    cells = {c.label: c.config["loss"] for c in build_ablation(spec()).cells}
    assert {k: v["physics_weight"] for k, v in cells.items()} == {"w1": 1.0, "w10": 10.0, "w3-early": 3.0}
    assert [cells[k]["physics_start_epoch"] for k in ("w1", "w10", "w3-early")] == [1, 1, 0]
    assert all(v["physics_shots"] == 1 for v in cells.values())


def test_a_weight_without_physics_cells_and_a_missing_weight_are_errors():
    bad = spec(extra=[{"variant": {"label": "off", "physics_weight": 2.0}, "physics": False}])
    with pytest.raises(ValueError, match="'off' sets physics_weight but has cells without physics"):
        build_ablation(bad)
    with pytest.raises(ValueError, match="positive physics_weight .* for variant 'w10'"):
        build_ablation({**spec(), "physics_weight": None})
    with pytest.raises(ValueError, match="sets 'physics_weight', which the ablation sets"):
        build_ablation({**spec(), "overrides": {"physics_weight": 2.0}})


def branched(**variant_changes):
    """Weight 3 from epoch 2 of 3, branched from the no-physics trunk ``off`` after epoch 2 (listed first)."""
    variant = {"label": "w3", "physics_weight": 3.0, "branch_of": "off", "branch_at": 2, **variant_changes}
    return {"name": "sweep", "base": TINY, "baseline": "off", "overrides": {"epochs": 3},
            "physics_overrides": {"physics_start_epoch": 2, "physics_shots": 1},
            "grid": {"variants": [variant, {"label": "w1", "physics_weight": 1.0, "branch_of": "off", "branch_at": 1,
                                            "physics_start_epoch": 1}], "physics": [True], "seeds": [0, 1]},
            "extra": [{"variant": {"label": "off"}, "seeds": [0, 1], "physics": False}]}


def test_branch_cells_start_from_their_trunks_kept_epochs_of_the_same_seed(tmp_path):
    cells = {c.run: c for c in build_ablation(branched(), out=tmp_path).cells}
    runs = tmp_path / "sweep" / "runs"
    for seed in (0, 1):
        trunk = cells[f"sweep-off-nophys-s{seed}"].config["run"]
        assert trunk["keep_epochs"] == [1, 2] and trunk["branch_from"] == ""
        assert cells[f"sweep-w3-phys-s{seed}"].config["run"]["branch_from"] == str(
            runs / f"sweep-off-nophys-s{seed}" / "epoch-2.pt")
        assert cells[f"sweep-w1-phys-s{seed}"].config["run"]["branch_from"].endswith(f"off-nophys-s{seed}/epoch-1.pt")


@pytest.mark.parametrize("change, message", [
    ({"branch_at": 3}, r"the physics term acts before epoch 4 in this run"),
    ({"physics_start_epoch": 1}, r"the physics term acts before epoch 3"),
    ({"lr": 0.5}, r"'w3' cannot branch from 'off' after epoch 2: optim.lr"),
    ({"branch_of": "nope"}, r"branches from 'nope', which has 0 cells with seed 0"),
    ({"branch_at": None}, r"needs both branch_of .* and branch_at"),
    ({"branch_from": "x.pt"}, r"sets 'branch_from', which the ablation sets .* branch_of"),
])
def test_branches_that_cannot_follow_their_trunk_are_spec_errors(change, message):
    spec = branched(**change)
    if change.get("branch_at", 0) is None:
        del spec["grid"]["variants"][0]["branch_at"]
    with pytest.raises(ValueError, match=message):
        build_ablation(spec)


def test_the_runner_trains_the_trunk_before_its_branches(tiny_dataset, tmp_path, monkeypatch):
    """The branch is listed first; it still starts from the trunk's epoch-2.pt and repeats the trunk's 2 epochs."""
    import json

    from fwi import ablate

    spec = branched()
    spec["grid"]["variants"] = spec["grid"]["variants"][:1]
    spec["grid"]["seeds"], spec["extra"][0]["seeds"] = [0], [0]
    spec["overrides"].update(data=str(tiny_dataset), misfit_samples=0)
    spec.update(evaluate=False, wandb="disabled")
    path = tmp_path / "sweep.yaml"
    path.write_text(__import__("yaml").safe_dump(spec))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ablate.main([str(path), "--out", str(tmp_path)]) == 0
    runs = tmp_path / "sweep" / "runs"
    trunk, branch = ([json.loads(x) for x in (runs / r / "metrics.jsonl").read_text().splitlines()]
                     for r in ("sweep-off-nophys-s0", "sweep-w3-phys-s0"))
    assert (runs / "sweep-off-nophys-s0" / "epoch-2.pt").exists()
    assert [r["val/mae"] for r in branch[:2]] == [r["val/mae"] for r in trunk[:2]]
    assert branch[2]["train/physics_weight_now"] == 3.0 and branch[2]["val/mae"] != trunk[2]["val/mae"]
