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
