"""The brain data's held-out slabs: named by MNI z, disjoint from training with a guard band."""

from __future__ import annotations

import numpy as np

from napari_medgen.data import brain


def test_axial_split_holds_out_the_slabs_and_a_guard_band():
    z = np.arange(-72.0, 85.0, 1.0)  # 1 mm axial positions of the cropped template
    train, held = brain.axial_split(z)
    assert not (train & held).any()
    assert held.sum() == 8 * len(brain.HELDOUT_SLABS_MM)
    for lo, hi in brain.HELDOUT_SLABS_MM:
        assert held[(z >= lo) & (z < hi)].all()
    gaps = np.abs(z[train][:, None] - z[held][None]).min()
    assert gaps >= brain.HELDOUT_GUARD_MM
    train2, held2 = brain.axial_split(z[::2])  # the same anatomy at 2 mm
    assert held2.sum() == 4 * len(brain.HELDOUT_SLABS_MM) and not (train2 & held2).any()
    assert "[-24, -16)" in brain.heldout_description()


def test_validation_slabs_keep_apart_from_the_test_slabs_and_training():
    z = np.arange(-72.0, 85.0, 1.0)
    plain_train, test = brain.axial_split(z)
    train, val = brain.axial_split(z, validation=True)
    assert val.sum() == sum(int(hi - lo) for lo, hi in brain.VALIDATION_SLABS_MM) > 0
    assert not (val & test).any() and not (val & ~plain_train).any()  # outside the test slabs and their guard
    assert not (train & ~plain_train).any()  # asking for validation only takes slices out of training
    for a, b in ((train, val), (train, test), (val, test)):
        assert np.abs(z[a][:, None] - z[b][None]).min() >= brain.HELDOUT_GUARD_MM
    assert "validation" in brain.heldout_description(validation=True)
    assert "validation" not in brain.heldout_description()
