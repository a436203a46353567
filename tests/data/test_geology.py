"""Tests of the synthetic salt velocity model generator `fwi.data.geology`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fwi.data.geology import SALT_KINDS, GeologyConfig, generate_model, generate_models

DEFAULT = GeologyConfig()


def _single(kind: str, **kw) -> GeologyConfig:
    return GeologyConfig(salt_kinds=(kind,), n_salt=(1, 1), water_prob=0.0, **kw)


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_model():
    v1, m1 = generate_model(123, 70, 70)
    v2, m2 = generate_model(123, 70, 70)
    assert np.array_equal(v1, v2) and np.array_equal(m1, m2)
    v3, m3 = generate_model(np.random.SeedSequence(123), 70, 70)
    v4, m4 = generate_model(np.random.default_rng(123), 70, 70)
    assert np.array_equal(v1, v3) and np.array_equal(m1, m3)
    assert np.array_equal(v1, v4) and np.array_equal(m1, m4)


def test_generator_is_consumed_and_seeds_differ():
    rng = np.random.default_rng(7)
    a, _ = generate_model(rng, 70, 70)
    b, _ = generate_model(rng, 70, 70)
    assert not np.array_equal(a, b)
    models = [generate_model(s, 70, 70)[0] for s in range(10)]
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            assert not np.array_equal(models[i], models[j]), (i, j)


def test_generate_models_matches_spawned_seeds_and_is_pure():
    vs, ms = generate_models(5, 4, 35, 50)
    assert vs.shape == (4, 35, 50) and vs.dtype == np.float32 and ms.dtype == np.uint8
    children = np.random.SeedSequence(5).spawn(4)
    for i, child in enumerate(children):
        v, m = generate_model(child, 35, 50)
        assert np.array_equal(vs[i], v) and np.array_equal(ms[i], m)
    root = np.random.SeedSequence(5)
    assert np.array_equal(generate_models(root, 2, 35, 50)[0], generate_models(root, 2, 35, 50)[0])


# ------------------------------------------------------------------------------------------------ shapes, ranges


@pytest.mark.parametrize("shape", [(35, 100), (70, 70), (128, 64), (20, 20)])
def test_shape_dtype_and_bounds(shape):
    for seed in range(5):
        v, m = generate_model(seed, *shape)
        assert v.shape == shape and m.shape == shape
        assert v.dtype == np.float32 and m.dtype == np.uint8
        assert np.isfinite(v).all()
        assert 1400.0 <= v.min() and v.max() <= 4700.0
        assert set(np.unique(m).tolist()) <= {0, 1}
        assert m.any()


def test_mask_matches_salt_velocity_and_salt_is_constant_per_body():
    for seed in range(50):
        v, m = generate_model(seed, 70, 70)
        salt = m.astype(bool)
        assert np.array_equal(salt, v >= DEFAULT.v_salt[0]), seed
        assert v[salt].min() >= DEFAULT.v_salt[0] and v[salt].max() <= DEFAULT.v_salt[1]
        assert v[~salt].max() < DEFAULT.v_salt[0]
        # every body has one velocity: at most n_salt distinct salt velocities
        assert len(np.unique(v[salt])) <= DEFAULT.n_salt[1], seed


def test_salt_fraction_within_bounds():
    fractions = [generate_model(seed, 70, 70)[1].mean() for seed in range(50)]
    assert min(fractions) >= DEFAULT.min_salt_fraction
    assert max(fractions) <= DEFAULT.max_salt_fraction
    assert np.std(fractions) > 0.02  # varied, not pinned to a bound


@pytest.mark.parametrize("lo, hi", [(0.25, 0.3), (0.03, 0.05)])
def test_tight_salt_fraction_bounds_are_met(lo, hi):
    cfg = GeologyConfig(min_salt_fraction=lo, max_salt_fraction=hi, max_salt_tries=2)
    for seed in range(15):
        frac = generate_model(seed, 40, 60, cfg)[1].mean()
        assert lo <= frac <= hi, (seed, frac)


def test_velocity_increases_with_depth_in_the_sediments():
    nz = 70
    for seed in range(30):
        v, m = generate_model(seed, nz, 70)
        sediment = (m == 0) & (v != DEFAULT.v_water)
        top, bottom = sediment.copy(), sediment.copy()
        top[nz // 3:] = False
        bottom[: nz - nz // 3] = False
        assert bottom.any() and top.any()
        assert v[bottom].mean() > v[top].mean() + 300.0, seed


def test_sediments_are_layered():
    """Several distinct velocities down a column (layers), not a smooth or constant column."""
    for seed in range(20):
        v, m = generate_model(seed, 70, 70)
        sediment_cols = [np.unique(np.round(v[m[:, j] == 0, j], -1)).size for j in range(0, 70, 7)]
        assert np.median(sediment_cols) >= 4, seed


def _rows_constant(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per row: are all sediment velocities in the row equal?"""
    sed = np.where(m == 0, v, np.nan)
    return np.nanmax(sed, axis=1) - np.nanmin(sed, axis=1) < 1e-3


