"""A 2D brain slice prepared the way the brain VAE was trained: skull stripped, scaled on its own brain,
resampled to the model's pixel size and centred (the "invert current slice" path, and its training data).

Preparation of one axial slice (H, W) in the scan's own units with pixel spacing (row, col) mm:

1. brain mask: the caller's (a label layer: label > 0), else :func:`auto_brain_mask`;
2. intensities: ``(x - lo) / (hi - lo)`` with lo, hi the ``low``/``high`` percentiles (0.5, 99.5) of
   the slice *inside its brain mask*; 0 outside the mask (skull, scalp and air removed);
3. geometry: a ``size`` x ``size`` grid of ``FOV_MM / size`` mm pixels centred on the centre of the
   mask's bounding box (anti-aliased by a Gaussian of (factor - 1) / 2 input pixels, then bilinear).

:class:`PreparedSlice` keeps lo, hi and the grid, so a model's output is put back into the scan's
slice, in its units (:meth:`PreparedSlice.restore`). Training data (:func:`training_slices`) is the
1 mm MNI152 2009 template with its own brain mask, each slice prepared by this same code, the held-out
axial slabs of :func:`napari_medgen.data.brain.axial_split` left out (and its validation slabs, when asked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from ..errors import InputError

FOV_MM = 192.0  # the model grid's field of view (mm): an adult brain's largest axial extent is ~170 mm
PERCENTILES = (0.5, 99.5)  # in-brain percentiles mapped to 0 and 1
MIN_BRAIN_FRACTION = 0.05  # slices whose brain covers less of the field of view are not used


def auto_brain_mask(image: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0), erode_mm: float = 4.0
                    ) -> np.ndarray:
    """Brain mask (H, W) bool of a T1-weighted axial slice with skull, in any units (offset and scale free).

    Head = the filled region above half Otsu's air/head threshold; tissue = head pixels above 0.6 of
    Otsu's threshold within the head (dark skull and CSF below); tissue eroded by ``erode_mm`` cuts
    the brain from the scalp; components of at least 10 % of the largest that do not enclose it (a
    scalp ring) are kept, dilated back, closed and filled (ventricles and sulcal CSF inside).
    Thresholds are measured from the slice's 1st percentile (its air level).
    """
    im = np.asarray(image, np.float64)
    px = float(min(spacing_mm))
    im = ndimage.gaussian_filter(im, sigma=[1.0 / s for s in spacing_mm]) - np.percentile(im, 1)
    if not np.isfinite(im).all() or im.max() <= 0:
        raise InputError("Cannot find the brain in this slice: it is constant or not finite. Give a brain mask "
                         "(a label layer) instead.")
    head = ndimage.binary_fill_holes(im > 0.5 * threshold_otsu(im[im > 0]))
    tissue = head & (im > 0.6 * threshold_otsu(im[head]))
    radius = max(1, int(round(erode_mm / px)))
    cross = ndimage.generate_binary_structure(2, 1)
    core = ndimage.binary_erosion(tissue, cross, iterations=radius)
    parts, n = ndimage.label(core)
    if n == 0:
        raise InputError("Cannot find the brain in this slice automatically. Give a brain mask (a label layer).")
    sizes = np.asarray(ndimage.sum(core, parts, range(1, n + 1)))
    biggest = 1 + int(np.argmax(sizes))
    keep = np.zeros(n + 1, bool)
    for j in np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1:  # a ring (scalp) around the largest is not brain
        keep[j] = j == biggest or not ndimage.binary_fill_holes(parts == j)[parts == biggest].any()
    mask = ndimage.binary_dilation(keep[parts], cross, iterations=radius + 1) & head
    return ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=3))


@dataclass(frozen=True)
class PreparedSlice:
    """A slice on the model grid. image: (size, size) float32, 0..1 inside the brain (lo -> 0, hi -> 1,
    not clipped), 0 outside; mask: (size, size) bool; lo, hi: the scan's units; centre: (row, col)
    input pixel at the grid's centre; step: (row, col) input pixels per model pixel; shape: (H, W)."""

    image: np.ndarray
    mask: np.ndarray
    lo: float
    hi: float
    centre: tuple[float, float]
    step: tuple[float, float]
    shape: tuple[int, int]

    def to_scan(self, maps: np.ndarray) -> np.ndarray:
        """Model-grid maps (size, size) or (C, size, size) -> (H, W) or (C, H, W) float32 on the scan's
        slice (bilinear; 0 where the grid does not reach)."""
        maps = np.asarray(maps, np.float64)
        size = maps.shape[-1]
        rows, cols = np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij")
        coords = [(rows - self.centre[0]) / self.step[0] + (size - 1) / 2,
                  (cols - self.centre[1]) / self.step[1] + (size - 1) / 2]
        out = [ndimage.map_coordinates(m, coords, order=1, mode="constant", cval=0.0)
               for m in maps.reshape(-1, size, size)]
        return np.stack(out).reshape(maps.shape[:-2] + self.shape).astype(np.float32)

    def restore(self, model_image: np.ndarray) -> np.ndarray:
        """A model-grid image (size, size) in prepared units -> (H, W) float32 on the scan's slice, in the
        scan's units (lo where the grid does not reach)."""
        return (self.to_scan(model_image) * (self.hi - self.lo) + self.lo).astype(np.float32)


