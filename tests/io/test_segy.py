"""SEG-Y reading/writing (fwi.io.segy) on third-party files from segyio's test suite, and the HDF5 importer CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import segyio

from fwi.data.store import read_info
from fwi.io import (SegyError, read_gathers, read_traces, read_velocity, stack_gathers, write_gathers,
                    write_velocity)
from fwi.io import importer

REPO = Path(__file__).resolve().parents[2]
SEGY = REPO.parent / "shared" / "segy"

needs_files = pytest.mark.skipif(not (SEGY / "small.sgy").exists(),
                                 reason=f"third-party SEG-Y test files not found in {SEGY}")


def shared(name: str) -> Path:
    return SEGY / name


def ibm_to_float(words: np.ndarray) -> np.ndarray:
    """Independent IBM System/360 single-precision decode: (-1)^s * 0.fraction(24 bit) * 16^(exponent - 64)."""
    words = words.astype(np.uint64)
    sign = np.where(words >> 31, -1.0, 1.0)
    exponent = ((words >> 24) & 0x7F).astype(np.int64) - 64
    fraction = (words & 0xFFFFFF).astype(np.float64) / 2.0**24
    return sign * fraction * np.power(16.0, exponent)


def raw_samples(path: Path, dtype: str, n_samples: int) -> np.ndarray:
    """(n_traces, n_samples) raw sample words after the 3600-byte file header, skipping 240-byte trace headers."""
    raw = path.read_bytes()[3600:]
    itemsize = np.dtype(dtype).itemsize
    trace_bytes = 240 + n_samples * itemsize
    assert len(raw) % trace_bytes == 0
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, trace_bytes)[:, 240:]
    return np.ascontiguousarray(rows).view(dtype)


# ---------------------------------------------------------------------------------------------------- reading
@needs_files
def test_shot_gather_splits_by_field_record():
    gathers = read_gathers(shared("shot-gather.sgy"))
    assert [g.field_record for g in gathers] == [2, 3, 5, 8]
    assert [g.n_traces for g in gathers] == [10, 12, 13, 26]
    assert all(g.n_samples == 25 and g.data.dtype == np.float32 for g in gathers)
    assert all(g.dt == pytest.approx(0.001) for g in gathers)
    traces, dt = read_traces(shared("shot-gather.sgy"))
    assert traces.shape == (61, 25) and dt == pytest.approx(0.001)
    np.testing.assert_array_equal(np.concatenate([g.data for g in gathers]), traces)
    with pytest.raises(SegyError, match="differ in size.*record 2: 10 traces.*record 8: 26 traces"):
        stack_gathers(gathers, shared("shot-gather.sgy"))


@needs_files
def test_small_big_and_little_endian_agree():
    big, dt = read_traces(shared("small.sgy"))
    assert big.shape == (25, 50) and big.dtype == np.float32 and dt == pytest.approx(0.004)
    little, dt_little = read_traces(shared("small-lsb.sgy"))
    explicit, _ = read_traces(shared("small-lsb.sgy"), endian="little")
    np.testing.assert_array_equal(little, big)
    np.testing.assert_array_equal(explicit, big)
    assert dt_little == dt
    with pytest.raises(SegyError, match="small-lsb.sgy.*looks little-endian"):
        read_traces(shared("small-lsb.sgy"), endian="big")


@needs_files
def test_small_matches_an_independent_ibm_decode():
    expected = ibm_to_float(raw_samples(shared("small.sgy"), ">u4", 50))
    got, _ = read_traces(shared("small.sgy"))
    # a normalised IBM fraction has at most 24 significant bits, so float32 holds it exactly
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert got[0, 0] == pytest.approx(1.2, abs=1e-5)  # segyio's small.sgy holds inline.crossline0sample values


@needs_files
def test_f3_integer_ibm_and_ieee_files_give_equal_values():
    f3, dt3 = read_traces(shared("f3.sgy"))
    ibm, dt1 = read_traces(shared("Format1msb.sgy"))
    ieee, dt5 = read_traces(shared("Format5lsb.sgy"))
    for traces, dt in ((f3, dt3), (ibm, dt1), (ieee, dt5)):
        assert traces.shape == (414, 75) and traces.dtype == np.float32 and dt == pytest.approx(0.004)
    # f3 holds 2-byte integers; the IBM and IEEE files hold the same whole numbers, so equality is exact
    np.testing.assert_array_equal(f3, ibm)
    np.testing.assert_array_equal(ieee, ibm)
    assert np.abs(f3).max() > 1000 and np.array_equal(f3, np.round(f3))
    # independent decodes of the raw bytes
    np.testing.assert_array_equal(f3, raw_samples(shared("f3.sgy"), ">i2", 75).astype(np.float32))
    np.testing.assert_array_equal(ieee, raw_samples(shared("Format5lsb.sgy"), "<f4", 75))
    # the headers agree too: the same field records and coordinates (scalar -10 applied)
    a, b = read_gathers(shared("f3.sgy")), read_gathers(shared("Format5lsb.sgy"))
    assert [g.field_record for g in a] == [g.field_record for g in b]
    np.testing.assert_array_equal(a[0].source_x, b[0].source_x)
    assert a[0].source_x[0] == pytest.approx(620197.2)


@needs_files
@pytest.mark.parametrize("name, why", [("broken.sgy", "truncated"), ("text.sgy", "no traces")])
@pytest.mark.parametrize("reader", [read_gathers, read_traces, read_velocity])
def test_bad_third_party_files_raise_segy_error(name, why, reader, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(SEGY))
    with pytest.raises(SegyError, match=why) as info:
        reader(shared(name))
    assert name in str(info.value)
    assert os.listdir(tmp_path) == [] and sorted(os.listdir(SEGY)) == before


def test_missing_and_non_segy_files_raise_segy_error(tmp_path):
    with pytest.raises(SegyError, match="nope.sgy does not exist"):
        read_traces(tmp_path / "nope.sgy")
    short = tmp_path / "short.sgy"
    short.write_text("hello")
    with pytest.raises(SegyError, match="short.sgy is not a SEG-Y file"):
        read_gathers(short)
    junk = tmp_path / "junk.sgy"
    junk.write_bytes(b"x" * 5000)
    with pytest.raises(SegyError, match="junk.sgy is not a readable SEG-Y file.*format code"):
        read_gathers(junk)
    cut = tmp_path / "cut.sgy"
    write_gathers(cut, np.ones((1, 10, 3), np.float32), 0.001, dx=5.0)
    cut.write_bytes(cut.read_bytes()[:-7])
    with pytest.raises(SegyError, match="cut.sgy is truncated"):
        read_gathers(cut)


# ---------------------------------------------------------------------------------------------------- writing
def test_write_read_gathers_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 40, 7)).astype(np.float32)
    source_x = [12.5, 250.0, 1000.25]
    receiver_x = np.arange(7) * 12.5 + 0.001
    path = write_gathers(tmp_path / "g.sgy", data, 0.002, source_x=source_x, receiver_x=receiver_x)
    gathers = read_gathers(path)
    assert [g.field_record for g in gathers] == [1, 2, 3]
    assert all(g.dt == 0.002 and g.data.shape == (7, 40) for g in gathers)
    np.testing.assert_array_equal(stack_gathers(gathers), data)
    for s, g in enumerate(gathers):
        np.testing.assert_allclose(g.source_x, source_x[s], rtol=0, atol=1e-9)
        np.testing.assert_allclose(g.receiver_x, receiver_x, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(g.offsets, np.round(receiver_x - source_x[s]))
    with segyio.open(path, ignore_geometry=True) as f:
        assert f.bin[segyio.BinField.Format] == 5 and f.bin[segyio.BinField.Interval] == 2000
        assert f.bin[segyio.BinField.Samples] == 40
        assert list(f.attributes(segyio.TraceField.TraceNumber)[:7]) == list(range(1, 8))
        assert set(f.attributes(segyio.TraceField.TRACE_SAMPLE_INTERVAL)[:]) == {2000}
        assert set(f.attributes(segyio.TraceField.SourceGroupScalar)[:]) == {-1000}
    assert os.listdir(tmp_path) == ["g.sgy"]


def test_write_gathers_default_positions_and_overwrite(tmp_path):
    path = tmp_path / "g.sgy"
    data = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    write_gathers(path, data, 0.001, dx=10.0)
    gathers = read_gathers(path)
    assert [g.source_x[0] for g in gathers] == [0.0, 30.0]
    np.testing.assert_array_equal(gathers[0].receiver_x, [0.0, 10.0, 20.0, 30.0])
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_gathers(path, data * 2, 0.001, dx=10.0)
    assert path.read_bytes() == before
    write_gathers(path, data * 2, 0.001, dx=10.0, overwrite=True)
    np.testing.assert_array_equal(stack_gathers(read_gathers(path)), data * 2)
    with pytest.raises(ValueError, match="microseconds"):
        write_gathers(tmp_path / "bad.sgy", data, 0.0000015, dx=10.0)
    assert sorted(os.listdir(tmp_path)) == ["g.sgy"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(segyio.tools, "create_text_header", boom)  # fails after the temporary file exists
    with pytest.raises(RuntimeError, match="disk full"):
        write_gathers(tmp_path / "g.sgy", np.ones((1, 4, 3), np.float32), 0.001, dx=1.0)
    assert os.listdir(tmp_path) == []


def test_write_read_velocity_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    velocity = rng.uniform(1500, 4500, (30, 40)).astype(np.float32)
    path = write_velocity(tmp_path / "v.sgy", velocity, 12.5)
    got, dx = read_velocity(path)
    np.testing.assert_array_equal(got, velocity)
    assert dx == 12.5
    with segyio.open(path, ignore_geometry=True) as f:
        assert f.tracecount == 40 and len(f.samples) == 30
        assert f.bin[segyio.BinField.Interval] == 12500  # dz in millimetres
        assert f.header[3][segyio.TraceField.CDP_X] * 0.1 == pytest.approx(37.5)  # scalar -10
    with pytest.raises(ValueError, match="millimetres"):
        write_velocity(tmp_path / "w.sgy", velocity, 10.0005)


@needs_files
def test_read_velocity_accepts_a_post_stack_file():
    velocity, dx = read_velocity(shared("small.sgy"))
    traces, _ = read_traces(shared("small.sgy"))
    np.testing.assert_array_equal(velocity, traces.T)
    assert velocity.shape == (50, 25) and dx == 4.0  # the 4000 in the interval field read as millimetres


# ---------------------------------------------------------------------------------------------------- importer
def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "fwi.io.importer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_importer_cli_writes_dataset(tmp_path):
    rng = np.random.default_rng(2)
    velocity = np.full((20, 30), 2000.0, np.float32)
    velocity[10:15, 8:20] = 4500.0
    data = rng.standard_normal((3, 50, 30)).astype(np.float32)
    write_velocity(tmp_path / "v.sgy", velocity, 10.0)
    write_gathers(tmp_path / "g.sgy", data, 0.002, dx=10.0)
    result = run_cli("--gathers", "g.sgy", "--velocity", "v.sgy", "--out", "out/x.h5", "--split", "test",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = read_info(tmp_path / "out" / "x.h5")
    assert info.sizes == {"test": 1}
    s = info.survey
    assert (s.nz, s.nx, s.dx, s.nt, s.dt, s.n_sources, s.n_receivers) == (20, 30, 10.0, 50, 0.002, 3, 30)
    assert s.receiver_x == tuple(np.arange(30) * 10.0) and s.source_x == (0.0, 140.0, 290.0)
    with h5py.File(tmp_path / "out" / "x.h5") as f:
        np.testing.assert_array_equal(f["test/gathers"][0], data)
        np.testing.assert_array_equal(f["test/velocity"][0, 0], velocity)
        np.testing.assert_array_equal(f["test/salt_mask"][0, 0], (velocity >= 4400).astype(np.uint8))


@needs_files
def test_importer_cli_rejects_broken_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # in process (main's value is the status); the entry point is run above
    code = importer.main(["--gathers", str(shared("broken.sgy")), "--out", "x.h5", "--split", "test", "--dx", "10",
                          "--nz", "20"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "broken.sgy" in lines[0], err
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


@needs_files
def test_importer_reports_records_of_different_sizes(tmp_path, capsys):
    out = tmp_path / "x.h5"
    code = importer.main(["--gathers", str(shared("shot-gather.sgy")), "--out", str(out), "--split", "test",
                          "--dx", "10", "--nz", "20"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "record 2: 10 traces" in err and "record 8: 26 traces" in err
    assert not out.exists()


def test_importer_forward_models_velocity_only(tmp_path):
    velocity = np.full((12, 16), 2000.0, np.float32)
    velocity[6:, :] = 4600.0
    write_velocity(tmp_path / "v.sgy", velocity, 10.0)
    out = tmp_path / "x.h5"
    code = importer.main(["--velocity", str(tmp_path / "v.sgy"), "--out", str(out), "--split", "train",
                          "--survey-nt", "60", "--survey-sources", "2"])
    assert code == 0
    info = read_info(out)
    assert info.sizes == {"train": 1} and info.survey.data_shape == (2, 60, 16)
    assert info.attrs["generator"]["gathers_source"] == "forward_model"
    with h5py.File(out) as f:
        gathers = f["train/gathers"][0]
        assert np.isfinite(gathers).all() and np.abs(gathers).max() > 0
        assert f["train/salt_mask"][0, 0].sum() == 6 * 16


def test_importer_refuses_a_velocity_model_in_km_per_s(tmp_path, capsys):
    velocity = np.full((12, 16), 2.0, np.float32)  # km/s: 1000x too slow for the propagator's units
    velocity[6:, :] = 4.6
    write_velocity(tmp_path / "v.sgy", velocity, 10.0)
    out = tmp_path / "x.h5"
    code = importer.main(["--velocity", str(tmp_path / "v.sgy"), "--out", str(out), "--split", "train"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "v.sgy" in err[0] and "km/s" in err[0]
    assert not out.exists()