def test_undeformed_layers_are_flat_and_faults_offset_them():
    flat = dict(fold_amplitude=(0.0, 0.0), max_dip=0.0, wedge=0.0, drag=(0.0, 0.0), unconformity_prob=0.0,
                water_prob=0.0, salt_kinds=("lens",), n_salt=(1, 1))
    layer_cake = GeologyConfig(n_faults=(0, 0), **flat)
    faulted = GeologyConfig(n_faults=(2, 2), fault_throw=(0.06, 0.1), **flat)
    for seed in range(10):
        assert _rows_constant(*generate_model(seed, 70, 70, layer_cake)).all(), seed
        v, m = generate_model(seed, 70, 70, faulted)
        assert (~_rows_constant(v, m)).sum() >= 3, seed  # displaced layer boundaries


# ------------------------------------------------------------------------------------------------ water


@pytest.mark.parametrize("cfg", [
    GeologyConfig(water_prob=1.0, water_depth=(0.1, 0.2)),
    # deep water and shallow diapirs: the salt must be cut off below the seabed
    GeologyConfig(water_prob=1.0, water_depth=(0.25, 0.35), salt_kinds=("diapir",), n_salt=(2, 3)),
])
def test_forced_water_layer(cfg):
    for seed in range(20):
        v, m = generate_model(seed, 70, 70, cfg)
        assert np.all(v[0] == cfg.v_water), seed
        water = np.cumprod(v == cfg.v_water, axis=0).astype(bool)  # the run of water from the top of each column
        thickness = water.sum(axis=0) / 70
        assert 0.5 * cfg.water_depth[0] <= thickness.mean() <= 1.5 * cfg.water_depth[1], (seed, thickness.mean())
        assert not (water & (m == 1)).any()
        # salt starts below the seabed in every column: sediment, not water, lies directly above it
        for j in np.nonzero(m.any(axis=0))[0]:
            k = np.argmax(m[:, j])
            assert k > 0 and v[k - 1, j] != cfg.v_water, (seed, j)


def test_no_water_when_disabled():
    cfg = GeologyConfig(water_prob=0.0, v_top=(1700.0, 2200.0))
    for seed in range(10):
        v, _ = generate_model(seed, 70, 70, cfg)
        assert not np.all(v[0] == cfg.v_water)


# ------------------------------------------------------------------------------------------------ salt kinds


def _stats(m: np.ndarray) -> dict[str, float]:
    nz, nx = m.shape
    zs, xs = np.nonzero(m)
    cols = m.sum(axis=0)
    cols = cols[cols > 0] / nz
    width = (xs.max() - xs.min() + 1) / nx
    return dict(top=zs.min() / nz, bottom=(zs.max() + 1) / nz, bottom_width=m[-1].mean(), width=width,
                aspect_median=width / np.median(cols), aspect_max=width / cols.max())


