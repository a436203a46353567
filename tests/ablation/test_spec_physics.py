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
