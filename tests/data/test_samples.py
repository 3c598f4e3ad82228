"""Shipped brain sample (tissue labels, T1 ordering, geometry, size) and the phantom samples."""

import numpy as np
import pytest

from napari_medgen.data.brain import TISSUE_LABELS, tissue_labels
from napari_medgen.data.samples import BRAIN_DIR, brain_sample, phantom_sample, series_sample


def test_brain_sample_has_four_tissues_with_t1_ordering():
    image, labels = brain_sample()
    assert image.data.shape == labels.data.shape
    assert all(n <= m for n, m in zip(image.data.shape, (96, 112, 96)))
    assert labels.is_label and labels.data.dtype == np.uint8 and not image.is_label
    assert set(np.unique(labels.data)) == {0, 1, 2, 3}
    assert labels.metadata["label_names"] == TISSUE_LABELS
    csf, gm, wm = (image.data[labels.data == v].mean() for v in (1, 2, 3))
    assert wm > gm > csf
    assert image.data[labels.data == 0].mean() < csf


def test_brain_sample_geometry_is_mni_space():
    image, labels = brain_sample()
    assert image.spacing == pytest.approx((2.0, 2.0, 2.0))
    np.testing.assert_allclose(image.origin, labels.origin)
    # MNI RAS (10, -20, 30) = LPS (-10, 20, 30): deep white matter (left corona radiata)
    i, j, k = np.round(np.linalg.solve(labels.affine(), [-10.0, 20.0, 30.0, 1.0])[:3]).astype(int)
    assert labels.data[k, j, i] == 3
    # the mirrored point RAS (10, 20, 30) -> LPS (-10, -20, 30) is a different, valid brain voxel
    i, j, k = np.round(np.linalg.solve(labels.affine(), [-10.0, -20.0, 30.0, 1.0])[:3]).astype(int)
    assert labels.data[k, j, i] > 0
    # the head is centred on the midline: brain voxels balanced left/right of x = 0
    x = labels.index_to_physical(np.argwhere(labels.data > 0)[:, ::-1].astype(float))[:, 0]
    assert abs(np.mean(x)) < 3.0


def test_shipped_files_are_small():
    total = sum(p.stat().st_size for p in BRAIN_DIR.iterdir())
    assert total < 1_000_000
    assert (BRAIN_DIR.parent / "NOTICE-MNI.txt").read_text().count("McConnell Brain Imaging Centre") == 1


def test_tissue_rule():
    p_gm = np.array([0.0, 0.7, 0.2, 0.1, 0.5])
    p_wm = np.array([0.0, 0.2, 0.7, 0.1, 0.5])
    mask = np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    # background outside the mask; GM; WM; CSF where neither tissue dominates; ties to the lower label
    np.testing.assert_array_equal(tissue_labels(p_gm, p_wm, mask), [0, 2, 3, 1, 2])


def test_phantom_and_series_samples():
    image, labels = phantom_sample(0)
    assert image.data.shape == (64, 128, 128) and labels.data.max() == 7
    series = series_sample()
    assert series["tumour_regression_image"].data.shape[0] == 6
    assert series["breathing_labels"].data.shape[0] == 8
    for v in series.values():
        assert v.data.ndim == 4