def _sample(image: np.ndarray, centre: tuple[float, float], step: tuple[float, float], size: int, order: int
            ) -> np.ndarray:
    """``image`` (H, W) on the size x size grid of ``step`` input pixels centred on input pixel ``centre``
    (anti-aliased when ``order`` is 1)."""
    if order == 1:
        image = ndimage.gaussian_filter(image, sigma=[max(0.0, (s - 1) / 2) for s in step])
    axis = np.arange(size) - (size - 1) / 2
    rows, cols = np.meshgrid(centre[0] + axis * step[0], centre[1] + axis * step[1], indexing="ij")
    return ndimage.map_coordinates(image, [rows, cols], order=order, mode="constant", cval=0.0)


def prepare_slice(image: np.ndarray, spacing_mm: tuple[float, float], size: int, mask: np.ndarray | None = None,
                  labels: np.ndarray | None = None) -> tuple[PreparedSlice, np.ndarray | None]:
    """Prepare one slice (H, W), pixel spacing (row, col) mm, for a ``size`` x ``size`` model (module doc).

    mask: (H, W) brain mask (nonzero = brain), else :func:`auto_brain_mask`. labels: (H, W) integer
    map resampled alongside (nearest), for training data. Returns (PreparedSlice, labels or None).
    """
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or min(image.shape) < 8:
        raise InputError(f"A brain slice must be a 2D image of at least 8 x 8 pixels, got shape {image.shape}.")
    if len(spacing_mm) != 2 or not all(np.isfinite(s) and s > 0 for s in spacing_mm):
        raise InputError(f"The slice's pixel spacing must be two positive numbers (mm), got {tuple(spacing_mm)}.")
    if mask is None:
        mask = auto_brain_mask(image, spacing_mm)
    mask = np.asarray(mask) > 0
    if mask.shape != image.shape:
        raise InputError(f"The brain mask's shape {mask.shape} differs from the slice's {image.shape}.")
    if mask.sum() < 16:
        raise InputError("The brain mask holds (almost) no pixel of this slice: pick a slice through the brain.")
    lo, hi = (float(v) for v in np.percentile(image[mask], PERCENTILES))
    hi = hi if hi > lo else lo + 1.0
    scaled = np.where(mask, (image - lo) / (hi - lo), 0.0)
    where = np.argwhere(mask)
    centre = tuple(float(v) for v in (where.min(0) + where.max(0)) / 2)
    step = tuple(FOV_MM / size / float(s) for s in spacing_mm)
    out = _sample(scaled, centre, step, size, 1).astype(np.float32)
    small_mask = _sample(mask.astype(np.float64), centre, step, size, 1) > 0.5
    small_labels = None if labels is None else _sample(np.asarray(labels), centre, step, size, 0).astype(np.uint8)
    return PreparedSlice(out, small_mask, lo, hi, centre, step, image.shape), small_labels


