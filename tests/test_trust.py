"""Runs you can trust: one owner per run directory, resume that refuses what it cannot honour, records that agree
with the checkpoint after a kill, no debris, divergence that keeps a good checkpoint, one-line CLI errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fwi.checkpoint import CheckpointError, load_checkpoint
from fwi.config import load_config, parse_args
from fwi.continuation import resume_conflicts
from fwi.train import main, non_finite_tensors, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


def args(dataset, out, *extra):
    return ["--config", str(TINY), "--data", str(dataset), "--out", str(out), "--wandb", "disabled",
            "--no-progress", "--misfit-samples", "0", *extra]


def cli(*argv, env=None, wait=True):
    cmd = [sys.executable, "-m", "fwi.train", *argv]
    env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)


def test_a_second_training_of_the_same_run_refuses_at_once_naming_the_holder(tiny_dataset, tmp_path):
    first = cli(*args(tiny_dataset, tmp_path, "--name", "r", "--epochs", "3"), wait=False)
    lock = tmp_path / ".r.lock"
    deadline = time.time() + 60
    while not (lock.exists() and lock.read_text()) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert lock.exists(), first.communicate()
    os.kill(first.pid, signal.SIGSTOP)  # hold it there: the tiny run would otherwise finish before the second starts
    try:
        second = cli(*args(tiny_dataset, tmp_path, "--name", "r", "--epochs", "3", "--overwrite"))
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and "in use by pid" in err[0] and str(first.pid) in err[0]
    assert first.wait(timeout=300) == 0  # the holder was not disturbed ...
    assert not lock.exists()  # ... and released the lock
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 3


def test_resume_refuses_changed_settings_before_writing_anything(tiny_dataset, tmp_path, capsys):
    train(parse_args(args(tiny_dataset, tmp_path, "--name", "r", "--stop-after", "1")))
    run = tmp_path / "r"
    before = (run / "config.yaml").read_text(), (run / "last.pt").read_bytes()
    for flags, key in [(["--lr", "0.01"], "optim.lr"), (["--seed", "3"], "optim.seed"),
                       (["--no-mirror"], "data.mirror"), (["--batch-size", "2"], "optim.batch_size"),
                       (["--epochs", "5"], "optim.epochs")]:
        capsys.readouterr()
        assert main(args(tiny_dataset, tmp_path, "--name", "r", "--resume", *flags)) == 2
        line = capsys.readouterr().err.strip().splitlines()
        assert len(line) == 1 and key in line[0] and "--resume would not continue" in line[0]
        assert ((run / "config.yaml").read_text(), (run / "last.pt").read_bytes()) == before
    # what cannot change the result is allowed
    ok = main(args(tiny_dataset, tmp_path, "--name", "r", "--resume", "--device", "cpu", "--num-workers", "0",
                   "--cache-gb", "0"))
    assert ok == 0, capsys.readouterr().err
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_resume_conflicts_lists_only_result_changing_keys():
    a = load_config(TINY).to_dict()
    b = json.loads(json.dumps(a))
    b["optim"]["device"], b["run"]["progress"], b["data"]["num_workers"] = "cuda", True, 4
    assert resume_conflicts(b, a) == []
    b["optim"]["lr"] = 0.5
    assert resume_conflicts(b, a) == [f"optim.lr ({a['optim']['lr']!r} -> 0.5)"]


@pytest.mark.parametrize("point", ["after-last", "after-best"])
def test_a_kill_between_checkpoint_and_records_is_repaired_on_resume(tiny_dataset, tmp_path, point):
    flags = args(tiny_dataset, tmp_path, "--name", "k")
    killed = cli(*flags, env={"FWI_KILL_AT": f"{point}:1"})
    assert killed.returncode == -9
    run = tmp_path / "k"
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 1 and not (run / "metrics.jsonl").exists()  # the window the issue describes
    if point == "after-last":
        assert not (run / "best.pt").exists()  # best.pt lags last.pt's best epoch
    (run / ".last.99999.0.tmp.pt").write_bytes(b"half-written")  # debris of a killed writer
    assert main([*flags, "--resume"]) == 0  # the resume runs in process; only the kill needs a child
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    final = load_checkpoint(run / "last.pt")
    assert records == final["history"]
    assert load_checkpoint(run / "best.pt")["epoch"] == final["best_epoch"]
    assert not list(run.glob(".*.tmp*"))


def test_non_finite_weights_and_batchnorm_statistics_are_found():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert non_finite_tensors(net) == []
    net[1].running_var[0] = float("nan")
    net[0].weight.data[0, 0, 0, 0] = float("inf")
    assert non_finite_tensors(net) == ["0.weight", "1.running_var"]


def test_divergence_in_the_first_epoch_says_no_checkpoint_exists(tiny_dataset, tmp_path, capsys):
    assert main(args(tiny_dataset, tmp_path, "--name", "d", "--lr", "1e30", "--grad-clip", "0")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "epoch 1" in line
    assert not (tmp_path / "d" / "last.pt").exists()
    assert "No checkpoint was written yet" in line or "last good checkpoint" not in line


def test_nan_in_the_data_is_a_data_error(tiny_dataset, tmp_path, capsys):
    import h5py
    import shutil

    bad = tmp_path / "bad.h5"
    shutil.copy(tiny_dataset, bad)
    with h5py.File(bad, "r+") as f:  # behind the writer's back: the stamp no longer matches, or the check finds it
        g = f["train/gathers"][0]
        g[0, 0, 0] = float("nan")
        f["train/gathers"][0] = g
    assert main(args(bad, tmp_path, "--name", "n")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(bad) in line and "lower --lr" not in line


def test_cli_errors_are_one_line_with_the_valid_range(tmp_path, capsys):
    # in process (main's return value is the exit status); the `python -m fwi.train` entry point's exit 2 and one
    # line are checked by the lock test above
    cases = {("--lrr", "1e-3"): "did you mean --lr", ("--stop-after", "-1"): "run.stop_after",
             ("--grad-clip", "-1"): "optim.grad_clip", ("--epochs", "abc"): "--epochs INT"}
    for flags, expected in cases.items():
        rc = main(["--config", str(TINY), *flags])
        stderr = capsys.readouterr().err
        lines = stderr.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
        assert "╭" not in stderr
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("optim:\n  lr: 1e-3\n")  # YAML 1.1 reads this as a string
    assert load_config(yaml_file).optim.lr == 1e-3
    yaml_file.write_text("optim:\n  batch_size: true\n")
    with pytest.raises(ValueError, match="batch_size"):
        load_config(yaml_file)


def test_a_refused_checkpoint_never_suggests_weights_only_false(tmp_path):
    import argparse

    path = tmp_path / "evil.pt"
    torch.save({"format": "fwi-checkpoint", "x": argparse.Namespace(a=1)}, path)  # not an allowed global
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)


def test_a_symlink_to_a_held_run_directory_takes_the_same_lock(tiny_dataset, tmp_path):
    from fwi.lock import run_lock

    (tmp_path / "r").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "r", target_is_directory=True)
    with run_lock(tmp_path / "r"):  # a trainer of runs/r holds it
        second = cli(*args(tiny_dataset, tmp_path, "--name", "alias", "--epochs", "1"))
    assert second.returncode == 2
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and "in use by pid" in err[0] and str(os.getpid()) in err[0]
    assert list((tmp_path / "r").iterdir()) == []  # nothing was written through the link


def test_a_dataset_with_an_empty_validation_split_is_refused_before_training(tmp_path, capsys):
    from fwi.data.generate import generate

    data = generate(tmp_path / "noval.h5", "tiny", seed=0, workers=1, progress=False,
                    sizes={"train": 4, "val": 0, "test": 1})
    assert main(args(data, tmp_path / "runs", "--name", "r", "--batch-size", "2")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "empty 'val' split" in err[0]
    assert not (tmp_path / "runs" / "r").exists()  # refused before anything was written


def test_a_time_decimation_that_leaves_no_usable_record_is_refused(tiny_dataset, tmp_path, capsys):
    assert main(args(tiny_dataset, tmp_path, "--name", "d", "--time-decimation", "1000")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "1 of 300 time samples" in err[0] and "valid range 1..13" in err[0]
    assert not (tmp_path / "d").exists()


def test_generation_refuses_zero_workers_in_one_line(tmp_path):
    from fwi.data.generate import main as generate_main

    with pytest.raises(SystemExit) as stop:
        generate_main(["--preset", "tiny", "--out", str(tmp_path / "g.h5"), "--workers", "0"])
    assert stop.value.code == 2 and not (tmp_path / "g.h5").exists()
