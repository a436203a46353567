"""Dataset generation: determinism, resumption, sharding, atomic output, clear errors."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from fwi.data.generate import generate
from fwi.data.parts import merge_parts, plan_parts
from fwi.data.presets import get_preset
from fwi.data.store import DatasetError, read_info

SIZES = {"train": 6, "val": 2, "test": 2}


def arrays(path):
    with h5py.File(path, "r") as f:
        return {f"{s}/{k}": f[s][k][()] for s in f for k in f[s]}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "tiny.h5"
    generate(path, "tiny", seed=5, sizes=SIZES, progress=False)
    return path


def test_layout_attributes_and_physics(reference):
    info = read_info(reference)
    survey = get_preset("tiny").survey
    assert info.survey == survey and info.sizes == SIZES
    assert info.attrs["seed"] == 5 and "deepwave" in info.attrs["versions"]
    data = arrays(reference)
    assert data["train/velocity"].shape == (6, 1, survey.nz, survey.nx) and data["train/velocity"].dtype == np.float32
    assert data["train/salt_mask"].dtype == np.uint8
    assert data["train/gathers"].shape == (6, *survey.data_shape)
    # masks mark the salt velocities; normalisation bounds are the train split's extremes
    v, m = data["train/velocity"], data["train/salt_mask"].astype(bool)
    assert m.any() and v[m].min() >= 4300 and v[~m].max() < 4400
    assert info.normalisation["v_min"] == pytest.approx(v.min())
    assert info.normalisation["v_max"] == pytest.approx(v.max())
    with h5py.File(reference, "r") as f:
        assert f["train/gathers"].chunks == (1, *survey.data_shape) and f["train/gathers"].compression == "gzip"


def test_same_seed_same_dataset_and_workers_do_not_matter(reference, tmp_path):
    again = tmp_path / "again.h5"
    generate(again, "tiny", seed=5, sizes=SIZES, workers=2, progress=False)
    assert_same(arrays(reference), arrays(again))
    other = tmp_path / "other.h5"
    generate(other, "tiny", seed=6, sizes=SIZES, progress=False)
    assert not np.array_equal(arrays(other)["train/velocity"], arrays(reference)["train/velocity"])


def test_interrupted_generation_resumes_to_the_same_file(reference, tmp_path):
    out = tmp_path / "tiny.h5"
    generate(out, "tiny", seed=5, sizes=SIZES, shard=(0, 2), progress=False)  # as if killed half way
    parts_dir = tmp_path / "tiny.h5.parts"
    done = sorted(p.name for p in parts_dir.glob("*.h5"))
    assert 0 < len(done) < len(plan_parts(SIZES, 4)) and not out.exists()
    # a part cut short by the kill (unreadable) and a stray temp file must not break the resume
    (parts_dir / plan_parts(SIZES, 4)[1].filename).write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    (parts_dir / ".train-x.123.tmp").write_bytes(b"partial")
    with pytest.raises(FileExistsError, match="--resume"):
        generate(out, "tiny", seed=5, sizes=SIZES, progress=False)
    generate(out, "tiny", seed=5, sizes=SIZES, resume=True, progress=False)
    assert_same(arrays(reference), arrays(out))
    assert not parts_dir.exists()


def test_shards_merge_to_the_single_run_result(reference, tmp_path):
    out = tmp_path / "sharded.h5"
    dirs = []
    for i in range(2):  # each shard in its own directory, as on separate machines
        shard_out = tmp_path / f"machine{i}" / "sharded.h5"
        generate(shard_out, "tiny", seed=5, sizes=SIZES, shard=(i, 2), progress=False)
        dirs.append(shard_out.with_name("sharded.h5.parts"))
    with pytest.raises(DatasetError, match="missing"):
        merge_parts(out, dirs[:1], cleanup=False)
    assert not out.exists()
    merge_parts(out, dirs)
    assert_same(arrays(reference), arrays(out))


def test_cli_refuses_to_overwrite_and_reports_one_line(reference):
    before = reference.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "fwi.data.generate", "--preset", "tiny", "--out", str(reference)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert reference.read_bytes() == before


def test_corrupt_file_gives_a_clear_error(reference, tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(reference.read_bytes()[: reference.stat().st_size // 3])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        read_info(broken)
    with pytest.raises(DatasetError, match="does not exist"):
        read_info(tmp_path / "nope.h5")
    not_ours = tmp_path / "other.h5"
    with h5py.File(not_ours, "w") as f:
        f["x"] = 1
    with pytest.raises(DatasetError, match="not an fwi dataset"):
        read_info(not_ours)


def test_kill_9_mid_generation_then_resume(tmp_path):
    """A real SIGKILL while parts are being written: the output never appears half-made and --resume completes it."""
    import signal
    import time

    sizes = {"train": 120}
    out = tmp_path / "killed.h5"
    code = ("import sys; from fwi.data.generate import generate; "
            f"generate({str(out)!r}, 'tiny', seed=3, sizes={sizes!r}, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    parts_dir = tmp_path / "killed.h5.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts_dir.glob("train-*.h5"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(parts_dir.glob("train-*.h5")))
    assert 3 <= n_done < 30 and not out.exists()
    generate(out, "tiny", seed=3, sizes=sizes, resume=True, progress=False)
    reference = tmp_path / "reference.h5"
    generate(reference, "tiny", seed=3, sizes=sizes, progress=False)
    assert_same(arrays(reference), arrays(out))


def test_merge_copies_compressed_parts_as_they_are_and_reads_old_uncompressed_ones(tmp_path):
    from fwi.data.modelling import model_part
    from fwi.data.parts import Part, write_part
    from fwi.data.store import write_dataset

    preset = get_preset("tiny")
    part = Part("train", 0, 3)
    block = model_part(part, 0, preset.survey, preset.geology)
    write_part(tmp_path, part, block, preset.survey)  # the worker's compressed part
    with h5py.File(tmp_path / "old.h5", "w") as f:  # a part as earlier versions wrote it: plain arrays
        for key, value in block.items():
            f.create_dataset(key, data=value)
    outs = {}
    for name, source in (("copied", tmp_path / part.filename), ("old", tmp_path / "old.h5"), ("dict", None)):
        outs[name] = tmp_path / f"out-{name}.h5"
        if source is None:
            write_dataset(outs[name], {"train": block}, preset.survey)
            continue
        with h5py.File(source, "r") as f:
            write_dataset(outs[name], {"train": [(slice(0, 3), f)]}, preset.survey, sizes={"train": 3})
    assert_same(arrays(outs["copied"]), arrays(outs["dict"]))
    assert_same(arrays(outs["old"]), arrays(outs["dict"]))
    infos = {name: read_info(path) for name, path in outs.items()}
    assert infos["copied"].normalisation == infos["old"].normalisation == infos["dict"].normalisation
    with h5py.File(outs["copied"], "r") as a, h5py.File(outs["dict"], "r") as b:  # the very same gzip streams
        for i in range(3):
            assert a["train/gathers"].id.read_direct_chunk((i, 0, 0, 0)) == \
                b["train/gathers"].id.read_direct_chunk((i, 0, 0, 0))
    bad = dict(block, gathers=np.full_like(block["gathers"], np.nan))
    with pytest.raises(DatasetError, match="NaN"):
        write_part(tmp_path, Part("train", 3, 3), bad, preset.survey)
    assert not (tmp_path / Part("train", 3, 3).filename).exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_compact_preset_is_generated_as_generate_then_convert_would_write_it(tmp_path, workers, monkeypatch):
    """A preset with a compact storage (fieldsalt's) writes the decimated int16 file directly: the same gathers,
    masks, velocities and normalisation as a float32 generation converted afterwards, and one checksummed file."""
    import dataclasses

    from fwi.data.codec import GatherStorage
    from fwi.data.convert import convert
    from fwi.data.dataset import FWIDataset
    from fwi.data.presets import PRESETS

    storage = GatherStorage(time_decimation=3, encoding="int16", compression="zstd")
    name = f"tiny-int16-k3-w{workers}"
    preset = dataclasses.replace(get_preset("tiny"), storage=storage, sizes={"train": 5, "val": 2})
    monkeypatch.setitem(PRESETS._table, name, preset)  # registered for this test only
    direct = generate(tmp_path / "direct.h5", name, seed=3, workers=workers, progress=False)
    full = generate(tmp_path / "full.h5", "tiny", seed=3, workers=1, progress=False, sizes={"train": 5, "val": 2})
    converted = convert(full, tmp_path / "converted.h5", time_decimation=3, encoding="int16", progress=False)
    a, b = read_info(direct), read_info(converted)
    assert a.storage == b.storage == storage and a.sizes == b.sizes == {"train": 5, "val": 2}
    assert a.normalisation == b.normalisation  # the full-rate train statistics, as convert keeps them
    with h5py.File(direct, "r") as f, h5py.File(converted, "r") as g:
        for key in ("velocity", "salt_mask", "gathers", "gathers_scale"):
            assert np.array_equal(f["train"][key][()], g["train"][key][()]), key
        assert f["train/gathers"].fletcher32 and f["train/gathers"].dtype == np.int16
    raw = FWIDataset(direct, "train", normalize=False, time_decimation=3)[4]["gathers"]
    assert raw.shape == (3, 100, 33)  # 300 samples decimated 3x
    assert not (tmp_path / "direct.h5.parts").exists()


def test_running_normalisation_equals_the_transform_of_every_sample(tiny_dataset):
    """The gather bounds come from the extremes only (the transform is monotonic): bit for bit the min/max of
    sign(g) log1p(|g|) over every sample, as the normalisation of recorded datasets was computed."""
    from fwi.data.store import RunningNormalisation
    from fwi.data.transforms import signed_log1p

    with h5py.File(tiny_dataset, "r") as f:
        velocity, gathers = f["train/velocity"][()], f["train/gathers"][()]
    stats = RunningNormalisation()
    for i in range(0, len(gathers), 5):
        stats.update(velocity[i:i + 5], gathers[i:i + 5])
    full = signed_log1p(gathers)
    result = stats.result()
    assert (result["g_min"], result["g_max"]) == (float(full.min()), float(full.max()))
    assert (result["v_min"], result["v_max"]) == (float(velocity.min()), float(velocity.max()))
    assert result == read_info(tiny_dataset).normalisation
