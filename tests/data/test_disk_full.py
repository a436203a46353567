"""A full disk, on a real small tmpfs: generation, conversion and training stop with one ``error:`` line that says
the disk is full and where (no segfault, no h5py or torch traceback), leave nothing that looks like a result, and
continue after space is freed (``--resume``)."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fwi.atomic import DiskFullError
from fwi.checkpoint import load_checkpoint, save_checkpoint
from fwi.cli import friendly_errors
from fwi.data.store import read_info

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size)``: a tmpfs of ``size`` (e.g. "2m") at a fresh directory; ``mount(size, again=DIR)`` resizes it
    (frees space without touching the files). Unmounted at the end; skipped where mounting is not allowed."""
    mounted = []

    def mount(size: str, again: Path | None = None) -> Path:
        where = again or tmp_path / f"fs{len(mounted)}"
        where.mkdir(exist_ok=True)
        opts = f"remount,size={size}" if again else f"size={size}"
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}; needs root)")
        if not again:
            mounted.append(where)
        return where

    yield mount
    for where in mounted:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)


def assert_one_disk_full_line(proc: subprocess.CompletedProcess, where: Path, hint: str) -> str:
    assert proc.returncode not in (0, 139, -11), (proc.returncode, proc.stderr[-2000:])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Errno" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "disk full" in errors[0] and str(where) in errors[0] and hint in errors[0], errors[0]
    return errors[0]


def leftovers(where: Path) -> list[str]:
    """Temporary files anywhere under ``where`` (`fwi.atomic` names them ``.<stem>.<pid>.<thread>.tmp<suffix>``)."""
    return sorted(str(p.relative_to(where)) for p in where.rglob(".*tmp*"))


def test_generation_on_a_full_disk_stops_cleanly_and_resumes(tmpfs):
    fs = tmpfs("2m")  # the tiny preset's five parts take ~2.3 MB, the merged file as much again
    out = fs / "tiny.h5"
    proc = run("fwi.data.generate", "--preset", "tiny", "--out", str(out), "--workers", "1", "--no-progress")
    assert_one_disk_full_line(proc, fs, "--resume")
    assert not out.exists() and leftovers(fs) == []
    kept = sorted(p.name for p in (fs / "tiny.h5.parts").glob("*.h5"))
    assert 0 < len(kept) < 5  # the finished parts, complete (atomic), for --resume

    tmpfs("2600k", again=fs)  # every part fits now, but not the merged file beside them: refused before writing
    proc = run("fwi.data.generate", "--preset", "tiny", "--out", str(out), "--resume", "--workers", "1",
               "--no-progress")
    line = assert_one_disk_full_line(proc, out, "--resume")
    assert "MB needed" in line and not out.exists() and leftovers(fs) == []
    assert len(list((fs / "tiny.h5.parts").glob("*.h5"))) == 5

    tmpfs("8m", again=fs)
    proc = run("fwi.data.generate", "--preset", "tiny", "--out", str(out), "--resume", "--workers", "1",
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert read_info(out, full=True).sizes == {"train": 12, "val": 4, "test": 4}
    assert not (fs / "tiny.h5.parts").exists() and leftovers(fs) == []


def test_convert_on_a_full_disk_stops_cleanly(tmpfs, tiny_dataset):
    fs = tmpfs("1m")  # the float32 conversion of the tiny dataset takes ~2 MB
    out = fs / "compact.h5"
    proc = run("fwi.data.generate", "convert", str(tiny_dataset), "--out", str(out), "--dtype", "float32",
               "--no-progress")
    assert_one_disk_full_line(proc, out, "run the command again")
    assert not out.exists() and leftovers(fs) == []
    tmpfs("4m", again=fs)
    assert run("fwi.data.generate", "convert", str(tiny_dataset), "--out", str(out), "--dtype", "float32",
               "--no-progress").returncode == 0
    assert read_info(out).stamped


def test_training_on_a_full_disk_stops_cleanly_and_resumes(tmpfs, tiny_dataset):
    fs = tmpfs("1m")  # config + two checkpoints of epoch 1 fit (~0.9 MB); epoch 2's checkpoint does not
    args = ("fwi.train", "--config", "configs/tiny.yaml", "--data", str(tiny_dataset), "--out", str(fs),
            "--name", "full", "--epochs", "2", "--wandb", "disabled", "--no-progress", "--misfit-samples", "0")
    proc = run(*args)
    assert_one_disk_full_line(proc, fs / "full", "--resume continues")
    assert "inline_container" not in proc.stderr and leftovers(fs) == []
    assert load_checkpoint(fs / "full" / "last.pt")["epoch"] == 1  # the last complete checkpoint, intact
    tmpfs("4m", again=fs)
    proc = run(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(fs / "full" / "last.pt")["epoch"] == 2 and leftovers(fs) == []


def test_save_checkpoint_on_a_full_disk_keeps_the_previous_one(tmpfs):
    fs = tmpfs("1m")
    path = fs / "last.pt"
    save_checkpoint({"weights": torch.arange(10.0)}, path)
    before = path.read_bytes()
    with pytest.raises(DiskFullError, match=r"disk full: .*last\.pt.*--resume continues") as caught:
        save_checkpoint({"weights": torch.zeros(2**19)}, path)  # 2 MB
    assert caught.value.errno == 28 and isinstance(caught.value, OSError)
    assert path.read_bytes() == before and leftovers(fs) == []
    assert torch.equal(load_checkpoint(path)["weights"], torch.arange(10.0))


def test_any_cli_reports_a_bare_enospc_as_one_disk_full_line(tmpfs, capsys):
    fs = tmpfs("1m")

    @friendly_errors
    def main() -> int:  # a plain Python write, outside fwi.atomic
        (fs / "big.bin").write_bytes(b"\0" * 2**21)
        return 0

    assert main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: disk full: no space left on the device")
