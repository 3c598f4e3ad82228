"""Are a brain slice's structures there? Ventricles and grey/white-matter contrast in 2D axial T1 slices
(generated or real), found from intensities alone, with the tissue means of labelled training slices.

Images are stacks ``(n, y, x)`` in one intensity unit with square pixels of ``pixel_mm`` mm; a
:class:`Reference` holds what labelled training slices on the same grid tell (:func:`reference`).

Tissues (:func:`tissue_classes`): within the brain (:func:`napari_medgen.tasks.quality.foreground`
with the training slices' range, holes filled), each pixel takes the tissue (1 CSF, 2 grey matter,
3 white matter) whose training mean is nearest its intensity. The same rules apply to label maps
(:func:`label_structures`), which is how the constants below were chosen: on the 50 training slices
of the shipped 80 x 80 brain grid (2.35 mm pixels), the answers from intensities agree with those
from the label maps on 90 % (ventricles) and 96 % (contrast) of them
(``tests/tasks/test_brain_structures.py`` keeps at least 85 %).

- Ventricles (:func:`has_ventricles`): a CSF piece (4-connected) of at least ``VENTRICLE_MIN_MM2`` whose
  every pixel lies at least ``VENTRICLE_DEPTH_MM`` inside the brain, and at least ``MIRRORED_SHARE`` of
  whose pixels have deep CSF at their mirror image across the brain's middle column: the deep,
  left-right symmetric CSF of the lateral, third or fourth ventricles (the slices are axial and
  upright, as the training slices are). Sulcal CSF and the midline fissure reach the surface or are
  smaller; the dark spots of a mottled texture are not mirrored.
- Grey/white contrast (:func:`has_grey_white_contrast`): the folded grey/white boundary of a cortex.
  Its density (grey-white neighbour pairs per pixel of the brain's interior, the brain eroded by
  ``RIM_PIXELS`` so the outline's partial volume does not count) within [``EDGE_LOW``, ``EDGE_HIGH``]
  x the training label maps' median. A blurred brain or a smooth blob has too little boundary (two
  large regions); shuffled pixels too much. A mottled texture of two intensities passes it: this
  row says that there is contrast, the ventricles that there is anatomy.

Checked on models rejected earlier by eye (16 samples each, seed 7, share over the training
slices'): the 64 x 64 blob model, ventricles 0.00 and contrast 0.13; the mottled velocity model,
ventricles 0.56 and contrast 1.04. The noise model's second stage: 1.00 and 0.91; its third: 1.00 and 0.98.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import quality as q

CSF, GREY, WHITE = 1, 2, 3
VENTRICLE_MIN_MM2 = 80.0  # ~15 pixels of 2.35 mm
VENTRICLE_DEPTH_MM = 16.0  # ~7 pixels of 2.35 mm
MIRRORED_SHARE = 0.5
EDGE_LOW, EDGE_HIGH = 0.6, 1.6
RIM_PIXELS = 2
STRUCTURES = ("ventricles", "grey/white contrast")


@dataclass(frozen=True)
class Reference:
    """From labelled training slices: the tissue means (CSF, grey, white matter; the images' unit), the
    median grey/white edge density of the label maps (pairs per interior pixel) and the images (n, y, x),
    whose pooled range sets the brain threshold."""

    means: np.ndarray
    edge_density: float
    images: np.ndarray


def reference(images: np.ndarray, labels: np.ndarray) -> Reference:
    """:class:`Reference` of training images and their tissue label maps (n, y, x; 0 background, 1 CSF,
    2 grey, 3 white matter)."""
    labels = np.asarray(labels, np.int64)
    means = q.class_means(np.asarray(images, np.float64), labels, 4)[1:]
    return Reference(means, float(np.median([edge_density(t) for t in labels])), np.asarray(images))


def tissue_classes(images: np.ndarray, ref: Reference) -> np.ndarray:
    """Tissue maps (n, y, x) int: 0 outside the brain, else the tissue (1..3) of the nearest training mean."""
    x = np.asarray(images, np.float64)
    brain = q.foreground(x, ref.images, erode=0)
    nearest = 1 + np.argmin(np.abs(x[..., None] - ref.means), axis=-1)
    return np.where(brain, nearest, 0)


def has_ventricles(tissues: np.ndarray, pixel_mm: float) -> bool:
    """Whether one tissue map (y, x) holds a deep, mirrored CSF piece (see the module's docstring)."""
    brain = ndimage.binary_fill_holes(tissues > 0)
    if not brain.any():
        return False
    depth = ndimage.distance_transform_edt(brain) * pixel_mm
    deep_csf = (tissues == CSF) & (depth >= VENTRICLE_DEPTH_MM)
    pieces, n = ndimage.label(tissues == CSF)
    if n == 0:
        return False
    index = range(1, n + 1)
    area = np.bincount(pieces.ravel(), minlength=n + 1)[1:] * pixel_mm**2
    shallowest = np.asarray(ndimage.minimum(depth, pieces, index))
    mirrored = np.asarray(ndimage.mean(_mirror(deep_csf, brain), pieces, index))
    return bool(((area >= VENTRICLE_MIN_MM2) & (shallowest >= VENTRICLE_DEPTH_MM) & (mirrored >= MIRRORED_SHARE)).any())


def _mirror(mask: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``mask`` (y, x) mirrored left-right about the middle column of the brain's extent."""
    cols = np.flatnonzero(brain.any(0))
    source = np.rint(cols[0] + cols[-1] - np.arange(mask.shape[1])).astype(int)
    inside = (source >= 0) & (source < mask.shape[1])
    out = np.zeros_like(mask)
    out[:, inside] = mask[:, source[inside]]
    return out


def edge_density(tissues: np.ndarray) -> float:
    """Grey-white neighbour pairs (4-neighbours, both in the interior) per pixel of one map's brain interior."""
    interior = ndimage.binary_erosion(tissues > 0, iterations=RIM_PIXELS)
    if not interior.any():
        return 0.0
    g, w = (tissues == GREY) & interior, (tissues == WHITE) & interior
    across = (g[:, 1:] & w[:, :-1]) | (w[:, 1:] & g[:, :-1])
    down = (g[1:] & w[:-1]) | (w[1:] & g[:-1])
    return float(across.sum() + down.sum()) / float(interior.sum())


def has_grey_white_contrast(tissues: np.ndarray, ref: Reference) -> bool:
    """Whether one map's grey/white edge density lies within [EDGE_LOW, EDGE_HIGH] x the reference's."""
    return bool(EDGE_LOW * ref.edge_density <= edge_density(tissues) <= EDGE_HIGH * ref.edge_density)


def structures(tissues: np.ndarray, ref: Reference, pixel_mm: float) -> dict[str, np.ndarray]:
    """Per structure name (:data:`STRUCTURES`), whether each map of ``tissues`` (n, y, x) holds it: (n,) bool."""
    return {"ventricles": np.array([has_ventricles(t, pixel_mm) for t in tissues]),
            "grey/white contrast": np.array([has_grey_white_contrast(t, ref) for t in tissues])}


def relative_shares(found: dict[str, np.ndarray], source: dict[str, np.ndarray]) -> dict[str, float]:
    """Per structure, the share of images that hold it (``found``, from :func:`structures`) over the
    share in the real images they come from (``source``): 1 when the structure is as common as in the
    real slices, 0 when it is never there (and ``source`` never holds it)."""
    return {k: float(found[k].mean() / max(source[k].mean(), 1e-9)) for k in STRUCTURES}


def image_structures(images: np.ndarray, ref: Reference, pixel_mm: float) -> dict[str, np.ndarray]:
    """:func:`structures` of images (n, y, x), their tissues found by :func:`tissue_classes`."""
    return structures(tissue_classes(images, ref), ref, pixel_mm)


def label_structures(labels: np.ndarray, ref: Reference, pixel_mm: float) -> dict[str, np.ndarray]:
    """:func:`structures` of tissue label maps (n, y, x; 0 background, 1 CSF, 2 grey, 3 white matter)."""
    return structures(np.asarray(labels, np.int64), ref, pixel_mm)
