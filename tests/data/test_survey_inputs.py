"""Nonsense survey values are rejected with the valid range (they reach the data layer through presets and files)."""

import json

import h5py
import pytest

from fwi.data.generate import generate
from fwi.data.store import DatasetError, read_info
from fwi.physics import Survey, SurveyError


@pytest.mark.parametrize("kwargs,match", [
    ({"nz": 70.5}, r"survey.nz must be a whole number \(>= 1\), got 70.5"),
    ({"n_receivers": "70"}, r"survey.n_receivers must be a whole number"),
    ({"nt": True}, r"survey.nt must be a whole number"),
    ({"peak_time": 1.2}, r"survey.peak_time must lie within the record, 0 .. 0.999 s \(\(nt - 1\) x dt\), got 1.2"),
    ({"peak_time": -0.01}, r"peak_time must lie within the record"),
    ({"peak_time": float("nan")}, r"peak_time must lie within the record"),
])
def test_bad_survey_values_name_the_valid_range(kwargs, match):
    with pytest.raises(SurveyError, match=match):
        Survey(**kwargs)


def test_whole_floats_are_grid_sizes_and_the_peak_may_sit_at_the_last_sample():
    s = Survey(nz=70.0, nx=70, peak_time=0.999)
    assert s.nz == 70 and isinstance(s.nz, int) and s.shape == (70, 70)
    assert Survey.from_json(s.to_json()) == s
    with pytest.warns(UserWarning, match="after the end of the record"):
        Survey(nt=50)  # the default peak 1.5 / 15 Hz = 0.1 s is beyond a 49 ms record: allowed, with a warning


def test_a_dataset_whose_survey_has_a_fractional_grid_is_refused(tmp_path):
    path = tmp_path / "t.h5"
    generate(path, "tiny", seed=0, sizes={"train": 2}, progress=False)
    with h5py.File(path, "r+") as f:
        survey = json.loads(f.attrs["survey"])
        f.attrs["survey"] = json.dumps({**survey, "nx": 33.5})
    with pytest.raises(DatasetError, match=r"survey attribute is not a valid survey .*nx must be a whole number"):
        read_info(path)


def test_segsalt_preset_matches_the_seg_salt_geometry():
    from fwi.data.presets import get_preset

    s = get_preset("segsalt").survey
    assert (s.nz, s.nx, s.dx, s.n_sources, s.n_receivers) == (201, 301, 10.0, 29, 301)
    assert s.receiver_cells()[0, :, 1].tolist() == list(range(301))  # one receiver per surface cell
    assert s.points_per_wavelength(1500.0) >= 5 and s.mirror_mismatch() == 0
