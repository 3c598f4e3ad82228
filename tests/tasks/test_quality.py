"""The ledger's metrics (tasks.quality) on images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_medgen.errors import InputError
from napari_medgen.tasks import quality as q


def discs(n: int = 4, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels: a disc (1) with a core (2); image: the label painted 0 / 300 / 800, then blurred 1 px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cy, cx = rng.uniform(20, 28, 2)
        d = np.hypot(yy - cy, xx - cx)
        labels[i][d < 16] = 1
        labels[i][d < 7] = 2
    return q.smooth(q.lut_painting(labels, [0.0, 300.0, 800.0]), 1.0), labels


def test_ssim_in_mask_is_one_for_identical_images_and_ignores_what_is_outside_the_mask():
    image, labels = discs()
    mask = labels > 0
    assert np.allclose(q.ssim_in_mask(image, image, mask), 1.0, atol=1e-5)
    noisy = image + np.random.default_rng(1).normal(0, 80, image.shape).astype(np.float32)
    assert q.ssim_in_mask(image, noisy, mask).max() < 0.6
    outside_changed = np.where(mask, image, image + 500.0)
    # pixels more than 3 (the window's half width) from the background: no window reaches the change
    inner = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=4)
    assert np.allclose(q.ssim_in_mask(image, outside_changed, inner), 1.0, atol=1e-5)
    with pytest.raises(InputError, match="no pixel inside"):
        q.ssim_in_mask(image, image, np.zeros_like(mask))


def test_lookup_table_and_the_smoothing_chosen_on_training_data():
    image, labels = discs()
    means = q.class_means(image, labels, 3)
    assert means[0] < means[1] < means[2]
    painted = q.lut_painting(labels, means)
    assert np.allclose(painted[labels == 2], means[2])
    # the images are the painting blurred by 1 px: the blur that scores best on them is the nearest to 1
    assert q.best_smoothing(image, labels, [0.0, 300.0, 800.0], labels > 0, sigmas=(0.25, 1.0, 3.0)) == 1.0
    with pytest.raises(InputError, match="no finite value"):
        q.lut_painting(labels, [0.0, np.nan, 1.0])


def test_shuffling_keeps_the_histogram_and_destroys_the_structure():
    image, labels = discs()
    mask = labels > 0
    shuffled = q.shuffle_in_mask(image, mask)
    assert np.allclose(np.sort(shuffled[mask]), np.sort(image[mask]))
    assert np.array_equal(shuffled[~mask], image[~mask])
    assert q.histogram_distance(shuffled, mask, image, mask, image) < 1e-6
    ratio = q.gradient_magnitude(shuffled, mask, image) / q.gradient_magnitude(image, mask, image)
    assert ratio > 3.0
    yy, xx = np.indices(image.shape[1:])
    texture = image + 100.0 * np.sin(2 * np.pi * (yy + xx) / 5.0)[None] * mask  # fine stripes
    blurred_ratio = q.gradient_magnitude(q.smooth(texture, 2.0), mask, texture) / q.gradient_magnitude(texture, mask, texture)
    assert blurred_ratio < 0.5


def test_histogram_distance_is_the_shift_in_reference_units():
    image, labels = discs()
    mask = labels > 0
    lo, hi = np.percentile(image, [1, 99])
    shift = 0.1 * (hi - lo)
    assert q.histogram_distance(image + shift, mask, image, mask, image) == pytest.approx(0.1, rel=1e-3)


def test_drawn_histogram_distances_measure_each_random_set_against_the_target():
    image, _ = discs(n=6)
    whole = q.drawn_histogram_distances(image, image, n=6, draws=3)  # every draw is the whole target
    np.testing.assert_allclose(whole, 0.0, atol=1e-9)
    brighter = image * 1.2  # the discs 20 % brighter: every draw differs from the target
    d = q.drawn_histogram_distances(brighter, image, n=2, draws=20, seed=5)
    assert d.shape == (20,) and d.min() > 0.02 and len(np.unique(d.round(6))) > 1  # draws of 2 of 6 vary
    np.testing.assert_array_equal(d, q.drawn_histogram_distances(brighter, image, n=2, draws=20, seed=5))
    # independent draws of all 6: most sets repeat some images and leave others out, so they differ from
    # the target, which a draw of all 6 distinct images never does
    iid = q.drawn_histogram_distances(image, image, n=6, draws=20, seed=5, replace=True)
    assert iid.shape == (20,) and (iid > 1e-6).mean() > 0.9


def test_foreground_and_background_masks():
    image, labels = discs()
    fg = q.foreground(image, image, erode=0)
    assert (fg == (labels > 0)).mean() > 0.97
    holed = np.where(labels == 2, 0.0, image)  # a dark core: a hole the filled mask closes
    assert q.foreground(holed, image, erode=0)[labels == 2].mean() > 0.9
    assert q.foreground(holed, image, erode=0, fill=False)[labels == 2].mean() < 0.3
    bg = q.background_mask(labels, margin=3)
    assert not (bg & (labels > 0)).any()
    assert np.array_equal(q.background_mask(labels, margin=0), labels == 0)
    assert bg.sum() < (labels == 0).sum()


def test_background_level_is_the_grain_off_the_object():
    image, labels = discs()
    lo, hi = np.percentile(image, [1, 99])
    assert q.background_level(image, image) < 1e-3  # black background (the blur's rim is within the margin)
    grain = np.abs(np.random.default_rng(0).normal(0.0, 0.05 * (hi - lo), image.shape))
    grainy = np.where(labels > 0, image, grain)
    assert q.background_level(grainy, image) == pytest.approx(0.05 * np.sqrt(2 / np.pi), rel=0.1)
    with pytest.raises(InputError, match="no background"):
        q.background_level(np.full_like(image, hi), image)


def test_nearest_copies_and_masked_correlation():
    image, labels = discs(n=6)
    copies, dist = q.nearest_copies(image[:2], image[2:])
    assert copies.shape == (2, 48, 48) and np.all(dist > 0)
    exact, d0 = q.nearest_copies(image[2:4], image[2:])
    assert np.array_equal(exact, image[2:4]) and np.allclose(d0, 0.0, atol=1e-6)
    r = q.masked_correlation(image, 2.0 * image + 5.0, labels > 0)
    assert np.allclose(r, 1.0)


def test_power_spectrum_of_white_noise_is_flat_and_of_smooth_images_falls():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (8, 64, 64))
    p = q.radial_power_spectrum(noise)
    assert p.max() / p.min() < 1.5
    ps = q.radial_power_spectrum(q.smooth(noise, 2.0))
    assert ps[-1] / ps[0] < 1e-3


def test_row_margin_is_positive_exactly_when_the_model_wins():
    assert q.Row("m", "ssim", "lut", 0.8, 0.7, "higher").margin == pytest.approx(0.1)
    assert q.Row("m", "fd", "blur", 3.0, 5.0, "lower").margin == pytest.approx(2.0)
    assert q.Row("m", "grad", "blur", 0.9, 0.6, "near1").margin == pytest.approx(0.3)
    assert q.Row("m", "grad", "shuffle", 0.7, 1.2, "near1").margin < 0
