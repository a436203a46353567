"""fwi.invert against real files: compact and time-decimated datasets read through the one decoding path, the --out
owner lock (real processes), stale outputs removed, units and spec errors refused in one line.

Tiny preset (32 x 33 cells, 3 shots, 300 steps), one iteration per run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fwi.data.convert import convert
from fwi.invert.cli import main
from fwi.invert.outputs import out_lock

ARGS = ["--indices", "0:2", "--device", "cpu", "--iterations", "1", "--schedule", "full", "--smooth-sigma", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The float32 original and its compact conversions: name -> path."""
    from fwi.data.generate import generate

    root = tmp_path_factory.mktemp("invert_files")
    out = {"float32": root / "tiny.h5"}
    generate(out["float32"], "tiny", seed=3, sizes={"train": 2, "test": 3}, progress=False)
    for dtype, k in (("float16", 1), ("int16", 1), ("float32", 3), ("float16", 3), ("int16", 3)):
        out[f"{dtype}-k{k}"] = convert(out["float32"], root / f"tiny-{dtype}-k{k}.h5", time_decimation=k,
                                       encoding=dtype, progress=False)
    return out


def run_invert(data: Path, out: Path, *extra: str) -> dict:
    rc = main(["--data", str(data), "--start", "smooth:4", "--out", str(out), *ARGS, *extra])
    assert rc == 0
    return json.loads((out / "metrics.json").read_text())


def test_compact_files_give_the_misfit_of_the_original(files, tmp_path):
    """Every encoding at decimation 1 and k is decoded before fitting: the misfit before refinement equals the
    float32 original's (at full rate, or decimated on the fly by k) within the codec's quantisation."""
    ref = {k: run_invert(files["float32"], tmp_path / f"ref{k}", *(["--time-decimation", "3"] if k > 1 else []))
           for k in (1, 3)}
    for k in (1, 3):
        before = np.array(ref[k]["per_model"]["misfit_before"])
        assert (0.05 < before).all() and (before < 0.9).all()  # a smoothed start fits the data partly
    tolerance = {"float32": 1e-6, "float16": 2e-3, "int16": 2e-3}
    for name, path in files.items():
        if name == "float32":
            continue
        dtype, k = name.split("-k")
        got = run_invert(path, tmp_path / name)  # the stored decimation is taken from the file
        expected = ref[int(k)]["per_model"]["misfit_before"]
        np.testing.assert_allclose(got["per_model"]["misfit_before"], expected, rtol=tolerance[dtype], err_msg=name)
        assert got["config"]["time_decimation"] == int(k)
        assert got["misfit_after"] < got["misfit_before"]  # a sensible fit: one step lowers the misfit


def test_a_decimated_file_refuses_another_decimation(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--data", str(files["int16-k3"]), "--start", "smooth:4", "--out", str(out), *ARGS,
               "--time-decimation", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--time-decimation 3" in err and not out.exists()


def test_second_invert_into_a_held_out_refuses_naming_the_holder(files, tmp_path):
    """The lock is taken on the resolved --out: a symlink to a held folder is refused as the folder itself."""
    out, link = tmp_path / "out", tmp_path / "link"
    out.mkdir()
    link.symlink_to(out)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with out_lock(out):  # this process holds --out, as a running fwi.invert would
        proc = subprocess.run([sys.executable, "-m", "fwi.invert", "--data", str(files["float32"]), "--start",
                               "smooth:4", "--out", str(link), *ARGS], capture_output=True, text=True, env=env,
                              timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and err[0].startswith("error:"), proc.stderr
    assert f"pid {os.getpid()}" in err[0]
    assert list(out.iterdir()) == []  # nothing written


def test_a_new_run_removes_the_previous_runs_outputs(files, tmp_path):
    out = tmp_path / "out"
    run_invert(files["float32"], out, "--segy")
    assert sorted(p.name for p in out.glob("refined-*.sgy")) == ["refined-0.sgy", "refined-1.sgy"]
    debris = [out / ".refined.123.456.tmp.npy", out / "state" / ".models-0-1-x.123.456.tmp.pt"]
    for path in debris:
        path.write_bytes(b"partial")
    metrics = run_invert(files["float32"], out, "--indices", "2")
    assert metrics["indices"] == [2] and metrics["n"] == 1
    assert not list(out.glob("refined-*.sgy")) and not any(p.exists() for p in debris)
    assert np.load(out / "refined.npy").shape[0] == 1
    assert len(list((out / "state").glob("models-*.pt"))) == 2  # resumable states are kept


@pytest.mark.parametrize("extra, message", [
    (["--start", "smooth:abc"], "smooth:SIGMA needs a positive"),
    (["--start", "nonsense"], "run:RUNDIR, smooth:SIGMA"),
    (["--indices", "a:b"], "FIRST:STOP"),
    (["--indices", "0:4:2"], "FIRST:STOP"),
    (["--schedule", "8,x"], "cut-offs in Hz"),
])
def test_spec_errors_are_one_line_saying_what_is_expected(files, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    rc = main(["--data", str(files["float32"]), "--start", "smooth:4", "--out", str(out), *ARGS, *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error:") and message in err, err
    assert "could not convert" not in err and "invalid literal" not in err
    assert not out.exists()


def test_out_that_is_a_file_is_a_clear_error(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    rc = main(["--data", str(files["float32"]), "--start", "smooth:4", "--out", str(out), *ARGS])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is an existing file" in err and "Errno" not in err and out.read_text() == "not a folder"


@pytest.mark.parametrize("scale, unit", [(1e-3, "km/s"), (1 / 0.3048, "ft/s")])
def test_a_start_file_in_other_units_is_refused_without_torch_warnings(files, tmp_path, capsys, scale, unit):
    from fwi.invert.starts import trend_start

    path = tmp_path / "start.npy"
    np.save(path, trend_start(files["float32"], 1).numpy() * scale)  # one model, broadcast to every index
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["--data", str(files["float32"]), "--start", f"file:{path}", "--out", str(out), *ARGS])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and unit in err and str(path) in err, err
    assert not [w for w in caught if "writable" in str(w.message)] and not out.exists()


def test_a_single_model_start_file_is_broadcast(files, tmp_path):
    from fwi.invert.starts import trend_start

    path = tmp_path / "start.npy"
    np.save(path, trend_start(files["float32"], 1).numpy())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        metrics = run_invert(files["float32"], tmp_path / "out", "--start", f"file:{path}")
    assert metrics["n"] == 2 and metrics["misfit_after"] < metrics["misfit_before"]


def test_key_chooses_the_array_of_a_plain_hdf5_start_file(files, tmp_path, capsys):
    import h5py

    from fwi.invert.starts import trend_start

    path = tmp_path / "starts.h5"
    with h5py.File(path, "w") as f:
        f["a"] = trend_start(files["float32"], 1).numpy()
        f["b"] = trend_start(files["float32"], 1).numpy() * 1.02
    out = tmp_path / "out"
    assert main(["--data", str(files["float32"]), "--start", f"file:{path}", "--out", str(out), *ARGS]) == 2
    assert "--key KEY" in capsys.readouterr().err  # the hint names a flag fwi.invert has
    metrics = run_invert(files["float32"], out, "--start", f"file:{path}", "--key", "b")
    assert metrics["n"] == 2
