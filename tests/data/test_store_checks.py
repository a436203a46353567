"""Datasets are checked when opened: real damaged HDF5 files give one DatasetError line naming file and problem."""

import json
import shutil

import h5py
import numpy as np
import pytest

from fwi.cli import friendly_errors
from fwi.data.dataset import FWIDataset
from fwi.data.generate import generate
from fwi.data.generate import main as generate_main
from fwi.data.store import DatasetError, fingerprint, read_info, verify

SIZES = {"train": 4, "val": 2}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "tiny.h5"
    generate(path, "tiny", seed=2, sizes=SIZES, progress=False)
    return path


@pytest.fixture
def copy(good, tmp_path):
    def make(name="bad.h5"):
        dst = tmp_path / name
        shutil.copy(good, dst)
        return dst
    return make


def test_a_fresh_file_is_stamped_and_opens_cheaply(good):
    info = read_info(good)
    assert info.stamped and info.sizes == SIZES
    with h5py.File(good, "r") as f:
        assert json.loads(f.attrs["validated"])["fingerprint"] == fingerprint(f)
    assert read_info(good, full=True).sizes == SIZES


def _one_line(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_truncated_file(copy):
    path = copy()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated") as e:
        read_info(path)
    _one_line(e, path)


def test_missing_array(copy):
    path = copy()
    with h5py.File(path, "r+") as f:
        del f["val/salt_mask"]
    with pytest.raises(DatasetError, match="lacks the 'salt_mask' array") as e:
        FWIDataset(path, "train")  # any split: the whole file is checked
    _one_line(e, path)


def test_mismatched_lengths(copy):
    path = copy()
    with h5py.File(path, "r+") as f:
        v = f["train/velocity"][:3]
        del f["train/velocity"]
        f["train/velocity"] = v
    with pytest.raises(DatasetError, match="disagree in length .*velocity 3, salt_mask 4, gathers 4"):
        read_info(path)


def test_nan_velocity_written_behind_the_writers_back(copy):
    path = copy()
    with h5py.File(path, "r+") as f:
        v = f["train/velocity"][1]
        v[0, 5, 5] = np.nan
        f["train/velocity"][1] = v
    with pytest.raises(DatasetError, match="modified after it was written and checked .*verify"):
        read_info(path)
    with pytest.raises(DatasetError, match=r"velocity contains NaN or inf .*train samples 0\.\.3"):
        read_info(path, full=True)
    # the same damage in a file without a stamp (as older versions wrote them): the velocity is checked on open
    with h5py.File(path, "r+") as f:
        del f.attrs["validated"]
    with pytest.raises(DatasetError, match="train/velocity is not finite and positive"):
        read_info(path)


def test_nan_gathers_found_by_full_verification_and_cli(copy, capsys):
    path = copy()
    with h5py.File(path, "r+") as f:
        g = f["val/gathers"][0]
        g[1, 10, 3] = np.inf
        f["val/gathers"][0] = g
        del f.attrs["validated"]  # pretend the file is an old one: only the full check reads the gathers
    assert read_info(path).sizes == SIZES
    assert generate_main(["verify", str(path), "--no-progress"]) == 2  # in process: main's value is the status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and "gathers contain NaN or inf" in last and str(path) in last


def test_old_file_gets_a_note_and_verify_stamp_accepts_it(copy, capsys):
    path = copy("old.h5")
    with h5py.File(path, "r+") as f:
        del f.attrs["validated"]
    info = read_info(path)
    assert not info.stamped and "predates validation stamps" in capsys.readouterr().err
    verify(path, stamp_file=True, progress=False)
    assert read_info(path).stamped


def test_wrong_shaped_gathers(copy):
    path = copy()
    with h5py.File(path, "r+") as f:
        g = f["train/gathers"][:, :, :-1]
        del f["train/gathers"]
        f["train/gathers"] = g
    with pytest.raises(DatasetError, match=r"train/gathers has shape \(4, 3, 299, 33\), but the stored survey "
                                           r"\(S, T, R\) needs \(4, 3, 300, 33\)"):
        read_info(path)


def test_non_numeric_dtype(copy):
    path = copy()
    with h5py.File(path, "r+") as f:
        del f["train/salt_mask"]
        f["train/salt_mask"] = np.full((4, 1, 32, 33), "a", dtype="S1")
    with pytest.raises(DatasetError, match="train/salt_mask has the non-numeric dtype"):
        read_info(path)


@pytest.mark.parametrize("value,match", [(None, "no normalisation attribute"),
                                         ({"v_min": float("nan"), "v_max": 1.0, "g_min": 0.0, "g_max": 1.0},
                                          "not finite"),
                                         ({"v_min": 1.0}, "must hold v_min, v_max, g_min, g_max"),
                                         ({"v_min": 2.0, "v_max": 1.0, "g_min": 0.0, "g_max": 1.0}, "min < max")])
def test_missing_or_bad_normalisation(copy, value, match):
    path = copy()
    with h5py.File(path, "r+") as f:
        if value is None:
            del f.attrs["normalisation"]
        else:
            f.attrs["normalisation"] = json.dumps(value)
    with pytest.raises(DatasetError, match=match) as e:
        read_info(path)
    _one_line(e, path)


def test_bad_survey_attribute_and_directory(copy, tmp_path):
    path = copy()
    with h5py.File(path, "r+") as f:
        f.attrs["survey"] = json.dumps({"nz": -3})
    with pytest.raises(DatasetError, match="survey attribute is not a valid survey"):
        read_info(path)
    with pytest.raises(DatasetError, match="is a directory"):
        read_info(tmp_path)


def test_a_cli_reader_reports_a_damaged_file_in_one_line(copy, capsys, monkeypatch):
    path = copy()
    with h5py.File(path, "r+") as f:
        f.attrs["normalisation"] = json.dumps({"v_min": 1.0, "v_max": float("inf"), "g_min": 0.0, "g_max": 1.0})
    monkeypatch.delenv("FWI_DEBUG", raising=False)
    code = friendly_errors(lambda: FWIDataset(path, "train") and 0)()
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("error:") and "normalisation attribute is not finite" in err