def training_slices(size: int, held_out: bool = False, validation: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axial slices of the 1 mm MNI152 2009 template (with skull), prepared with its own brain mask:
    images (n, size, size) float32, labels (n, size, size) uint8 (:data:`..brain.TISSUE_LABELS`), and
    their MNI z (n,) mm, split by ``brain.axial_split(z, validation)``: ``held_out`` gives its held-out
    slices (the test slabs, or with ``validation`` the validation slabs) instead of its training slices
    (guard bands are in neither); slices whose brain covers < MIN_BRAIN_FRACTION of the field of view
    are skipped."""
    from . import brain

    image, labels = brain.derive_brain_sample(resolution=1)
    z = brain.axial_z_mm(labels)
    train, held = brain.axial_split(z, validation)
    spacing = (float(labels.spacing[1]), float(labels.spacing[0]))  # (row, col) = (y, x) mm
    min_pixels = MIN_BRAIN_FRACTION * FOV_MM ** 2 / (spacing[0] * spacing[1])
    images, labs, zs = [], [], []
    for k in np.flatnonzero(held if held_out else train):
        if (labels.data[k] > 0).sum() < min_pixels:
            continue
        prepared, lab = prepare_slice(image.data[k], spacing, size, labels.data[k], labels.data[k])
        images.append(prepared.image)
        labs.append(lab)
        zs.append(float(z[k]))
    return np.stack(images), np.stack(labs), np.asarray(zs)


def augmented_bank(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (m, s, s) prepared slices and their ``labels``, then random deformations of them up to n
    slices in all (``data.augment.slice_augmentation``: flip, affine, elastic, bias field, contrast,
    resolution; seeded), so a model sees new folding patterns, not only the template's m slices."""
    import torch

    from .augment import augment_batch, slice_augmentation

    extra = max(0, n - len(images))
    if extra == 0:
        return images.astype(np.float32), labels.astype(np.uint8)
    pick = np.random.default_rng(seed).integers(len(images), size=extra)
    x = torch.as_tensor(np.clip(images[pick], 0.0, 1.0) * 2.0 - 1.0)[:, None]
    aug_x, aug_l = augment_batch(slice_augmentation(seed), x, torch.as_tensor(labels[pick].astype(np.int64)))
    out = np.concatenate([images, (aug_x[:, 0].numpy() + 1.0) / 2.0])
    return out.astype(np.float32), np.concatenate([labels, aug_l.numpy().astype(np.uint8)])


def with_synthetic_skull(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float], seed: int = 0
                         ) -> np.ndarray:
    """A skull-stripped slice (H, W) given a head around its brain ``mask``, for checks (the MNI152 2009
    template in the nilearn wheel has no skull): outwards from the brain 2 mm of CSF (0.15), 5 mm of
    bone (0.05), 6 mm of scalp (0.9) and air (0), in units of the brain's 99th percentile, with 2 %
    Gaussian noise and a 1-pixel blur; the brain's own pixels are kept. The slice must leave 13 mm
    around the brain (pad it first)."""
    mask = np.asarray(mask) > 0
    dist = ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
    level = np.select([dist <= 2, dist <= 7, dist <= 13], [0.15, 0.05, 0.9], 0.0)
    ref = float(np.percentile(np.asarray(image)[mask], 99))
    noise = np.random.default_rng(seed).normal(0.0, 0.02, mask.shape)
    head = ndimage.gaussian_filter((level + noise) * ref, 1.0)
    return np.where(mask, image, head).astype(np.float32)
