"""One owner per output, no debris from killed writers, a bad --out refused before any work."""

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from fwi.data.generate import generate, main
from fwi.data.output import remove_debris
from fwi.data.store import read_info

SIZES = {"train": 4, "val": 4}


def test_a_second_generation_into_the_same_out_refuses_at_once_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "held.h5"
    lock = tmp_path / "held.h5.lock"
    code = ("from fwi.data.generate import generate; "
            f"generate({str(out)!r}, 'tiny', seed=1, sizes={{'train': 400}}, progress=False)")
    holder = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.05)
        assert lock.exists(), "the first generation never took its lock"
        started = time.time()
        # the second generation runs in this process: the holder is another process whatever runs the CLI
        assert main(["--preset", "tiny", "--out", str(out), "--resume", "--no-progress", "--workers", "1"]) == 2
        line = capsys.readouterr().err.strip()
        assert "Traceback" not in line
        assert line.startswith("error:") and len(line.splitlines()) == 1
        assert f"generation into {out} is in use by pid {holder.pid}" in line
        assert time.time() - started < 30 and holder.poll() is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the killed holder's flock: the lock is stale and the next run takes it over
    assert not out.exists()
    generate(out, "tiny", seed=1, sizes=SIZES, overwrite=True, progress=False)
    assert read_info(out).sizes == SIZES and not lock.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "tiny.h5"
    generate(out, "tiny", seed=4, sizes=SIZES, shard=(0, 2), progress=False)  # an interrupted generation
    parts = tmp_path / "tiny.h5.parts"
    dead = _dead_pid()
    debris = [tmp_path / f".tiny.{dead}.139.tmp.h5", parts / f".train-0000004-00004.{dead}.77.tmp.h5",
              parts / f".manifest.{dead}.77.tmp.json"]
    keep = [tmp_path / f".tiny.{sys.modules['os'].getpid()}.1.tmp.h5",  # a live writer's file
            tmp_path / f".other.{dead}.1.tmp.h5"]  # another output's debris: not this target's business
    for path in debris + keep:
        path.write_bytes(b"partial")
    generate(out, "tiny", seed=4, sizes=SIZES, resume=True, progress=False)
    assert not any(p.exists() for p in debris)
    assert all(p.exists() for p in keep)
    assert read_info(out).sizes == SIZES and not parts.exists()
    assert remove_debris(out) == []


def test_the_debris_cleaner_also_cleans_a_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = _dead_pid()
    debris = [run_dir / f".last.{dead}.5.tmp.pt", run_dir / f".metrics.{dead}.5.tmp.jsonl"]
    keep = [run_dir / f".best.{sys.modules['os'].getpid()}.1.tmp.pt",  # a live writer's file
            run_dir / "last.pt", run_dir / ".hidden.tmp"]  # results, and a name fwi.atomic never makes
    for path in debris + keep:
        path.write_bytes(b"x")
    assert sorted(remove_debris(run_dir)) == sorted(debris)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in debris)
    assert "removed 2 temporary file(s)" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["directory", "parent is a file", "unwritable", "parent cannot be created"])
def test_a_bad_out_is_refused_before_any_work(tmp_path, kind, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"directory": tmp_path, "parent is a file": afile / "x.h5", "unwritable": "/proc/fwi-test.h5",
           "parent cannot be created": "/proc/fwi-test/sub/x.h5"}[kind]
    before = sorted(tmp_path.iterdir())
    started = time.time()
    assert main(["--preset", "salt70", "--out", str(out), "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and len(err.strip().splitlines()) == 1 and time.time() - started < 2
    assert sorted(tmp_path.iterdir()) == before  # no parts directory, no lock file: nothing was started


def test_merge_and_shards_keep_working_with_locks(tmp_path):
    out = tmp_path / "sh.h5"
    for i in range(2):
        generate(out, "tiny", seed=4, sizes=SIZES, shard=(i, 2), progress=False)
    assert main(["merge", "--out", str(out)]) == 0
    reference = tmp_path / "ref.h5"
    generate(reference, "tiny", seed=4, sizes=SIZES, progress=False)
    with h5py.File(out, "r") as a, h5py.File(reference, "r") as b:
        for key in ("train/gathers", "val/velocity"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
    assert not list(tmp_path.glob("*.lock"))
