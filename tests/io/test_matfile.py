"""FCNVMB / DD-Net style .mat velocity models, v5 (scipy) and v7.3 (HDF5, column-major) layouts."""

import h5py
import numpy as np
import pytest
import scipy.io

from fwi.data.store import read_info
from fwi.io.importer import main as import_main
from fwi.io.matfile import MatFileError, read_mat_velocity


def model(nz=12, nx=17, seed=0):
    rng = np.random.default_rng(seed)
    v = np.linspace(1500, 3500, nz)[:, None] + 0 * np.arange(nx)[None]
    v[4:7, 5:9] = 4500.0  # a salt body, off-centre so a transpose or flip would show
    return (v + rng.uniform(0, 10, v.shape)).astype(np.float32)


def write_v73(path, arrays):
    """What MATLAB's save -v7.3 writes: a 512-byte user block with the MATLAB header, column-major datasets."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=np.asarray(value).T)  # MATLAB's column-major order as h5py sees it
            f[key].attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed Dec  2 12:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")


def test_v5_and_v73_give_the_same_model_in_nz_nx_order(tmp_path):
    v = model()
    scipy.io.savemat(tmp_path / "v5.mat", {"vmodel": v.astype(np.float64)})
    write_v73(tmp_path / "v73.mat", {"vmodel": v.astype(np.float64)})
    assert h5py.is_hdf5(tmp_path / "v73.mat")
    with h5py.File(tmp_path / "v73.mat", "r") as f:
        assert f["vmodel"].shape == (17, 12)  # stored transposed
    for name in ("v5.mat", "v73.mat"):
        got = read_mat_velocity(tmp_path / name)
        assert got.shape == (1, 12, 17) and got.dtype == np.float32
        np.testing.assert_allclose(got[0], v, rtol=1e-6)


def test_stack_of_models_and_other_keys(tmp_path):
    a, b = model(seed=1), model(seed=2)
    scipy.io.savemat(tmp_path / "stack.mat", {"data": np.stack([a, b], axis=-1)})  # MATLAB pages last
    got = read_mat_velocity(tmp_path / "stack.mat")
    assert got.shape == (2, 12, 17)
    np.testing.assert_allclose(got[1], b, rtol=1e-6)
    scipy.io.savemat(tmp_path / "odd.mat", {"mymodel": a})
    np.testing.assert_allclose(read_mat_velocity(tmp_path / "odd.mat")[0], a)  # the only grid in the file


@pytest.mark.parametrize("arrays,match", [
    ({"a": np.ones((3, 4)) * 2000, "b": np.ones((3, 4)) * 2000}, "no velocity-like key"),
    ({"vmodel": np.full((3, 4), np.nan)}, "NaN"),
    ({"vmodel": np.arange(4.0) + 1500}, "a velocity model is 2-D"),
    ({"vmodel": np.ones((3, 4)) * 2.5}, "km/s"),
])
def test_clear_errors(tmp_path, arrays, match):
    scipy.io.savemat(tmp_path / "bad.mat", arrays)
    with pytest.raises(MatFileError, match=match):
        read_mat_velocity(tmp_path / "bad.mat")


def test_importer_builds_a_dataset_from_mat_models(tmp_path, capsys):
    v = model(nz=20, nx=24)
    scipy.io.savemat(tmp_path / "m.mat", {"vmodel": v})
    out = tmp_path / "seg.h5"
    assert import_main(["--velocity", str(tmp_path / "m.mat"), "--out", str(out), "--split", "test"]) == 2
    assert "give --dx" in capsys.readouterr().err
    rc = import_main(["--velocity", str(tmp_path / "m.mat"), "--out", str(out), "--split", "test", "--dx", "10",
                      "--survey-nt", "200", "--survey-sources", "2"])
    assert rc == 0, capsys.readouterr().err
    info = read_info(out, full=True)
    assert info.sizes == {"test": 1} and info.survey.shape == (20, 24) and info.survey.n_sources == 2
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["test/velocity"][0, 0], v)
        assert f["test/salt_mask"][0, 0].sum() == 12  # the 3 x 4 salt body above 4400 m/s


@pytest.mark.parametrize("value, match", [
    (np.zeros((0, 0)), r"'vmodel' is empty"),
    (model() * (1 + 1j), r"'vmodel' holds complex numbers"),
    (np.array(["abc"]), r"'vmodel' holds text"),
])
def test_empty_complex_and_text_models_name_the_file_and_key(tmp_path, value, match):
    scipy.io.savemat(tmp_path / "bad.mat", {"vmodel": value, "other": model()})
    with pytest.raises(MatFileError, match=match) as info:
        read_mat_velocity(tmp_path / "bad.mat")
    assert "bad.mat" in str(info.value) and "no velocity-like key" not in str(info.value)
