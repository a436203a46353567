import warnings

import deepwave.discretisation as dwd
import pytest
import torch

from fwi.physics import Survey, SurveyError


def test_default_is_openfwi_geometry():
    s = Survey()
    assert (s.nz, s.nx, s.dx, s.nt, s.dt, s.freq) == (70, 70, 10.0, 1000, 0.001, 15.0)
    assert s.data_shape == (5, 1000, 70)
    src = s.source_cells()
    assert src.shape == (5, 1, 2)
    assert src[:, 0, 0].tolist() == [1] * 5  # 10 m depth = row 1
    assert src[:, 0, 1].tolist() == [0, 17, 34, 52, 69]  # evenly spread over the surface
    rec = s.receiver_cells()
    assert rec.shape == (5, 70, 2) and rec[0, :, 1].tolist() == list(range(70))


def test_receivers_off_the_grid_are_rejected():
    with pytest.raises(SurveyError, match="outside the grid"):
        Survey(receiver_x=(0.0, 100.0, 700.0))
    with pytest.raises(SurveyError, match="depth"):
        Survey(source_depth=800.0)


def test_max_stable_dt_agrees_with_deepwave_cfl():
    s = Survey(max_velocity=4500.0)
    limit = s.max_stable_dt()
    assert dwd.cfl_condition_n([10.0, 10.0], limit * 0.999, 4500.0)[1] == 1
    assert dwd.cfl_condition_n([10.0, 10.0], limit * 1.01, 4500.0)[1] == 2
    with pytest.raises(SurveyError, match=f"{limit:.6g}"):
        Survey(max_velocity=4500.0, strict_cfl=True)  # 1 ms is above the limit at 4500 m/s
    assert Survey(max_velocity=4500.0).step_ratio() == 2  # documented internal sub-stepping instead


def test_coarse_sampling_warns():
    s = Survey(dx=40.0, nz=20, nx=20, n_receivers=20)
    with pytest.warns(UserWarning, match="points per minimum wavelength"):
        s.check_velocity(torch.full((20, 20), 1500.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Survey().check_velocity(torch.full((70, 70), 1500.0))  # OpenFWI: 1500 m/s / 30 Hz / 10 m = 5 points
    assert Survey().points_per_wavelength(1500.0) == pytest.approx(1500 / 30 / 10)


def test_serialisation_round_trip_and_unknown_keys():
    s = Survey(nz=40, nx=50, source_x=(0.0, 250.0, 490.0), n_receivers=25, freq=12.0)
    assert Survey.from_json(s.to_json()) == s
    assert Survey.from_dict(s.to_dict()).source_cells().tolist() == s.source_cells().tolist()
    with pytest.raises(SurveyError, match="unknown survey keys"):
        Survey.from_dict({"nz": 10, "bogus": 1})
