"""Slice augmentation for label-to-image training: geometry shared by image and labels, black background."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from napari_medgen.data.augment import augment_batch, slice_augmentation


def brain_like(n: int = 6, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Ellipses: label 1 ring, 2 inside; image -1 outside, 0.2 / 0.8 inside (normalised units)."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        d = np.hypot((yy - 32) / (20 + i), (xx - 32) / 16)
        labels[i][d < 1] = 1
        labels[i][d < 0.6] = 2
    images = np.array([-1.0, 0.2, 0.8], np.float32)[labels][:, None]
    return torch.from_numpy(images), torch.from_numpy(labels)


def test_augmentation_moves_image_and_labels_together_and_keeps_the_background_black():
    images, labels = brain_like()
    aug = slice_augmentation(seed=3)
    changed = 0
    for _ in range(4):
        out_i, out_l = augment_batch(aug, images, labels)
        assert out_i.shape == images.shape and out_l.shape == labels.shape and out_l.dtype == torch.int64
        assert set(np.unique(out_l.numpy())) <= {0, 1, 2}
        lab = out_l.numpy()
        img = out_i[:, 0].numpy()
        far = ~ndimage.binary_dilation(lab > 0, structure=np.ones((1, 3, 3), bool), iterations=3)
        assert np.allclose(img[far], -1.0, atol=1e-4)  # background stays black
        inside, object_px = lab > 0, img > -0.5
        iou = (inside & object_px).sum() / (inside | object_px).sum()
        assert iou > 0.9  # the image's object is where the labels are
        changed += int((lab != labels.numpy()).any())
    assert changed > 0  # the geometry does move


def test_augmentation_is_reproducible_from_its_seed():
    images, labels = brain_like()
    a = augment_batch(slice_augmentation(seed=7), images, labels)
    b = augment_batch(slice_augmentation(seed=7), images, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
