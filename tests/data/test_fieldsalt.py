"""The field-scale research setting (issue 30): presets ``fieldsalt`` / ``fieldsalt-shifted`` and their geology."""

from __future__ import annotations

import dataclasses
import warnings

import h5py
import numpy as np
import pytest
import torch
from scipy import ndimage

from fwi.data.dataset import FWIDataset
from fwi.data.generate import generate
from fwi.data.geology import FIELD_SALT, FIELD_SALT_SHIFTED, GeologyConfig, generate_model
from fwi.data.presets import get_preset
from fwi.data.store import read_info

FIELD = get_preset("fieldsalt")
SURVEY = FIELD.survey
NZ, NX = SURVEY.shape
DX = SURVEY.dx


def _models(config: GeologyConfig, n: int, split: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` models of a split, drawn as the dataset generator draws them."""
    return [generate_model(np.random.SeedSequence([0, split, i]), NZ, NX, config) for i in range(n)]


@pytest.fixture(scope="module")
def field_models():
    return _models(FIELD_SALT, 24)


# ------------------------------------------------------------------------------------------------ survey


def test_survey_covers_the_seg_salt_extent_with_surface_acquisition():
    assert NZ * DX == pytest.approx(2020.0) and NX * DX == pytest.approx(3020.0)  # 2 km x 3 km (cell centres)
    xs = SURVEY.receiver_positions()[:, 1]
    assert xs.min() == 0.0 and xs.max() == pytest.approx((NX - 1) * DX)  # receivers over the full width
    assert np.all(np.diff(xs) == DX)  # one per cell
    shots = SURVEY.source_positions()[:, 1]
    assert shots.min() == 0.0 and shots.max() == pytest.approx((NX - 1) * DX)
    assert SURVEY.mirror_mismatch() == 0  # mirror augmentation is exact
    assert SURVEY.nt * SURVEY.dt >= 2.0 - 1e-9  # at least 2 s of data


def test_time_step_is_stable_without_sub_steps_and_sampling_is_fine_enough():
    assert SURVEY.dt <= SURVEY.max_stable_dt() and SURVEY.step_ratio() == 1
    assert SURVEY.max_velocity >= FIELD_SALT.v_salt[1]
    slowest = min(FIELD_SALT.v_water, FIELD_SALT_SHIFTED.v_water)
    assert SURVEY.points_per_wavelength(slowest) >= 5.0  # the project's dispersion rule (at 2 x the peak frequency)


def test_wavelet_has_energy_down_to_3_hz():
    wavelet = SURVEY.wavelet().double().numpy()
    n = 8 * len(wavelet)
    spectrum = np.abs(np.fft.rfft(wavelet, n))
    freqs = np.fft.rfftfreq(n, SURVEY.dt)
    relative = np.interp([3.0, 4.0], freqs, spectrum) / spectrum.max()
    assert relative[0] > 0.3 and relative[1] > 0.5, relative  # an analytic Ricker at 7 Hz: 0.41 and 0.64


def test_presets_share_the_survey_and_keep_segsalt():
    shifted = get_preset("fieldsalt-shifted")
    assert shifted.survey == SURVEY and shifted.geology == FIELD_SALT_SHIFTED
    assert FIELD.geology == FIELD_SALT and FIELD.sizes == {"train": 4000, "val": 500, "test": 500}
    assert shifted.sizes["test"] == 500
    assert get_preset("segsalt").survey.shape == (201, 301)


def test_no_dispersion_warning_and_a_direct_wave_in_the_data():
    """One field model through deepwave: no points-per-wavelength warning, and the first arrival at the far
    receiver of the first shot (3 km offset) comes no earlier than the fastest velocity allows and no later than the
    direct wave through the shallowest sediments (plus the wavelet's peak time)."""
    from fwi.physics import forward_model

    v, _ = generate_model(np.random.SeedSequence([0, 0, 1]), NZ, NX, FIELD_SALT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = forward_model(torch.from_numpy(v)[None], SURVEY)[0, 0].numpy()  # shot 0: (T, R)
    assert np.isfinite(data).all()
    trace = np.abs(data[:, NX - 1])
    first = np.argmax(trace > 0.05 * trace.max()) * SURVEY.dt
    offset = (NX - 1) * DX
    assert offset / float(v.max()) <= first <= offset / float(v[1:3].min()) + 1.5 / SURVEY.freq, first


# ------------------------------------------------------------------------------------------------ geology


def test_field_models_have_seg_salt_velocities(field_models):
    for i, (v, m) in enumerate(field_models):
        salt = m.astype(bool)
        assert np.array_equal(salt, v >= FIELD_SALT.v_salt[0]), i
        assert v[salt].min() >= 4400.0 and v.max() <= 4600.0, i
        sediment = v[~salt & (v != FIELD_SALT.v_water)]
        assert 1520.0 <= sediment.min() and sediment.max() <= 4300.0, i
        assert FIELD_SALT.min_salt_fraction <= m.mean() <= FIELD_SALT.max_salt_fraction, i


def test_field_sediments_are_layered_and_faster_with_depth(field_models):
    for i, (v, m) in enumerate(field_models):
        sediment = (m == 0) & (v != FIELD_SALT.v_water)
        top = np.where(sediment[: NZ // 3], v[: NZ // 3], np.nan)
        bottom = np.where(sediment[-NZ // 3:], v[-NZ // 3:], np.nan)
        assert np.nanmean(bottom) > np.nanmean(top) + 600.0, i
        # layer boundaries down a column: vertical steps > 50 m/s between two sediment cells
        steps = (np.abs(np.diff(v, axis=0)) > 50.0) & sediment[1:] & sediment[:-1]
        assert 3 <= np.median(steps.sum(axis=0)) <= 16, (i, np.median(steps.sum(axis=0)))


def test_field_water_is_thin_and_occasional(field_models):
    water = [np.cumprod(v == FIELD_SALT.v_water, axis=0).sum(axis=0) * DX for v, _ in field_models]
    with_water = [w for w in water if w.max() > 0]
    assert 1 <= len(with_water) <= len(water) // 2
    assert all(w.max() <= 200.0 and w.min() >= DX for w in with_water)  # tens of metres to 200 m, everywhere


@pytest.mark.parametrize("kind, low, high", [("dome", 500.0, 2200.0), ("diapir", 150.0, 700.0),
                                             ("lens", 500.0, 1800.0)])
def test_field_salt_bodies_are_hundreds_of_metres_to_2_km_wide(kind, low, high):
    """Width half-way up the body (a diapir's stem, not its head; above a dome's mother salt layer), in metres;
    domes and diapirs rise from the bottom, lenses sit detached at mid depth."""
    config = dataclasses.replace(FIELD_SALT, salt_kinds=(kind,), salt_kind_weights=None, n_salt=(1, 1),
                                 min_salt_fraction=0.0)
    widths, tops, bottoms = [], [], []
    for _, m in _models(config, 12):
        rows = np.nonzero(m.any(axis=1))[0]
        mid = rows[len(rows) // 2]  # half-way up the body: the stem of a diapir, the body of a dome or lens
        labels, n = ndimage.label(m[mid])
        widths.append(max(np.bincount(labels.ravel())[1:]) * DX)
        tops.append(rows.min() * DX)
        bottoms.append((rows.max() + 1) * DX)
    assert low <= min(widths) and max(widths) <= high, (kind, widths)
    if kind == "lens":  # detached, at mid depth
        assert max(bottoms) <= 0.85 * NZ * DX and min(tops) >= 0.2 * NZ * DX, (tops, bottoms)
    else:  # rising from the bottom
        assert min(bottoms) == NZ * DX and max(tops) <= 0.85 * NZ * DX, (tops, bottoms)


def test_field_diapirs_include_overhangs():
    config = dataclasses.replace(FIELD_SALT, salt_kinds=("diapir",), salt_kind_weights=None, n_salt=(1, 1))
    overhangs = 0
    for _, m in _models(config, 16):
        widths = m.sum(axis=1)[np.nonzero(m.any(axis=1))[0]]
        overhangs += bool(np.any(widths < 0.5 * np.maximum.accumulate(widths)))
    assert 3 <= overhangs <= 13, overhangs


def test_shifted_family_differs_from_the_training_family(field_models):
    shifted = _models(FIELD_SALT_SHIFTED, 24)

    def stats(models):
        fraction = np.mean([m.mean() for _, m in models])
        bodies = np.mean([len(np.unique(v[m == 1])) for v, m in models])  # one velocity per body
        steps = np.mean([((np.abs(np.diff(v, axis=0)) > 50.0) & (m[1:] == 0) & (m[:-1] == 0)).sum(axis=0).mean()
                         for v, m in models])
        lateral = np.mean([((np.abs(np.diff(v, axis=1)) > 50.0) & (m[:, 1:] == 0) & (m[:, :-1] == 0)).mean()
                           for v, m in models])
        return fraction, bodies, steps, lateral

    f, s = stats(field_models), stats(shifted)
    assert s[0] > f[0] + 0.03  # more salt
    assert s[1] > f[1] + 1.0  # more bodies
    assert s[2] > 1.4 * f[2]  # more layers down a column
    assert s[3] > 2.0 * f[3]  # more lateral variation: faults, stronger folds and dips
    # the same velocity range, so a fieldsalt network's normalisation covers it
    assert min(v.min() for v, _ in shifted) >= 1500.0 and max(v.max() for v, _ in shifted) <= 4600.0


def test_shifted_family_generates_into_a_dataset(tmp_path):
    """The test-family preset makes a valid dataset through the project's generator (a train split for the
    normalisation statistics, a test split; no validation split), with the models of its geology."""
    path = generate(tmp_path / "shifted.h5", "fieldsalt-shifted", seed=3, sizes={"train": 1, "test": 1},
                    progress=False)
    info = read_info(path)
    assert info.sizes == {"train": 1, "test": 1} and info.survey == SURVEY
    with h5py.File(path, "r") as f:
        stored, velocity = f["test/gathers"], f["test/velocity"][()]
        assert stored.shape == (1, 15, 125, 151) and stored.dtype == np.int16 and stored.fletcher32  # compact
    assert info.storage.time_decimation == 10 and info.storage.encoding == "int16"
    gathers = FWIDataset(path, "test", normalize=False, time_decimation=10)[0]["gathers"].numpy()
    assert gathers.shape == (15, 125, 151) and np.isfinite(gathers).all() and np.abs(gathers).max() > 0
    expected, _ = generate_model(np.random.SeedSequence([3, 2, 0]), NZ, NX, FIELD_SALT_SHIFTED)
    np.testing.assert_array_equal(velocity[0, 0], expected)