def test_dome_rises_from_a_broad_base():
    for seed in range(15):
        s = _stats(generate_model(seed, 70, 70, _single("dome"))[1])
        assert s["bottom"] == 1.0 and s["bottom_width"] >= 0.2 and s["top"] > 0.4, (seed, s)


def test_diapir_is_a_tall_stem_reaching_up():
    for seed in range(15):
        s = _stats(generate_model(seed, 70, 70, _single("diapir"))[1])
        assert s["bottom"] == 1.0 and s["bottom_width"] < 0.35 and s["top"] < 0.45, (seed, s)
        assert s["aspect_max"] < 1.0, (seed, s)  # taller than wide


def test_diapirs_include_overhanging_mushrooms():
    overhangs = 0
    for seed in range(20):
        m = generate_model(seed, 70, 70, _single("diapir"))[1]
        widths = m.sum(axis=1)
        rows = np.nonzero(widths)[0]
        # a row at most half as wide as some row above it: a head overhanging the stem (a mushroom)
        overhangs += bool(np.any(widths[rows] < 0.5 * np.maximum.accumulate(widths[rows])))
    assert 3 <= overhangs <= 17  # about half of the diapirs are mushrooms


def test_lens_is_detached_and_elongated():
    for seed in range(15):
        s = _stats(generate_model(seed, 70, 70, _single("lens"))[1])
        assert s["bottom"] <= 0.8 and s["top"] >= 0.1 and s["aspect_max"] > 1.5, (seed, s)


def test_sill_is_detached_thin_and_long():
    for seed in range(15):
        s = _stats(generate_model(seed, 70, 70, _single("sill"))[1])
        assert s["bottom"] <= 0.9 and s["width"] >= 0.35 and s["aspect_median"] > 4.0, (seed, s)


def test_kind_weights_select_kinds():
    cfg = GeologyConfig(salt_kind_weights=(0.0, 0.0, 1.0, 0.0), n_salt=(1, 1), water_prob=0.0)  # lenses only
    for seed in range(10):
        assert not generate_model(seed, 70, 70, cfg)[1][-10:].any()


# ------------------------------------------------------------------------------------------------ grid invariance


def test_structures_scale_with_the_grid():
    """The same seed on a 2x finer grid gives the same model, sampled more finely."""
    agree = []
    for seed in range(8):
        v1, m1 = generate_model(seed, 35, 50)
        v2, m2 = generate_model(seed, 70, 100)
        coarse = m2.reshape(35, 2, 50, 2).mean(axis=(1, 3)) >= 0.5
        agree.append((coarse == m1.astype(bool)).mean())
    assert np.median(agree) > 0.95 and min(agree) > 0.8, agree


# ------------------------------------------------------------------------------------------------ config


def test_config_round_trip_and_unknown_keys():
    cfg = GeologyConfig(n_salt=(2, 3), salt_kinds=("dome", "lens"), salt_kind_weights=(1.0, 2.0), water_prob=0.5)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert GeologyConfig.from_dict(d) == cfg
    assert GeologyConfig.from_json(cfg.to_json()) == cfg
    assert GeologyConfig.from_dict(GeologyConfig().to_dict()) == GeologyConfig()
    with pytest.raises(ValueError, match="valid keys.*v_salt"):
        GeologyConfig.from_dict({"v_salty": (1.0, 2.0)})


@pytest.mark.parametrize("kwargs", [
    dict(salt_kinds=("dome", "glacier")),
    dict(salt_kind_weights=(1.0, 2.0)),
    dict(v_bottom=(3000.0, 4450.0)),
    dict(n_layers=(5, 3)),
    dict(min_salt_fraction=0.5, max_salt_fraction=0.2),
    dict(water_prob=1.5),
])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        GeologyConfig(**kwargs)


def test_all_kinds_known():
    assert set(DEFAULT.salt_kinds) == set(SALT_KINDS)
