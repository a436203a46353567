"""The one velocity validator of model files (`check_velocity_values`): every reader of `load_velocity_file` (.npy,
HDF5 plain and fwi dataset, SEG-Y, .mat) refuses km/s, ft/s, non-finite and non-positive models in one line naming the
file, the value range and the likely unit, and passes m/s models unchanged."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from fwi.io.segy import write_velocity
from fwi.io.units import check_velocity_values
from fwi.io.velocity_files import load_velocity_file


def model() -> np.ndarray:
    v = np.tile(np.linspace(1500.0, 3500.0, 12)[:, None], (1, 15)).astype(np.float32)
    v[5:8, 4:9] = 4500.0
    return v


def write(path, v: np.ndarray) -> None:
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, v)
    elif suffix == ".h5":
        with h5py.File(path, "w") as f:
            f["models"] = v[None]
    elif suffix == ".sgy":
        write_velocity(path, v, 10.0, overwrite=True)
    else:
        scipy.io.savemat(path, {"vmodel": v.astype(np.float64)})


READERS = (".npy", ".h5", ".sgy", ".mat")


@pytest.mark.parametrize("suffix", READERS)
def test_every_reader_passes_m_per_s_unchanged(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    write(path, model())
    got, _ = load_velocity_file(path)
    np.testing.assert_allclose(got[0], model(), rtol=1e-6)


@pytest.mark.parametrize("suffix", READERS)
@pytest.mark.parametrize("scale, unit", [(1e-3, "looks like km/s"), (1 / 0.3048, "looks like ft/s")])
def test_every_reader_refuses_other_units_naming_file_range_and_unit(tmp_path, suffix, scale, unit):
    path = tmp_path / f"m{suffix}"
    v = model() * scale
    write(path, v)
    with pytest.raises(ValueError) as info:
        load_velocity_file(path)
    message = str(info.value)
    assert str(path) in message and unit in message and "\n" not in message
    assert f"{v.min():g}"[:3] in message and f"{v.max():g}"[:3] in message  # the value range


@pytest.mark.parametrize("suffix", (".npy", ".h5"))  # SEG-Y and .mat: NaN / negatives through the same check
@pytest.mark.parametrize("bad, match", [(np.nan, "NaN or inf"), (-5.0, "must be positive")])
def test_non_finite_and_non_positive_models_are_refused(tmp_path, suffix, bad, match):
    path = tmp_path / f"m{suffix}"
    v = model()
    v[3, 3] = bad
    write(path, v)
    with pytest.raises(ValueError, match=match):
        load_velocity_file(path)


def test_an_fwi_dataset_split_passes_the_same_check(tmp_path):
    from fwi.data.generate import generate

    path = tmp_path / "tiny.h5"
    generate(path, "tiny", seed=0, sizes={"train": 1, "test": 1}, progress=False)
    v, _ = load_velocity_file(path, split="test")
    assert v.shape == (1, 32, 33) and 1000 < v.min() and v.max() < 5000
    with h5py.File(path, "r+") as f:
        f["test/velocity"][...] = f["test/velocity"][()] / 1000.0
    with pytest.raises(ValueError, match="km/s"):
        load_velocity_file(path, split="test")


def test_the_validator_alone():
    v = model()
    assert check_velocity_values(v, "x") is v
    with pytest.raises(ValueError, match=r"x is empty"):
        check_velocity_values(np.zeros((0, 3, 3)), "x")
    with pytest.raises(ValueError, match=r"x contains NaN or inf values \(model\(s\) \[1\]\)"):
        check_velocity_values(np.stack([v, v * np.inf]), "x")
