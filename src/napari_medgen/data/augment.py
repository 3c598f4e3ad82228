"""Augmentation of paired 2D (image, label) slices for label-to-image training (MONAI transforms).

Geometry (both image and labels, labels by nearest neighbour): left-right flip, a small affine
(rotation, scale) and an elastic deformation. Appearance (image only): a smooth multiplicative
bias field, a gamma contrast change and a simulated lower resolution (down- then up-sampling).
Intensity transforms act on images scaled to [0, 1] with the background at 0, so the background
stays black; callers pass normalised [-1, 1] slices and get them back in the same units.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import convert_to_tensor
from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandBiasFieldd, RandFlipd,
                              RandSimulateLowResolutiond)

IMAGE, LABEL = "image", "label"


def slice_augmentation(seed: int, flip: bool = True) -> Compose:
    """Random transform of {"image": (1, y, x) float in [0, 1], "label": (1, y, x) float} dicts."""
    steps = [RandFlipd((IMAGE, LABEL), prob=0.5, spatial_axis=1)] if flip else []
    steps += [
        Rand2DElasticd((IMAGE, LABEL), spacing=(24, 24), magnitude_range=(0.5, 2.0), prob=0.5,
                       rotate_range=(np.pi / 18,), scale_range=(0.08, 0.08), mode=("bilinear", "nearest"),
                       padding_mode="zeros"),
        RandBiasFieldd(IMAGE, degree=3, coeff_range=(0.0, 0.1), prob=0.2),
        RandAdjustContrastd(IMAGE, gamma=(0.85, 1.2), prob=0.2),
        RandSimulateLowResolutiond(IMAGE, zoom_range=(0.6, 0.9), upsample_mode="bilinear", prob=0.1),
    ]
    aug = Compose(steps)
    aug.set_random_state(seed=seed)
    return aug


def augment_batch(aug: Compose, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``aug`` to each pair: images (B, 1, y, x) in [-1, 1], labels (B, y, x) int64 -> same shapes."""
    out_i, out_l = [], []
    for image, label in zip(images, labels):
        d = aug({IMAGE: (image + 1.0) / 2.0, LABEL: label[None].float()})
        out_i.append(convert_to_tensor(d[IMAGE], track_meta=False).float() * 2.0 - 1.0)
        out_l.append(convert_to_tensor(d[LABEL], track_meta=False)[0].round().long())
    return torch.stack(out_i), torch.stack(out_l)
