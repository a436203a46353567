"""Damage on disk is found: 64 flipped bytes inside one chunk of a real converted file make `verify` fail naming
the split and the sample, and a read of that sample fail; the other samples still read as before."""

import subprocess

import h5py
import hdf5plugin
import numpy as np
import pytest
import torch

from fwi.data.codec import GatherStorage
from fwi.data.convert import convert
from fwi.data.dataset import FWIDataset
from fwi.data.generate import generate
from fwi.data.generate import main as generate_main
from fwi.data.store import DatasetError, read_info, stamp

DAMAGED = 5


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    path = tmp_path_factory.mktemp("integrity") / "tiny.h5"
    generate(path, "tiny", seed=1, sizes={"train": 8, "val": 2}, progress=False)
    return path


def flip_bytes(path, dataset: str, sample: int, n: int = 64) -> None:
    """Invert ``n`` bytes in the middle of the stored chunk of ``sample`` (found with h5py's chunk index)."""
    with h5py.File(path, "r") as f:
        d = f[dataset]
        chunk = d.id.get_chunk_info_by_coord((sample,) + (0,) * (d.ndim - 1))
    assert chunk.size > 2 * n
    start = chunk.byte_offset + chunk.size // 2 - n // 2
    with open(path, "r+b") as fh:
        fh.seek(start)
        data = fh.read(n)
        fh.seek(start)
        fh.write(bytes(b ^ 0xFF for b in data))


def verify_cli(path, capsys) -> subprocess.CompletedProcess:
    """``python -m fwi.data.generate verify PATH`` (its ``main``, in this process): exit code, stdout, stderr."""
    capsys.readouterr()
    code = generate_main(["verify", str(path), "--no-progress"])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([], code, out, err)


@pytest.mark.parametrize("dtype,k", [("int16", 1), ("float16", 1), ("int16", 4), ("float16", 3)])
def test_damage_inside_a_compact_chunk_is_found_by_verify_and_by_a_read(full, tmp_path, dtype, k, capsys):
    out = convert(full, tmp_path / f"c-{dtype}-{k}.h5", time_decimation=k, encoding=dtype, progress=False)
    with h5py.File(out, "r") as f:
        assert all(f["train"][key].fletcher32 for key in f["train"])  # every array of a compact file is checked
    assert read_info(out).unprotected == ()
    before = FWIDataset(out, "train", time_decimation=k)
    samples = [before[i] for i in range(len(before))]
    flip_bytes(out, "train/gathers", DAMAGED)

    proc = verify_cli(out, capsys)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "ok:" not in proc.stdout and "Traceback" not in proc.stderr
    assert len(errors) == 1 and f"train sample {DAMAGED} (gathers) damaged" in errors[0], proc.stderr
    assert str(out) in errors[0]

    read_info(out)  # the chunk index is unchanged: opening still works, the damage shows when the chunk is read
    after = FWIDataset(out, "train", time_decimation=k)
    with pytest.raises(DatasetError, match=rf"sample {DAMAGED} of 'train' cannot be read"):
        after[DAMAGED]
    for i in (0, DAMAGED - 1, DAMAGED + 1, len(after) - 1):  # the neighbours are untouched and read as before
        assert torch.equal(after[i]["gathers"], samples[i]["gathers"])
        assert torch.equal(after[i]["velocity"], samples[i]["velocity"])


def test_damage_in_a_velocity_chunk_and_in_a_gzip_file_is_named_too(full, tmp_path, capsys):
    out = convert(full, tmp_path / "v.h5", time_decimation=2, encoding="int16", progress=False)
    flip_bytes(out, "val/velocity", 1, n=16)
    proc = verify_cli(out, capsys)
    assert proc.returncode == 2 and "val sample 1 (velocity) damaged" in proc.stderr, proc.stderr
    plain = tmp_path / "plain.h5"  # the original layout (gzip: zlib's Adler-32)
    plain.write_bytes(full.read_bytes())
    flip_bytes(plain, "train/gathers", 2)
    proc = verify_cli(plain, capsys)
    assert proc.returncode == 2 and "train sample 2 (gathers) damaged" in proc.stderr, proc.stderr
    target = tmp_path / "from-damaged.h5"  # converting a damaged file stops at the damage, naming it
    assert generate_main(["convert", str(plain), "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train sample 2 (gathers) damaged" in err and not target.exists()


def without_checksums(src, dst) -> None:
    """Rewrite ``src`` as compact files were written before the checksum: the same arrays, Zstd + shuffle only."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for key, value in a.attrs.items():
            b.attrs[key] = value
        for split in a:
            group = b.create_group(split)
            for key, d in a[split].items():
                group.create_dataset(key, data=d[()], chunks=d.chunks, shuffle=True, **hdf5plugin.Zstd(clevel=3))
    stamp(dst, by="test")


def test_a_compact_file_without_checksums_is_reported_as_unchecked_not_ok(full, tmp_path, capsys):
    new = convert(full, tmp_path / "new.h5", time_decimation=2, encoding="int16", progress=False)
    old = tmp_path / "old.h5"
    without_checksums(new, old)
    info = read_info(old)
    assert info.storage == GatherStorage(2, "int16", "zstd") and "train/gathers" in info.unprotected
    proc = verify_cli(old, capsys)
    assert proc.returncode == 0 and "cannot be checked for damage" in proc.stdout, proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no checksum" in warnings[0] and "gathers" in warnings[0]
    # why the warning matters: the same damage in such a file decodes silently to other numbers
    reference = FWIDataset(old, "train", time_decimation=2)[DAMAGED]["gathers"]
    flip_bytes(old, "train/gathers", DAMAGED)
    damaged = FWIDataset(old, "train", time_decimation=2)[DAMAGED]["gathers"]
    assert not torch.equal(damaged, reference)
    assert verify_cli(old, capsys).returncode == 0  # nothing could have found it


def test_a_float32_compact_file_is_checked_and_reads_as_before(full, tmp_path, capsys):
    out = convert(full, tmp_path / "f32.h5", time_decimation=1, encoding="float32", progress=False)
    with h5py.File(out, "r") as f, h5py.File(full, "r") as g:
        assert f["train/gathers"].fletcher32 and np.array_equal(f["train/gathers"][()], g["train/gathers"][()])
    proc = verify_cli(out, capsys)
    assert proc.returncode == 0 and proc.stdout.startswith("ok:") and "warning" not in proc.stderr
