"""Derive the brain sample (T1 image + 4-class tissue labels) from the MNI152 2009 template in nilearn.

Only ``scripts/make_brain_sample.py`` calls this (the result ships in sample_data/brain/); the
nilearn files it reads are inside the nilearn wheel, so nothing is downloaded.

Tissue rule, per voxel of nilearn's 2 mm grid: outside the brain mask (mask < 0.5) -> 0
background; inside, with grey/white-matter probabilities p_gm, p_wm in [0, 1] and
p_csf = clip(1 - p_gm - p_wm, 0, 1), the label is 1 + argmax(p_csf, p_gm, p_wm)
(1 CSF, 2 grey matter, 3 white matter; ties go to the lower label). The volume is then cropped to
the bounding box of the head (template > ``HEAD_THRESHOLD``) plus ``margin`` voxels and made axis-aligned LPS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from ..io.layers import to_canonical
from ..io.readers import read_volume
from ..io.volume import Volume

TISSUE_LABELS: dict[int, str] = {0: "background", 1: "csf", 2: "grey_matter", 3: "white_matter"}
HEAD_THRESHOLD = 0.02  # template intensity (0..1) above which a voxel is head, not background
IMAGE_SCALE = 1000.0  # the template's [0, 1] intensities are stored as int16 in [0, 1000]


def tissue_labels(p_gm: np.ndarray, p_wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 labels (same shape) from GM/WM probabilities in [0, 1] and a brain mask (see module doc)."""
    p_csf = np.clip(1.0 - p_gm - p_wm, 0.0, 1.0)
    labels = 1 + np.argmax(np.stack([p_csf, p_gm, p_wm]), axis=0)
    return np.where(mask >= 0.5, labels, 0).astype(np.uint8)


def derive_brain_sample(margin: int = 2) -> tuple[Volume, Volume]:
    """(image int16 Volume, labels uint8 Volume) on nilearn's 2 mm MNI grid, cropped, LPS."""
    from nilearn import datasets

    images = {name: getattr(datasets, f"load_mni152_{name}")(resolution=2)
              for name in ("template", "gm_template", "wm_template", "brain_mask")}
    arrays = {}
    with tempfile.TemporaryDirectory() as tmp:  # the project's reader does the RAS -> LPS geometry
        for name, img in images.items():
            path = Path(tmp) / f"{name}.nii.gz"
            nib.save(nib.Nifti1Image(np.asarray(img.get_fdata(), np.float32), img.affine), path)
            arrays[name] = read_volume(path, as_label=False)
    ref = arrays["template"]
    labels = tissue_labels(arrays["gm_template"].data, arrays["wm_template"].data, arrays["brain_mask"].data)
    image = np.round(np.clip(ref.data, 0.0, 1.0) * IMAGE_SCALE).astype(np.int16)
    head = np.argwhere(ref.data > HEAD_THRESHOLD)
    lo = np.maximum(head.min(axis=0) - margin, 0)
    hi = np.minimum(head.max(axis=0) + margin + 1, ref.data.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    origin = tuple(ref.index_to_physical(np.asarray(lo[::-1], float)))  # (z, y, x) start -> (i, j, k)
    meta = {"source": "MNI152 2009 (nilearn), 2 mm", "notice": "sample_data/NOTICE-MNI.txt"}
    img_vol = Volume(image[crop], ref.spacing, origin, ref.direction, False, dict(meta))
    lab_vol = Volume(labels[crop], ref.spacing, origin, ref.direction, True, {**meta, "label_names": dict(TISSUE_LABELS)})
    return to_canonical(img_vol)[0], to_canonical(lab_vol)[0]
