"""fwi.invert.best (``RefineConfig.keep_best``): each model leaves a stage at its iterate of lowest stage misfit.

The setting: Adam with a step (0.2 km/s) so large that the misfit rises after the first step, on the tiny grid of
test_invert.py. The kept iterate is checked against an independent computation: the misfits an unguarded run
records, and a shorter unguarded run that stops at the kept iterate (Adam acts per model, so the first k steps of
any run are the same)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fwi.invert import RefineConfig, refine
from fwi.invert.config import ADDED_LATER, NOT_IN_KEY
from fwi.invert.misfits import l2
from fwi.invert.network_prior import NetworkPrior
from fwi.invert.params import VelocityCells
from fwi.invert.precondition import gaussian_smooth
from fwi.physics import forward_model
from tests.invert.test_invert import SURVEY, true_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the tiny grid's dispersion warnings
OVERSTEP = dict(iterations=6, schedule=(None,), optimizer="adam", lr=0.2, vmax=3300.0, mute_cells=1)


@pytest.fixture(scope="module")
def observed() -> torch.Tensor:
    return forward_model(true_model(2), SURVEY)


def starts() -> torch.Tensor:
    v = gaussian_smooth(true_model(2), 4.0)
    v[1] *= 0.97
    return v


def test_the_kept_iterate_is_the_stage_minimum_and_equals_the_shorter_run(observed):
    plain = refine(SURVEY, observed, starts(), None, RefineConfig(**OVERSTEP), progress=False)
    assert (plain.misfit_after > plain.misfit_before).any(), "the setting must overstep for the guard to matter"
    guarded = refine(SURVEY, observed, starts(), None, RefineConfig(**OVERSTEP, keep_best=True), progress=False)
    # the stage misfit of every iterate: the records (iterates 0..5) and the last one measured here (iterate 6)
    last = l2(forward_model(torch.as_tensor(plain.velocity), SURVEY), observed).numpy()
    misfits = np.array([h["misfit"] for h in plain.history] + [last.tolist()])  # (7, B)
    expected = misfits.argmin(0)
    assert guarded.history[-1]["kept_iteration"] == expected.tolist()
    assert (guarded.misfit_after <= guarded.misfit_before * (1 + 1e-5)).all()  # one full-band stage: never worse
    for i, k in enumerate(expected):
        if k == 0:
            reference = starts()[i].numpy()
        else:
            short = refine(SURVEY, observed, starts(), None, RefineConfig(**{**OVERSTEP, "iterations": int(k)}),
                           progress=False)
            reference = short.velocity[i]
        np.testing.assert_allclose(guarded.velocity[i], reference, atol=1e-2)
    # the guard only restores: the records of the steps are the unguarded run's
    assert [h["misfit"] for h in guarded.history] == [h["misfit"] for h in plain.history]


def test_resume_inside_a_guarded_stage_keeps_the_best_iterate_seen_before_the_stop(observed, tmp_path):
    """The stage's best iterate so far is part of the resumable state: a run stopped after 2 of 6 steps and resumed
    keeps an iterate from before the stop (here the start of model 0) exactly as an uninterrupted run does."""
    cfg = RefineConfig(**OVERSTEP, keep_best=True, save_every=1)
    full = refine(SURVEY, observed, starts(), None, cfg, progress=False)
    assert min(full.history[-1]["kept_iteration"]) < 2  # the case where a lost record would show
    state = tmp_path / "state.pt"
    refine(SURVEY, observed, starts(), None, cfg, state_path=state, stop_after=2, progress=False)
    rest = refine(SURVEY, observed, starts(), None, cfg, state_path=state, progress=False)
    assert np.array_equal(rest.velocity, full.velocity)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in rest.history] == strip


def test_keep_best_needs_every_shot_and_leaves_the_keys_of_older_configurations(observed):
    with pytest.raises(ValueError, match=r"keep_best.*\(shots_per_iter 0\)"):
        refine(SURVEY, observed, starts(), None, RefineConfig(keep_best=True, shots_per_iter=2), progress=False)
    # keys recorded before keep_best existed (resumable states, study records) stay valid
    assert RefineConfig().key() == "572106705c00eb51"
    prior = dict(param="network", optimizer="adam", schedule=(3.0, 5.0, 8.0, None), iterations=36)
    assert RefineConfig(**prior).key() == "0642bb520fb995dc"
    assert RefineConfig(**prior, keep_best=True).key() != "0642bb520fb995dc"
    assert RefineConfig(**prior, save_every=1).key() == "0642bb520fb995dc"
    # the key rule names real fields, so a renamed field cannot silently drop out of it
    names = {f.name for f in dataclasses.fields(RefineConfig)}
    assert NOT_IN_KEY <= names and ADDED_LATER <= names


def test_merge_takes_each_models_variables_from_the_chosen_state():
    cells = VelocityCells(torch.full((3, 4, 5), 2000.0), 1400.0, 4500.0)
    a, b = cells.state_dict(), {"x": torch.full((3, 4, 5), 3.0)}
    mixed = cells.merge(a, b, torch.tensor([False, True, False]))
    assert mixed["x"][1].eq(3.0).all() and mixed["x"][[0, 2]].eq(2.0).all()
    prior = NetworkPrior(nn.Linear(2, 2), torch.zeros(2, 1, 1, 2), normalizer=None, vmin=1400.0, vmax=4500.0)
    a = prior.state_dict()
    b = {k: v + 1.0 for k, v in a.items()}
    prior.load_state_dict(prior.merge(a, b, torch.tensor([False, True])))
    assert torch.equal(prior.nets[0].weight, a["0.weight"]) and torch.equal(prior.nets[1].weight, b["1.weight"])
    assert torch.equal(prior.nets[1].bias, b["1.bias"])
