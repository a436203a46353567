"""Datasets, normalisation, decimation and the mirror symmetry."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fwi.data.dataset import FWIDataset, OpenFWIDataset
from fwi.data.generate import generate
from fwi.data.store import DatasetError
from fwi.data.transforms import Normalizer, decimate_time, mirror_sample
from fwi.physics import Survey, forward_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "tiny.h5"
    generate(path, "tiny", seed=1, sizes={"train": 8, "val": 2}, progress=False)
    return path


def test_normalisation_round_trip_and_range(tiny):
    raw = FWIDataset(tiny, "train", normalize=False)
    norm = FWIDataset(tiny, "train")
    n = norm.normalizer
    g = torch.stack([raw[i]["gathers"] for i in range(len(raw))])
    v = torch.stack([raw[i]["velocity"] for i in range(len(raw))])
    gn = torch.stack([norm[i]["gathers"] for i in range(len(norm))])
    vn = torch.stack([norm[i]["velocity"] for i in range(len(norm))])
    # min-max over the train split: exactly [-1, 1]
    assert gn.min() == pytest.approx(-1, abs=1e-5) and gn.max() == pytest.approx(1, abs=1e-5)
    assert vn.min() == pytest.approx(-1, abs=1e-5) and vn.max() == pytest.approx(1, abs=1e-5)
    # independent recomputation of the OpenFWI transform
    logg = torch.sign(g) * torch.log1p(g.abs())
    expected = 2 * (logg - logg.min()) / (logg.max() - logg.min()) - 1
    assert torch.allclose(gn, expected, atol=1e-5)
    assert torch.allclose(n.gathers_inverse(gn), g, rtol=1e-4, atol=1e-4 * g.abs().max())
    assert torch.allclose(n.velocity_inverse(vn), v, rtol=1e-5)
    assert np.allclose(n.velocity(v.numpy()), vn.numpy(), atol=1e-6)  # numpy and torch agree


def test_mirroring_is_an_exact_symmetry_of_forward_modelling():
    survey = Survey(nz=24, nx=31, dx=10.0, nt=200, dt=0.001, n_sources=3, n_receivers=31)
    assert survey.mirror_mismatch() == 0
    gen = torch.Generator().manual_seed(0)
    v = 1800 + 1800 * torch.rand(24, 31, generator=gen)
    g = forward_model(v, survey)
    g_mirrored_model = forward_model(torch.flip(v, (-1,)), survey)
    mg, mv = mirror_sample(g, v)
    assert torch.equal(mv, torch.flip(v, (-1,)))
    assert torch.allclose(mg, g_mirrored_model, atol=1e-5 * g.abs().max())
    assert not torch.allclose(g, g_mirrored_model, atol=1e-2 * g.abs().max())  # the model is not symmetric itself


def test_mirror_augmentation_flips_about_half_the_samples(tiny):
    plain, mirrored = FWIDataset(tiny, "train"), FWIDataset(tiny, "train", mirror=True)
    flips = 0
    for epoch in range(5):
        mirrored.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], mirrored[i]
            if torch.equal(a["velocity"], b["velocity"]):
                continue
            flips += 1
            assert torch.equal(b["velocity"], torch.flip(a["velocity"], (-1,)))
            assert torch.equal(b["gathers"], torch.flip(a["gathers"], (0, 2)))
            assert torch.equal(b["salt_mask"], torch.flip(a["salt_mask"], (-1,)))
    assert 10 <= flips <= 30  # 40 draws at p = 0.5
    mirrored.set_epoch(3)
    again = FWIDataset(tiny, "train", mirror=True)
    again.set_epoch(3)
    assert all(torch.equal(mirrored[i]["velocity"], again[i]["velocity"]) for i in range(len(plain)))
    with pytest.raises(ValueError, match="symmetric"):
        FWIDataset(tiny, "train", mirror=True).transform.__class__(
            None, Survey(nz=20, nx=40, n_sources=2, source_x=(0.0, 100.0), n_receivers=10), mirror=True)


def test_memory_cache_returns_the_same_samples_in_every_epoch(tiny):
    plain = FWIDataset(tiny, "train", time_decimation=3, mirror=True, seed=4)
    cached = FWIDataset(tiny, "train", time_decimation=3, mirror=True, seed=4, cache_gb=1.0)
    for epoch in range(3):  # epoch 0 fills the cache, later epochs mirror cached samples
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            for key in ("gathers", "velocity", "salt_mask"):
                assert torch.allclose(a[key], b[key], atol=1e-6), (epoch, i, key)
    assert sorted(cached.cache) == list(range(len(cached)))
    held = sum(t.numel() * t.element_size() for sample in cached.cache.values() for t in sample)
    assert held == cached.cache_bytes()
    # the cache never hands out a flipped copy as the stored sample
    assert all(torch.allclose(cached.cache[i][1], plain.transform.prepare(*(
        plain._group()[k][i] for k in ("gathers", "velocity", "salt_mask")))[1]) for i in range(len(cached)))
    too_small = FWIDataset(tiny, "train", time_decimation=3, cache_gb=0.9 * held / 2**30)
    assert too_small.cache is None
    # every cached sample lives in one preallocated block per array (no heap fragments between kept tensors)
    blocks = cached.cache.blocks
    assert sum(b.numel() * b.element_size() for b in blocks) == cached.cache_bytes()
    for i in range(len(cached)):
        for view, block in zip(cached.cache[i], blocks):
            assert view.untyped_storage().data_ptr() == block.untyped_storage().data_ptr()


def test_time_decimation_keeps_the_band_and_removes_aliases():
    t = np.arange(1000) * 0.001
    low = np.sin(2 * np.pi * 20 * t)
    high = np.sin(2 * np.pi * 200 * t)  # above the Nyquist frequency (125 Hz) of the decimated series
    x = np.stack([low, high], axis=-1)  # (T, 2)
    y = decimate_time(x, 4, axis=0)
    assert y.shape == (250, 2)
    np.testing.assert_allclose(y[:, 0], low[::4], atol=1e-6)
    assert np.abs(y[:, 1]).max() < 1e-6
    assert torch.allclose(decimate_time(torch.from_numpy(x), 4, axis=0), torch.from_numpy(y))


def test_dataloader_workers_see_the_same_samples(tiny):
    ds = FWIDataset(tiny, "val", time_decimation=3)
    direct = [ds[i]["gathers"] for i in range(len(ds))]
    assert direct[0].shape == (3, 100, 33)
    loaded = [b["gathers"][0] for b in DataLoader(ds, batch_size=1, num_workers=2)]
    for a, b in zip(direct, loaded):
        assert torch.equal(a, b)
    with pytest.raises(DatasetError, match="no 'test' split"):
        FWIDataset(tiny, "test")


def test_openfwi_npy_pairs_are_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(2):
        data = rng.normal(scale=5, size=(3, 5, 100, 70)).astype(np.float32)
        model = rng.uniform(1500, 4500, size=(3, 1, 70, 70)).astype(np.float32)
        np.save(tmp_path / f"data{k}.npy", data)
        np.save(tmp_path / f"model{k}.npy", model)
        pairs.append((tmp_path / f"data{k}.npy", tmp_path / f"model{k}.npy"))
    ds = OpenFWIDataset(pairs)
    assert len(ds) == 6 and isinstance(ds.data[0], np.memmap)
    item = ds[4]  # second file, second sample
    model = np.load(pairs[1][1])[1]
    n = ds.normalizer
    assert torch.allclose(item["velocity"], torch.from_numpy(n.velocity(model)))
    assert torch.equal(item["salt_mask"], torch.from_numpy((model >= 4400).astype(np.float32)))
    assert ds.survey.data_shape == (5, 100, 70) and ds.survey.shape == (70, 70)
    np.save(tmp_path / "bad.npy", np.zeros((2, 70, 70), np.float32))
    with pytest.raises(DatasetError, match="expected data"):
        OpenFWIDataset([(pairs[0][0], tmp_path / "bad.npy")])
    with pytest.raises(DatasetError, match="does not exist"):
        OpenFWIDataset([(tmp_path / "missing.npy", pairs[0][1])])
    assert Normalizer(1500, 4500, -3, 4).velocity(np.float32(3000)) == pytest.approx(0)


def test_a_subset_is_the_first_samples_and_a_long_epoch_cycles_over_it(tiny):
    full = FWIDataset(tiny, "train")
    first = FWIDataset(tiny, "train", limit=3)
    assert len(first) == first.n_samples == 3
    for i in range(3):
        assert torch.equal(first[i]["gathers"], full[i]["gathers"]) and first[i]["index"] == i
    # an epoch of 12 items over 3 samples: 4 passes, each item the sample position % 3, flipped by its own coin
    long = FWIDataset(tiny, "train", limit=3, epoch_samples=12, mirror=True, seed=4)
    plain = FWIDataset(tiny, "train", limit=3)
    assert len(long) == 12 and long.n_samples == 3
    flips = []
    for pos in range(12):
        item, ref = long[pos], plain[pos % 3]
        assert item["index"] == pos % 3
        same = torch.equal(item["velocity"], ref["velocity"])
        mirrored = torch.equal(item["velocity"], ref["velocity"].flip(-1))
        assert same or mirrored
        flips.append(not same)
    passes = [tuple(flips[k:k + 3]) for k in range(0, 12, 3)]
    assert len(set(passes)) > 1  # the passes are not copies of one another's augmentation
    # the default (one pass) keeps the coin of before: (seed, epoch, index)
    one = FWIDataset(tiny, "train", limit=3, mirror=True, seed=4)
    assert all(torch.equal(one[i]["velocity"], long[i]["velocity"]) for i in range(3))
    with pytest.raises(DatasetError, match="first 9 samples of 'train', which has 8"):
        FWIDataset(tiny, "train", limit=9)
