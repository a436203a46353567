"""Generation as shard jobs (`--launcher`): real submitit LocalExecutor jobs, a failed shard, a resume that relaunches
only the unfinished shard, a merge equal to the single-process file; bad option combinations refused up front."""

import re
import sys

import h5py
import pytest

from fwi.data.generate import main
from fwi.data.parts import plan_parts
from fwi.data.presets import PRESETS, get_preset
from fwi.data.shards import shard_log
from fwi.launch import Command, run_command
from fwi.lock import exclusive_lock


def contents(path):
    """Every array and the root attributes that describe the data (normalisation, survey, seed, generator)."""
    with h5py.File(path, "r") as f:
        arrays = {f"{s}/{k}": f[s][k][()] for s in f for k in f[s]}
        attrs = {k: f.attrs[k] for k in ("normalisation", "survey", "seed", "generator")}
    return arrays, attrs


def test_submitit_local_shards_fail_then_resume_and_merge_to_the_single_process_file(tmp_path, capsys, tiny_dataset):
    out = tmp_path / "tiny.h5"
    argv = ["--preset", "tiny", "--out", str(out), "--seed", "0", "--launcher", "submitit-local", "--shards", "2",
            "--workers", "2", "--no-progress"]
    parts_dir = tmp_path / "tiny.h5.parts"
    spec = get_preset("tiny")
    parts = plan_parts(spec.sizes, spec.samples_per_part)

    # shard 1/2 is busy elsewhere (this test holds its lock): its job refuses at once, shard 0/2 finishes
    with exclusive_lock(tmp_path / "tiny.h5.shard-1-of-2.lock", what="a test"):
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    log = shard_log(out.absolute(), (1, 2))
    assert len(err) == 1 and err[0].startswith("error: shard 1/2 of the generation into"), err
    assert str(log) in err[0] and "exit code 2" in err[0] and "is in use by" in err[0]
    assert "run the same command again" in err[0]
    assert "is in use by" in log.read_text()
    assert not out.exists()
    assert all((parts_dir / p.filename).is_file() for p in parts[0::2])  # shard 0's parts are kept
    assert not any((parts_dir / p.filename).exists() for p in parts[1::2])

    # the same command again relaunches shard 1/2 only: shard 0/2 is now held, so running it again would fail
    with exclusive_lock(tmp_path / "tiny.h5.shard-0-of-2.lock", what="a test"):
        assert main(argv) == 0
    captured = capsys.readouterr()
    assert "running 1 of 2 shards (1/2) with --launcher submitit-local" in captured.out, captured
    assert f"wrote {out}" in captured.out

    got, got_attrs = contents(out)
    want, want_attrs = contents(tiny_dataset)  # generate(path, "tiny", seed=0, workers=1): one process
    assert got.keys() == want.keys() == {f"{s}/{k}" for s in ("train", "val", "test")
                                         for k in ("velocity", "salt_mask", "gathers")}
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].tobytes() == want[key].tobytes(), key
    assert got_attrs == want_attrs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.h5"]  # parts, logs, submitit files, locks: gone


@pytest.mark.parametrize("args, message", [
    (["--launcher", "slurm", "--shards", "2"], r"--launcher slurm: no SLURM cluster here .*submitit-local"),
    (["--launcher", "slurm"], r"--launcher slurm needs --shards N"),
    (["--launcher", "local", "--shards", "0"], r"--shards must be >= 1, got 0"),
    (["--launcher", "submitit-local", "--shard", "0/2", "--shards", "2"], r"--shard i/n runs one shard by hand"),
    (["--shard", "0/2", "--shards", "2"], r"--shard i/n runs one shard by hand"),
    (["--shards", "2"], r"--shards needs --launcher local\|slurm\|submitit-local"),
    (["--partition", "cpu", "--cpus", "4"], r"--partition, --cpus only apply with --launcher"),
    (["--launcher", "submitit-local", "--gpus", "-1"], r"--gpus must be >= 0"),
    (["merge", "--launcher", "local"], r"`merge` takes neither"),
])
def test_bad_launcher_options_are_one_error_line_and_nothing_written(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no srun: SLURM is not reachable, wherever this runs
    out = tmp_path / "sub" / "x.h5"
    assert main(["--preset", "tiny", "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0]), err
    assert list(tmp_path.iterdir()) == []  # no output, parts, logs or lock


def test_a_command_with_one_log_gets_both_streams_appended(tmp_path):
    log = tmp_path / "job.log"
    code = "import sys; print('to stdout', flush=True); sys.stderr.write('error: to stderr\\n')"
    for rc in (0, 3):
        cmd = Command([sys.executable, "-c", f"{code}; raise SystemExit({rc})"], stdout=str(log), stderr=str(log))
        assert run_command(cmd) == rc
    lines = log.read_text().splitlines()
    assert [line[:2] for line in lines].count("$ ") == 2
    assert lines.count("to stdout") == 2 and lines.count("error: to stderr") == 2 and lines[-1] == "error: to stderr"


def test_presets_registry_names_and_error():
    assert PRESETS.names()[:1] == ["salt70"] and "tiny" in PRESETS
    valid = "salt70, ablation70, quick, segsalt, fieldsalt, fieldsalt-shifted, tiny"
    with pytest.raises(ValueError, match=rf"^unknown preset 'nope'; valid: {valid}$"):
        get_preset("nope")
