"""Intensity normalisation specs: percentile and fixed windows, and the inverse map."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.data.normalize import denormalize, fixed_spec, normalize, percentile_spec
from napari_medgen.errors import InputError


def test_percentile_spec_maps_percentiles_to_the_range_and_back(rng):
    img = rng.gamma(2.0, 40.0, size=(8, 32, 32)).astype(np.float32)
    spec = percentile_spec(img, 1.0, 99.0)
    lo, hi = np.percentile(img, [1.0, 99.0])
    assert spec["lo_value"] == pytest.approx(lo) and spec["hi_value"] == pytest.approx(hi)
    out = normalize(img, spec)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() == -1.0 and out.max() == 1.0
    assert np.mean(out == 1.0) == pytest.approx(0.01, abs=0.002)  # the top 1 % is clipped
    restored = denormalize(normalize(img, spec, clip=False), spec)
    np.testing.assert_allclose(restored, img, rtol=1e-5, atol=1e-3)


def test_zero_one_range_and_mask(rng):
    img = np.concatenate([np.zeros(1000), rng.uniform(100, 200, 1000)]).astype(np.float32)
    spec = percentile_spec(img, 0, 100, out_range=(0, 1), mask=img > 0)
    assert spec["lo_value"] >= 100 and spec["range"] == [0.0, 1.0]
    out = normalize(img, spec)
    assert out.min() == 0.0 and out.max() == 1.0 and np.all(out[:1000] == 0.0)


def test_a_spec_without_values_is_measured_on_the_input(rng):
    img = rng.normal(50, 10, 5000)
    out = normalize(img, {"kind": "percentile", "low": 5, "high": 95})
    assert np.mean(out <= -1.0) == pytest.approx(0.05, abs=0.01) and np.mean(out >= 1.0) == pytest.approx(0.05, abs=0.01)
    with pytest.raises(InputError, match="lo_value"):
        denormalize(out, {"kind": "percentile", "low": 5, "high": 95})


def test_fixed_ct_window():
    spec = fixed_spec("soft_tissue")
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    np.testing.assert_allclose(normalize(hu, spec), [-1, -1, 0, 1, 1])
    np.testing.assert_allclose(denormalize(np.array([-1.0, 0.0, 1.0]), spec), [-160, 40, 240])
    assert fixed_spec((0, 100), out_range=(0, 1))["hi_value"] == 100.0


def test_constant_image_does_not_divide_by_zero():
    out = normalize(np.full((4, 4), 7.0), percentile_spec(np.full((4, 4), 7.0)))
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("call", [
    lambda: percentile_spec(np.full(5, np.nan)),
    lambda: percentile_spec(np.ones(5), 50, 10),
    lambda: fixed_spec("nosuch"),
    lambda: fixed_spec((5, 5)),
    lambda: normalize(np.ones(3), {"kind": "zscore"}),
])
def test_bad_specs_raise_input_error(call):
    with pytest.raises(InputError):
        call()
