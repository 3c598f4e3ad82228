"""The patient in a scan: the voxels of the body, found from the image alone (any modality)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_mask(image: np.ndarray) -> np.ndarray:
    """The patient in a scan (z, y, x) of any modality: voxels above the Otsu threshold between air and
    tissue (about -450 HU on CT; the noise floor on MR), holes in each slice filled (lungs, airways, gas)."""
    from skimage.filters import threshold_otsu

    step = max(1, int(round((image.size / 2e6) ** (1 / 3))))
    body = image > threshold_otsu(np.asarray(image[::step, ::step, ::step], np.float32))
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body
