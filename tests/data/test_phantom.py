"""The phantom's factors are exact, monotonic and independent; seeds, styles, series and speed."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_medgen.data.phantom import (LABELS, STYLES, breathing_series, cardiac_series, estimate_factors,
                                        make_labels, make_phantom, render, tumour_regression_series)
from napari_medgen.errors import InputError

SMALL = {"shape": (40, 64, 64)}  # 6 x 6 x 8 mm voxels over the same field of view
FACTORS = {"tumour_radius_mm": [4.0, 8.0, 12.0, 16.0, 20.0], "breathing_phase": [0.0, 0.25, 0.5, 0.75, 1.0],
           "cardiac_phase": [0.0, 0.25, 0.5, 0.75, 1.0], "body_scale": [0.9, 0.95, 1.0, 1.05, 1.1],
           "rotation_deg": [-40.0, -20.0, 0.0, 20.0, 40.0]}
TRACKS = {"tumour_radius_mm": ("tumour_volume_ml", 1), "breathing_phase": ("lung_volume_ml", 1),
          "cardiac_phase": ("lv_volume_ml", -1), "body_scale": ("body_area_cm2", 1),
          "rotation_deg": ("rotation_deg", 1)}  # factor -> (estimate, sign of its change)


def test_make_phantom_shapes_geometry_and_labels():
    image, labels = make_phantom(3)
    assert image.data.shape == labels.data.shape == (64, 128, 128)
    assert image.data.dtype == np.float32 and labels.data.dtype == np.uint8 and labels.is_label
    assert image.spacing == labels.spacing == (3.0, 3.0, 5.0)
    # centred on the origin: the middle voxel sits at (0, 0, 0) mm
    centre = labels.index_to_physical(np.array([63.5, 63.5, 31.5]))
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    assert set(np.unique(labels.data)) == set(LABELS)
    assert labels.metadata["label_names"] == LABELS


def test_2d_subject_is_one_slice_with_every_structure():
    image, labels = make_phantom(0, shape=(1, 128, 128))
    assert image.data.shape == (1, 128, 128)
    assert set(np.unique(labels.data)) == set(LABELS)  # the slice cuts heart, lungs, spine and tumour


@pytest.mark.parametrize("factor", list(FACTORS))
def test_each_estimate_tracks_its_factor_and_leaves_others_fixed(factor):
    est = [estimate_factors(make_labels(5, **SMALL, **{factor: v})) for v in FACTORS[factor]]
    key_tracked, sign = TRACKS[factor]
    tracked = np.array([e[key_tracked] for e in est])
    assert np.all(sign * np.diff(tracked) > 0), f"{key_tracked} is not monotonic in {factor}: {tracked}"
    for key in ("tumour_volume_ml", "lung_volume_ml", "lv_volume_ml", "body_area_cm2"):
        if key == key_tracked or (factor == "rotation_deg" and key != "rotation_deg"):
            continue  # rotation resamples every structure: checked separately below
        vals = np.array([e[key] for e in est])
        assert np.ptp(vals) <= 0.03 * np.abs(vals).max() + 1e-9, f"{key} moved with {factor}: {vals}"


def test_rotation_estimate_and_invariants():
    for angle in (-30.0, 15.0, 40.0):
        e = estimate_factors(make_labels(2, **SMALL, rotation_deg=angle))
        assert abs(e["rotation_deg"] - angle) < 1.0
    base = estimate_factors(make_labels(2, **SMALL))
    rot = estimate_factors(make_labels(2, **SMALL, rotation_deg=30.0))
    for key in ("tumour_volume_ml", "lung_volume_ml", "lv_volume_ml", "body_area_cm2", "body_extent_mm"):
        assert rot[key] == pytest.approx(base[key], rel=0.05)


def test_volumes_match_the_exact_geometry():
    labels = make_labels(4, shape=(40, 192, 192), spacing=(2.0, 2.0, 4.0), tumour_radius_mm=15.0)
    e = estimate_factors(labels)
    assert e["tumour_volume_ml"] == pytest.approx(4 / 3 * np.pi * 15.0 ** 3 / 1000, rel=0.03)
    a, b = labels.metadata["factors"]["body_semi_mm"]
    assert e["body_area_cm2"] == pytest.approx(np.pi * a * b / 100, rel=0.01)
    assert e["body_extent_mm"] == pytest.approx(2 * a, rel=0.01)
    lv = np.prod(labels.metadata["factors"]["lv_blood_semi_mm"]) * 4 / 3 * np.pi / 1000
    assert e["lv_volume_ml"] == pytest.approx(lv, rel=0.05)


def test_cardiac_phase_ejects_the_documented_fraction():
    ed = estimate_factors(make_labels(1, shape=(80, 128, 128), spacing=(2.0, 2.0, 2.0)))
    es = estimate_factors(make_labels(1, shape=(80, 128, 128), spacing=(2.0, 2.0, 2.0), cardiac_phase=1.0))
    assert 1 - es["lv_volume_ml"] / ed["lv_volume_ml"] == pytest.approx(0.6, abs=0.03)


def test_breathing_moves_the_diaphragm_down():
    z = [estimate_factors(make_labels(0, shape=(80, 32, 32), spacing=(12.0, 12.0, 4.0), breathing_phase=p))[
        "diaphragm_z_mm"] for p in (0.0, 0.5, 1.0)]
    assert z[0] > z[1] > z[2]
    assert z[0] - z[2] == pytest.approx(30.0, abs=8.0)


def test_seeds_reproducible_and_different():
    a1, l1 = make_phantom(7, **SMALL)
    a2, l2 = make_phantom(7, **SMALL)
    np.testing.assert_array_equal(a1.data, a2.data)
    np.testing.assert_array_equal(l1.data, l2.data)
    _, l3 = make_phantom(8, **SMALL)
    assert (l1.data != l3.data).mean() > 0.01


def test_tumour_stays_inside_its_lung():
    for seed in range(6):
        with_t = make_labels(seed, **SMALL, tumour_radius_mm=20.0).data
        without = make_labels(seed, **SMALL, tumour_radius_mm=0.0).data
        assert (with_t == 7).any() and not (without == 7).any()
        assert np.all(without[with_t == 7] == 2)


def test_styles_give_different_contrasts():
    _, labels = make_phantom(0, **SMALL)
    means = {}
    for style in STYLES:
        img = render(labels, style, seed=0, noise=0.0, bias=0.0, blur_mm=0.0).data
        means[style] = np.array([img[labels.data == v].mean() for v in LABELS])
    for i, s in enumerate(STYLES):
        for t in STYLES[i + 1:]:
            assert not np.allclose(means[s], means[t], rtol=0.05, atol=0.02), (s, t)
    a, b = means["mr_vendor_a"], means["mr_vendor_b"]
    assert a[3] > a[4] and b[3] < b[4]  # bright blood vs black blood
    assert means["ct"][2] == pytest.approx(-800, abs=20) and means["ct"][0] == pytest.approx(-1000, abs=1)


def test_noise_bias_and_blur_act():
    _, labels = make_phantom(0, **SMALL)
    clean = render(labels, noise=0.0, bias=0.0, blur_mm=0.0).data
    body = labels.data == 1
    assert render(labels, noise=0.1, bias=0.0, blur_mm=0.0).data[body].std() > clean[body].std() + 0.05
    biased = render(labels, noise=0.0, bias=0.3, blur_mm=0.0).data
    assert np.abs(biased[body] / clean[body] - 1).max() > 0.1
    blurred = render(labels, noise=0.0, bias=0.0, blur_mm=8.0).data
    assert np.abs(np.diff(blurred, axis=2)).max() < np.abs(np.diff(clean, axis=2)).max()


def test_tumour_regression_series():
    image, labels = tumour_regression_series(2, n=5, shape=(24, 48, 48))
    assert image.data.shape == labels.data.shape == (5, 24, 48, 48)
    vols = estimate_factors(labels)["tumour_volume_ml"]
    assert np.all(np.diff(vols) < 0)
    radii = labels.metadata["tumour_radius_mm"]
    assert radii[0] == pytest.approx(16.0) and radii[-1] == pytest.approx(6.0)
    assert radii[1] / radii[0] == pytest.approx(radii[2] / radii[1])
    others = labels.data[:, :, :, :] != 7
    assert np.all(labels.data[0][others.all(axis=0)] == labels.data[-1][others.all(axis=0)])


def test_breathing_series_follows_a_cosine():
    _, labels = breathing_series(0, n=8, shape=(24, 32, 32))
    phases = np.array(labels.metadata["breathing_phase"])
    np.testing.assert_allclose(phases, (1 - np.cos(2 * np.pi * np.arange(8) / 8)) / 2)
    lung = np.array(estimate_factors(labels)["lung_volume_ml"])
    assert np.argmax(lung) == 4 and np.argmin(lung) == 0


def test_cardiac_series_beats_with_only_the_heart_changing():
    _, labels = cardiac_series(1, n=4, shape=(24, 32, 32))
    lv = np.array(estimate_factors(labels)["lv_volume_ml"])
    assert lv[2] < lv[1] < lv[0] and lv[3] == pytest.approx(lv[1])  # end-systole at frame n/2
    heart = np.isin(labels.data, (3, 4, 5)).any(axis=0)
    np.testing.assert_array_equal(labels.data[0][~heart], labels.data[2][~heart])


@pytest.mark.parametrize("bad", [{"tumour_radius_mm": -1.0}, {"breathing_phase": 1.5}, {"style": "pet"},
                                 {"shape": (0, 10, 10)}, {"body_scale": 3.0}])
def test_bad_factors_are_refused(bad):
    with pytest.raises(InputError):
        make_phantom(0, **{"shape": (4, 16, 16), **bad})


def test_speed_of_a_full_subject():
    make_phantom(0)  # warm up
    t = time.perf_counter()
    make_phantom(1)
    assert time.perf_counter() - t < 3.0  # generous: ~0.35 s on one shared core


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), radius=st.floats(4.0, 20.0), breathing=st.floats(0.0, 1.0),
       cardiac=st.floats(0.0, 1.0), scale=st.floats(0.9, 1.1), angle=st.floats(-45.0, 45.0))
def test_any_subject_is_anatomically_consistent(seed, radius, breathing, cardiac, scale, angle):
    factors = {"breathing_phase": breathing, "cardiac_phase": cardiac, "body_scale": scale, "rotation_deg": angle}
    labels = make_labels(seed, **SMALL, tumour_radius_mm=radius, **factors).data
    no_tumour = make_labels(seed, **SMALL, tumour_radius_mm=0.0, **factors).data
    assert set(np.unique(labels)) <= set(LABELS)
    assert np.all(no_tumour[labels == 7] == 2)  # the tumour lies inside a lung
    assert np.array_equal(labels[labels != 7], no_tumour[labels != 7])
    # no organ leaves the body's field of view border (the outermost voxels are air)
    assert not labels[:, [0, -1], :].any() and not labels[:, :, [0, -1]].any()
