"""Training: embedded dataset generation, exact resume, reproducibility, divergence, W&B offline files, torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fwi.checkpoint import load_checkpoint
from fwi.config import load_config, parse_args
from fwi.data.generate import generate
from fwi.train import main, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


def tiny_args(dataset, out, *extra):
    return ["--config", str(TINY), "--data", str(dataset), "--out", str(out), "--wandb", "disabled",
            "--no-progress", *extra]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fwi.train", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / name)["model"]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(dataset, tmp_path):
    flags = ["--attn", "se", "--skip-attn", "--epochs", "2"]
    straight = train(parse_args(tiny_args(dataset, tmp_path / "a", *flags, "--name", "straight")))
    train(parse_args(tiny_args(dataset, tmp_path / "b", *flags, "--name", "cut", "--stop-after", "1")))
    cut = tmp_path / "b" / "cut"
    assert load_checkpoint(cut / "last.pt")["epoch"] == 1 and not (cut / "summary.json").exists()
    train(parse_args(tiny_args(dataset, tmp_path / "b", *flags, "--name", "cut", "--resume")))
    a, b = weights(straight), weights(cut)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    first_epoch = {k: v for k, v in lines[0].items() if k.startswith("train/")}
    assert first_epoch == {k: v for k, v in json.loads((straight / "metrics.jsonl").read_text().splitlines()[0]).items()
                           if k.startswith("train/")}
    # the same seed gives the same curve; another seed another one
    other = train(parse_args(tiny_args(dataset, tmp_path / "c", *flags, "--seed", "1", "--name", "seed1")))
    assert not torch.equal(weights(other)["head.velocity.weight"] if "head.velocity.weight" in a else
                           next(iter(weights(other).values())), next(iter(a.values())))


def test_a_resume_under_another_thread_count_is_recorded_and_announced(dataset, tmp_path, capsys):
    """Float reductions follow the thread count, so exact resume needs the same count: each epoch records the count
    it ran with, and a resume under another count says so (how an unexplained curve difference is traced)."""
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2
    args = tiny_args(dataset, tmp_path, "--epochs", "2", "--name", "threads")
    train(parse_args([*args, "--stop-after", "1"]))
    capsys.readouterr()
    torch.set_num_threads(other)
    try:
        train(parse_args([*args, "--resume"]))
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert f"epoch 1 ran with {threads} torch thread(s), this process has {other}" in out
    lines = [json.loads(line) for line in (tmp_path / "threads" / "metrics.jsonl").read_text().splitlines()]
    assert [r["torch_threads"] for r in lines] == [threads, other]


def test_outputs_and_checkpoint_contents(dataset, tmp_path, capsys):
    run = train(parse_args(tiny_args(dataset, tmp_path, "--name", "r", "--epochs", "2")))
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "summary.json", "predictions.png"):
        assert (run / name).exists(), name
    state = load_checkpoint(run)  # a run dir resolves to best.pt, loaded with weights_only=True
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["val/mae"])
    assert state["epoch"] == best["epoch"] and state["best"] == pytest.approx(best["val/mae"])
    cfg = load_config(run / "config.yaml")
    for rec in history:  # the validation loss (losses.py) agrees with the metrics (metrics.py): L1 = MAE, no SSIM
        w = cfg.loss.salt_weight
        assert rec["val/loss"] == pytest.approx(rec["val/mae"] + w * (rec["val/salt_bce"] + rec["val/salt_dice"]))
        assert 0 < rec["val/salt_dice"] < 1 and rec["val/salt_bce"] > 0
    assert load_config(run / "config.yaml").data.data == str(dataset)  # the resolved config is saved
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val/mae"] == pytest.approx(best["val/mae"], rel=1e-5)
    from fwi.models.build import build_model
    from fwi.models.complexity import count_flops
    shape = tuple(summary["data_shape"])  # FLOPs recorded for the ablation report, from the config alone
    cfg = load_config(run / "config.yaml")
    assert summary["flops"] == count_flops(build_model(cfg.model, shape, (32, 33)), torch.zeros(1, *shape)) > 0
    # refusing to clobber a finished run
    capsys.readouterr()
    assert main(tiny_args(dataset, tmp_path, "--name", "r")) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err


def test_records_of_a_run_whose_checkpoint_is_gone_are_started_anew(dataset, tmp_path, capsys):
    # a committed ablation cell on a fresh machine: config and metrics are there, the (ignored) weights are not
    run = tmp_path / "lost"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "val/mae": 9.0}) + "\n" for e in (1, 2, 3)))
    (run / "summary.json").write_text(json.dumps({"best_epoch": 3, "val/mae": 9.0}))
    (run / "eval-test").mkdir()
    (run / "eval-test" / "metrics.json").write_text(json.dumps({"mae": 9.0}))
    train(parse_args(tiny_args(dataset, tmp_path, "--name", "lost", "--epochs", "1")))
    assert not (run / "eval-test").exists()  # the test metrics of the earlier weights would mislead
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1] and history[0]["val/mae"] < 9.0
    assert json.loads((run / "summary.json").read_text())["best_epoch"] == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_memory_layout_changes_only_rounding(dataset, tmp_path):
    """optim.channels_last (default) and the NCHW layout train the same network up to float rounding."""
    nhwc = train(parse_args(tiny_args(dataset, tmp_path, "--name", "nhwc", "--epochs", "1")))
    nchw = train(parse_args(tiny_args(dataset, tmp_path, "--name", "nchw", "--epochs", "1", "--no-channels-last")))
    a, b = weights(nhwc), weights(nchw)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4), k
    moved = sum(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    assert moved > 0  # the two runs really used different kernels


def test_missing_dataset_is_generated_first(dataset, tmp_path, capsys):
    data = tmp_path / "made.h5"
    rc = main(tiny_args(data, tmp_path / "runs", "--epochs", "1", "--name", "x"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "generating preset 'tiny'" in out and data.exists()
    assert "val MAE" in out and "note:" not in err
    # a file made from the same preset with other sizes is used, with a note
    other = generate(tmp_path / "other.h5", "tiny", seed=0, sizes={"train": 4, "val": 2, "test": 2}, progress=False)
    rc = main(tiny_args(other, tmp_path / "runs", "--epochs", "1", "--name", "y"))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "holds preset 'tiny' with train 4, val 2, test 2; the preset now has train 12, val 4, test 4" in err


def test_divergence_stops_with_a_clear_message_and_keeps_only_good_checkpoints(dataset, tmp_path):
    # the one training run of this module through `python -m fwi.train`: the entry point's exit status
    proc = run_cli(*tiny_args(dataset, tmp_path, "--name", "nan", "--lr", "1e30", "--grad-clip", "0",
                              "--epochs", "3"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the loss became" in proc.stderr and "Traceback" not in proc.stderr
    last = tmp_path / "nan" / "last.pt"
    if last.exists():  # diverged after at least one finished epoch: that checkpoint is finite
        state = load_checkpoint(last)
        assert state["epoch"] < 3
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("flags, message", [
    (["--attn", "nope", "--skip-attn"], "valid"),
    (["--attn", "ca"], "--skip-attn"),
    (["--bogus-flag", "1"], "bogus"),
    (["--decoder", "nope"], "('unet', 'mix')"),  # tyro wraps this message over two lines: all of it is kept
])
def test_bad_flags_are_rejected_with_the_choices(dataset, tmp_path, capsys, flags, message):
    assert main(tiny_args(dataset, tmp_path, *flags)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "unet-s0").exists() or not any((tmp_path / "unet-s0").glob("*.pt"))


def test_unknown_yaml_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("  epochs: 2", "  epochs: 2\n  epochz: 3")
                   .replace("base: default.yaml", f"base: {TINY.parent / 'default.yaml'}"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epochz'\].*valid keys"):
        load_config(bad)


def test_wandb_offline_run_files_hold_config_tags_and_metrics(dataset, tmp_path):
    run = train(parse_args(tiny_args(dataset, tmp_path, "--name", "wb", "--epochs", "1", "--wandb", "offline",
                                     "--attn", "eca", "--encoder-attn", "--group", "abl")))
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    (log,) = offline[0].glob("run-*.wandb")
    data = log.read_bytes()
    for needle in (b"attn:eca", b"place:encoder_attn", b"physics:off", b"abl", b"val/mae", b"val/predictions"):
        assert needle in data, needle
    assert (run / "wandb_id").read_text().strip() in offline[0].name


def test_torchrun_two_cpu_processes(dataset, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
         "-m", "fwi.train", *tiny_args(dataset, tmp_path, "--name", "ddp", "--epochs", "1")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # only rank 0 writes
    assert proc.stdout.count("epoch 1/1") == 1 and proc.stdout.count("parameters") == 1  # only rank 0 logs
    state = load_checkpoint(run / "last.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
