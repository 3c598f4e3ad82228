"""Derive the brain sample (T1 image + 4-class tissue labels) from the MNI152 2009 template in nilearn.

Only ``scripts/make_brain_sample.py`` calls this (the result ships in sample_data/brain/); the
nilearn files it reads are inside the nilearn wheel, so nothing is downloaded.

Tissue rule, per voxel of nilearn's grid (2 mm for the shipped sample, 1 mm for training the brain
label-to-image model): outside the brain mask (mask < 0.5) -> 0
background; inside, with grey/white-matter probabilities p_gm, p_wm in [0, 1] and
p_csf = clip(1 - p_gm - p_wm, 0, 1), the label is 1 + argmax(p_csf, p_gm, p_wm)
(1 CSF, 2 grey matter, 3 white matter; ties go to the lower label). The volume is then cropped to
the bounding box of the head (template > ``HEAD_THRESHOLD``) plus ``margin`` voxels and made axis-aligned LPS.

Held-out slices: :data:`HELDOUT_SLABS_MM` names axial slabs by their MNI z coordinate (mm), so the
same anatomy is held out at any resolution; :func:`axial_split` also drops a guard band of
:data:`HELDOUT_GUARD_MM` on each side of a slab from training, so no training slice is a near copy
of a held-out one. :data:`VALIDATION_SLABS_MM` are slabs for model selection (disjoint from the test
slabs and their guard bands); only a trainer that asks for them (``axial_split(z, validation=True)``)
leaves them and their guard band out of training, so models trained without them keep their split.
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
HELDOUT_SLABS_MM: tuple[tuple[float, float], ...] = ((-24.0, -16.0), (6.0, 14.0), (36.0, 44.0))
HELDOUT_GUARD_MM = 4.0  # also the validation slabs' guard band
VALIDATION_SLABS_MM: tuple[tuple[float, float], ...] = ((-8.0, -2.0), (24.0, 30.0))


def tissue_labels(p_gm: np.ndarray, p_wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 labels (same shape) from GM/WM probabilities in [0, 1] and a brain mask (see module doc)."""
    p_csf = np.clip(1.0 - p_gm - p_wm, 0.0, 1.0)
    labels = 1 + np.argmax(np.stack([p_csf, p_gm, p_wm]), axis=0)
    return np.where(mask >= 0.5, labels, 0).astype(np.uint8)


def _slabs(z: np.ndarray, slabs: tuple[tuple[float, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    """(inside, near) bool masks over z (n,) mm: inside a slab [lo, hi), or less than HELDOUT_GUARD_MM from one."""
    inside = np.zeros(z.shape, bool)
    near = np.zeros(z.shape, bool)
    for lo, hi in slabs:
        inside |= (z >= lo) & (z < hi)
        near |= (z > lo - HELDOUT_GUARD_MM) & (z < hi + HELDOUT_GUARD_MM)
    return inside, near


def axial_split(z_mm: np.ndarray, validation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(train, held_out) bool masks over axial slices at MNI z positions ``z_mm`` (n,) in mm.

    held_out: inside a slab of HELDOUT_SLABS_MM (lower bound included, upper excluded); train: at
    least HELDOUT_GUARD_MM away from every slab. ``validation``: held_out is the slabs of
    VALIDATION_SLABS_MM instead, and train also stays HELDOUT_GUARD_MM away from them (the test
    slabs stay out of train either way).
    """
    z = np.asarray(z_mm, dtype=float)
    test, near = _slabs(z, HELDOUT_SLABS_MM)
    if not validation:
        return ~near, test
    val, near_val = _slabs(z, VALIDATION_SLABS_MM)
    return ~(near | near_val), val


def heldout_description(validation: bool = False) -> str:
    """The held-out rule in words, for model cards (``validation``: the validation slabs too)."""
    def words(slabs: tuple[tuple[float, float], ...]) -> str:
        return ", ".join(f"[{lo:g}, {hi:g})" for lo, hi in slabs)

    text = (f"axial slices at MNI z (mm) in {words(HELDOUT_SLABS_MM)}; slices within {HELDOUT_GUARD_MM:g} mm of "
            "these slabs are used neither for training nor for evaluation")
    if validation:
        text += (f"; validation (model selection): slices at MNI z (mm) in {words(VALIDATION_SLABS_MM)}, "
                 f"their {HELDOUT_GUARD_MM:g} mm guard band not trained on either")
    return text


def axial_z_mm(volume: Volume) -> np.ndarray:
    """Physical z (mm, LPS = MNI's superior axis) of each axial slice of an axis-aligned (z, y, x) volume."""
    k = np.arange(volume.data.shape[0], dtype=float)
    return np.array([volume.index_to_physical(np.array([0.0, 0.0, kk]))[2] for kk in k])


def derive_brain_sample(margin: int = 2, resolution: int = 2) -> tuple[Volume, Volume]:
    """(image int16 Volume, labels uint8 Volume) on nilearn's ``resolution`` mm MNI grid, cropped, LPS."""
    from nilearn import datasets

    images = {name: getattr(datasets, f"load_mni152_{name}")(resolution=resolution)
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
    meta = {"source": f"MNI152 2009 (nilearn), {resolution} mm", "notice": "sample_data/NOTICE-MNI.txt"}
    img_vol = Volume(image[crop], ref.spacing, origin, ref.direction, False, dict(meta))
    lab_vol = Volume(labels[crop], ref.spacing, origin, ref.direction, True, {**meta, "label_names": dict(TISSUE_LABELS)})
    return to_canonical(img_vol)[0], to_canonical(lab_vol)[0]
