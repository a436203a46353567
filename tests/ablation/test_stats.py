"""The ablation's difference test: pooled standard error, Student's t star, and no star on one degree of freedom."""

import math

import pytest

from fwi.ablation.stats import difference, pooled_variance


def _rows(values: dict[str, list[float]]) -> list[dict]:
    return [{"variant": v, "seed": s, "status": "ok", "mae": x} for v, xs in values.items() for s, x in enumerate(xs)]


def _group(variant: str, xs: list[float]) -> dict:
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"variant": variant, "n": len(xs), "mae": mean, "mae_std": std}


def test_one_degree_of_freedom_gives_no_star_even_when_the_seeds_agree_by_chance():
    values = {"none": [0.10000, 0.10001], "se": [0.12]}  # baseline seeds agree to 1e-5: a tiny noise estimate
    groups = [_group(v, xs) for v, xs in values.items()]
    pooled = pooled_variance(groups, "mae")
    assert pooled is not None and pooled[1] == 1
    d = difference(groups[1], groups[0], _rows(values), "mae", pooled)
    assert d["diff"] == pytest.approx(0.12 - 0.100005)
    assert d["se"] == pytest.approx(math.sqrt(0.5e-10 * (1 + 1 / 2)))  # s_p^2 = (1e-5)^2 / 2
    assert d["significant"] is None  # |diff| / se ~ 2000 would pass t(1) = 12.71, but one pair is no noise estimate
    assert d["paired"] == {0: pytest.approx(0.12 - 0.1)}


@pytest.mark.parametrize(("other", "star"), [([0.20, 0.21], True), ([0.11, 0.12], False)])
def test_two_degrees_of_freedom_star_against_students_t(other, star):
    values = {"none": [0.10, 0.11], "se": other}
    groups = [_group(v, xs) for v, xs in values.items()]
    variance, dof = pooled_variance(groups, "mae")
    assert dof == 2 and variance == pytest.approx(0.005 ** 2 * 2)  # each pair differs by 0.01: variance 5e-5
    d = difference(groups[1], groups[0], _rows(values), "mae", (variance, dof))
    se = math.sqrt(variance * (1 / 2 + 1 / 2))
    assert d["se"] == pytest.approx(se)
    assert d["significant"] is (abs(d["diff"]) > 4.302653 * se) is star  # t(2), two-sided 5 %
