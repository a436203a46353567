"""Compact datasets: decimated, float16 / scaled int16 gathers, read back as the network expects."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from fwi.data.codec import GatherStorage, StorageError, check_time_decimation, max_time_decimation
from fwi.data.convert import convert
from fwi.data.dataset import FWIDataset
from fwi.data.generate import generate
from fwi.data.generate import main as generate_main
from fwi.data.store import DatasetError, read_info
from fwi.data.transforms import decimate_time
from fwi.physics import Survey


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    path = tmp_path_factory.mktemp("compact") / "tiny.h5"
    generate(path, "tiny", seed=3, sizes={"train": 6, "val": 2}, progress=False)
    return path


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("float16", 2e-3), ("int16", 2e-4)])
def test_converted_file_gives_the_network_the_same_input(full, tmp_path, dtype, tol):
    out = convert(full, tmp_path / f"c-{dtype}.h5", time_decimation=3, encoding=dtype, progress=False)
    info = read_info(out, full=True)
    assert info.stamped and info.storage == GatherStorage(3, dtype, "zstd")
    assert info.normalisation == read_info(full).normalisation and info.survey == read_info(full).survey
    ref, compact = FWIDataset(full, "train", time_decimation=3), FWIDataset(out, "train", time_decimation=3)
    for i in range(len(ref)):
        a, b = ref[i], compact[i]
        assert a["gathers"].shape == b["gathers"].shape == (3, 100, 33)
        assert torch.equal(a["velocity"], b["velocity"]) and torch.equal(a["salt_mask"], b["salt_mask"])
        err = (a["gathers"] - b["gathers"]).abs().max().item()  # in the normalised [-1, 1] domain
        assert err <= tol, (dtype, err)
    with h5py.File(out, "r") as f:
        assert f["train/gathers"].dtype == np.dtype(dtype) and f["train/gathers"].shape == (6, 3, 100, 33)
        raw = f["train/gathers"][0]
    if dtype == "float32":  # the stored samples are decimate_time of the original ones
        with h5py.File(full, "r") as f:
            expected = decimate_time(f["train/gathers"][0], 3)
        np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_decimated_file_refuses_another_decimation(full, tmp_path):
    out = convert(full, tmp_path / "d.h5", time_decimation=2, encoding="float16", progress=False)
    with pytest.raises(DatasetError, match=r"already decimated in time by 2; read it with time_decimation 2"):
        FWIDataset(out, "train", time_decimation=1)
    with pytest.raises(DatasetError, match="already decimated in time by 2"):
        convert(out, tmp_path / "e.h5", time_decimation=4, progress=False)
    assert check_time_decimation(GatherStorage(), 4) == 4 and check_time_decimation(GatherStorage(2), 2) == 1
    with pytest.raises(StorageError, match="integer >= 1"):
        GatherStorage(time_decimation=0)


def test_compact_file_is_smaller_and_damage_is_caught(full, tmp_path):
    out = convert(full, tmp_path / "s.h5", time_decimation=4, encoding="int16", progress=False)
    with h5py.File(full, "r") as a, h5py.File(out, "r") as b:
        before = a["train/gathers"].id.get_storage_size()
        after = b["train/gathers"].id.get_storage_size() + b["train/gathers_scale"].id.get_storage_size()
    assert after * 6 < before
    with h5py.File(out, "r+") as f:
        f["train/gathers_scale"][2] = np.nan
    for full_check in (False, True):  # the N scales are checked on every open
        with pytest.raises(DatasetError, match="train/gathers_scale is not finite and positive"):
            read_info(out, full=full_check)


def test_convert_cli_one_line_errors(full, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    proc = subprocess.run([sys.executable, "-m", "fwi.data.generate", "convert", str(full), "--out", str(out),
                           "--time-decimation", "2", "--dtype", "float16", "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert read_info(out).storage.time_decimation == 2
    before = out.read_bytes()
    assert generate_main(["convert", str(full), "--out", str(out)]) == 2  # in process: main's value is the status
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "--overwrite" in err and out.read_bytes() == before


def test_a_decimation_that_would_lose_the_wavelet_is_refused_with_the_valid_range(full, tmp_path, capsys):
    survey = read_info(full).survey  # tiny: 300 samples of 1 ms, 15 Hz Ricker (band up to 2 x 15 Hz)
    # independently: decimate_time by k keeps f < 0.8 / (2 k dt); that must reach 30 Hz -> k <= 13.33
    assert max_time_decimation(survey) == 13 == int(0.8 / (2 * survey.dt * 2 * survey.freq))
    assert max_time_decimation(Survey(dt=0.002, freq=10.0)) == 10  # 0.8 / (2 * 0.002 * 20)
    for k in (1000, 14):
        out = tmp_path / f"k{k}.h5"
        assert generate_main(["convert", str(full), "--out", str(out), "--time-decimation", str(k)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: --time-decimation {k} is too coarse")
        assert "valid range 1..13" in err and not out.exists() and not list(tmp_path.iterdir())
    out = convert(full, tmp_path / "k13.h5", time_decimation=13, encoding="int16", progress=False)
    assert read_info(out).storage.stored_nt(survey.nt) == 24  # >= 10 samples per wavelet length (2 / 15 Hz)
    # the bound is where the record starts to lose its wavelet: k samples' energy share k * sum(d^2) / sum(g^2)
    with h5py.File(full, "r") as f:
        g = f["train/gathers"][0].astype(np.float64)
    kept = {k: k * np.square(decimate_time(g, k)).sum() / np.square(g).sum() for k in (13, 20)}
    assert kept[13] > 0.99 > kept[20], kept
