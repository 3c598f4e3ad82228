"""Brain-slice preparation (the brain VAE's training data and "invert current slice"): the automatic mask,
intensity scaling on the slice's own brain, the model grid and the way back."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.data import brain
from napari_medgen.data import brain_slices as bs
from napari_medgen.data.samples import brain_sample
from napari_medgen.errors import InputError


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray, tuple[float, float], np.ndarray]:
    """The shipped 2 mm brain sample (with skull): image, labels (z, y, x), (row, col) mm, MNI z (mm)."""
    image, labels = brain_sample()
    return (image.data.astype(np.float32), labels.data, (labels.spacing[1], labels.spacing[0]),
            brain.axial_z_mm(labels))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_the_automatic_mask_strips_the_skull_in_any_units(sample):
    image, labels, spacing, z = sample
    _, held = brain.axial_split(z)
    for k in np.flatnonzero(held):
        truth = np.pad(labels[k] > 0, 10)  # room for the head around the brain (the template has no skull)
        raw = bs.with_synthetic_skull(np.pad(image[k], 10), truth, spacing, seed=k)
        head = raw > 0.5 * np.percentile(raw, 99)
        assert _dice(head, truth) < 0.9  # the scalp is there to strip
        mask = bs.auto_brain_mask(raw, spacing)
        assert _dice(mask, truth) > 0.93, f"slice at z {z[k]} mm"
        assert np.array_equal(bs.auto_brain_mask(raw * 3.5 - 120.0, spacing), mask)  # offset and scale free


def test_prepared_slice_is_scaled_on_its_own_brain_centred_and_goes_back(sample):
    image, labels, spacing, _ = sample
    k = len(image) // 2
    truth = labels[k] > 0
    prepared, small_labels = bs.prepare_slice(image[k], spacing, 64, truth, labels[k])
    other, _ = bs.prepare_slice(image[k] * 0.01 + 7.0, spacing, 64, truth)
    assert np.allclose(prepared.image, other.image, atol=1e-4)  # the scan's units do not matter
    assert 0.3 < prepared.image[prepared.mask].mean() < 0.8 and prepared.image[~prepared.mask].mean() < 0.01
    rows, cols = np.nonzero(prepared.mask)
    assert abs((rows.min() + rows.max()) / 2 - 31.5) <= 1 and abs((cols.min() + cols.max()) / 2 - 31.5) <= 1
    brain_mm = truth.sum() * spacing[0] * spacing[1]
    assert prepared.mask.sum() * (bs.FOV_MM / 64) ** 2 == pytest.approx(brain_mm, rel=0.08)  # the model's pixel size
    assert set(np.unique(small_labels)) == {0, 1, 2, 3}
    back = prepared.restore(prepared.image)
    assert back.shape == image[k].shape
    assert np.corrcoef(back[truth], image[k][truth])[0, 1] > 0.9
    assert abs(np.median(back[truth]) - np.median(image[k][truth])) < 0.05 * np.ptp(image[k][truth])


def test_bad_slices_and_masks_are_refused(sample):
    image, labels, spacing, _ = sample
    k = len(image) // 2
    with pytest.raises(InputError, match="no pixel"):
        bs.prepare_slice(image[k], spacing, 64, np.zeros_like(labels[k]))
    with pytest.raises(InputError, match="shape"):
        bs.prepare_slice(image[k], spacing, 64, labels[k][:-1])
    with pytest.raises(InputError, match="spacing"):
        bs.prepare_slice(image[k], (0.0, 2.0), 64)
    with pytest.raises(InputError, match="constant"):
        bs.auto_brain_mask(np.full((40, 40), 5.0))


def test_training_slices_leave_the_held_out_slabs_and_their_guard_band_out():
    images, labels, z = bs.training_slices(16)
    assert brain.axial_split(z)[0].all() and images.shape == labels.shape == (len(z), 16, 16)
    held_z = bs.training_slices(16, held_out=True)[2]
    assert len(held_z) > 10 and brain.axial_split(held_z)[1].all()
    val_z = bs.training_slices(16, held_out=True, validation=True)[2]
    assert len(val_z) == 12 and brain.axial_split(val_z, validation=True)[1].all()
    assert set(bs.training_slices(16, validation=True)[2]) == set(z[brain.axial_split(z, validation=True)[0]])
    bank, bank_labels = bs.augmented_bank(images, labels, len(images) + 20, seed=0)
    assert bank.shape == (len(images) + 20, 16, 16) and bank_labels.shape == bank.shape
    assert np.array_equal(bank[:len(images)], images) and set(np.unique(bank_labels)) <= {0, 1, 2, 3}
    nearest = np.abs(bank[len(images):, None] - np.clip(images, 0, 1)[None]).mean(axis=(2, 3)).min(1)
    assert (nearest > 1e-3).mean() > 0.5  # most of the added slices are new deformations, not copies
