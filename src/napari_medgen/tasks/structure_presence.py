"""Is each phantom structure there? Segment generated phantom volumes (z, y, x) or slices (y, x) by
intensity and check every structure's size and place against the exact label maps of the training
phantoms. Everything below reads the same in 2D: "6-connected" is then 4-connected, a voxel a pixel.

Segmentation (:func:`segment`, a volume (z, y, x) in raw intensities): the renderer
(``data.phantom.render``) paints each label with one mean plus texture, multiplies by a smooth
quadratic bias field and adds noise. So the volume is divided by a quadratic fitted to image / body
mean over the body's voxels (:func:`bias_field`), and each voxel takes the label of the nearest of
the training data's class means (``tasks.quality.class_means``); labels closer than ``GROUP_GAP``
within-class spreads (body / RV / LV blood, 0.75 / 0.85 / 0.95 in mr_vendor_a) are told apart on
the intensity averaged over the voxel's neighbours of the same group. Dark voxels connected to the
volume's border are background, the enclosed ones lung.

Presence (:func:`judge`): counted like ``data.phantom.estimate_factors`` counts volumes (label
voxels), on the largest 6-connected piece of the structure's class inside the region where it lies
in the training maps (dilated by ``PLACE_TOL`` voxels): its count within [SIZE_LOW x smallest,
SIZE_HIGH x largest] training piece (and at least MIN_VOXELS), its centroid within ``PLACE_TOL`` voxels of a training
centroid. One piece, so that scattered voxels of the right intensity do not add up to a structure. Labels whose means lie within ``MERGE_GAP`` of each other (spine 0.55, tumour 0.50) count
as one intensity class there; their regions tell them apart. Variety (:func:`centre_spread`): how far
the present structures' centres scatter across a set of volumes (0 for copies of one template). Extra
tumours (:func:`lung_balls`): presence judges the largest piece only, so pieces of any structure's
intensity, enclosed by lung, are counted (a real phantom has one tumour, or none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..data.phantom import LABELS
from ..errors import InputError

MERGE_GAP = 0.1  # x the brightest class mean: classes closer than this share one intensity class
SIZE_LOW, SIZE_HIGH = 0.5, 2.0
MIN_VOXELS = 3  # a piece smaller than this is noise, not a structure resolved on the grid
PLACE_TOL = 2.0  # voxels
BIAS_ROUNDS = 2
BIAS_WINDOW = 0.3  # first guess of the body: within 30 % of its mean (the renderer's field is 1 +- 0.2)
GROUP_GAP = 4.0  # x the within-class spread: labels closer than this are one intensity group
SMOOTH_VOXELS = 0.7  # chosen on training seeds (0..47): RV and LV both found
ENCLOSED = 0.5  # a piece whose shell is more than this share lung lies in the lung (training phantoms: 3-voxel
# pieces of body texture on the lung's edge have exactly half)
BODY, LUNG, LV_BLOOD = 1, 2, 3
STRUCTURES: dict[int, str] = {k: v for k, v in LABELS.items() if k > 0}


@dataclass(frozen=True)
class Reference:
    """Per structure (label value), from exact training label maps (z, y, x): (smallest, largest) voxel
    count of its main 6-connected pieces (both lungs), those pieces' centroids (n, 3) in voxels, and the region where it may lie (every map's voxels of it,
    dilated by ``PLACE_TOL`` voxels)."""

    sizes: dict[int, tuple[int, int]]
    centroids: dict[int, np.ndarray]
    regions: dict[int, np.ndarray]


def reference(labels: Sequence[np.ndarray]) -> Reference:
    """Sizes and places of every structure's main 6-connected pieces (:func:`_main_pieces`: the largest,
    and both lungs) in exact training label maps (z, y, x, all one shape), and the regions where the
    structures lie."""
    stack = np.stack([np.asarray(x) for x in labels])
    sizes, cents, regions = {}, {}, {}
    for k, name in STRUCTURES.items():
        masks = stack == k
        if not masks.reshape(len(stack), -1).any(1).all():
            raise InputError(f"A reference label map holds no {name}: no size or place to compare with.")
        pieces = [p for m in masks for p in _main_pieces(m)]
        counts = [int(p.sum()) for p in pieces]
        sizes[k] = (min(counts), max(counts))
        cents[k] = np.stack([np.argwhere(p).mean(0) for p in pieces])
        regions[k] = ndimage.binary_dilation(masks.any(0), iterations=int(PLACE_TOL))
    return Reference(sizes, cents, regions)


def _main_pieces(mask: np.ndarray) -> list[np.ndarray]:
    """The 6-connected pieces of ``mask`` at least half the size of its largest (both lungs; one heart)."""
    pieces, n = ndimage.label(mask)
    counts = np.bincount(pieces.ravel())[1:]
    return [pieces == i + 1 for i in np.flatnonzero(counts >= counts.max() / 2)] if n else []


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected piece of ``mask`` (all False when it is empty)."""
    pieces, n = ndimage.label(mask)
    if n == 0:
        return pieces > 0
    return pieces == int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1


def _quadratic_basis(shape: tuple[int, ...]) -> np.ndarray:
    """The bias field's terms (1, each axis, each product of two axes, each square; 10 in 3D, 6 in 2D) on a
    [-1, 1] grid of ``shape`` -> (voxels, terms)."""
    axes = list(np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij"))
    terms = [np.ones(shape)] + axes + [a * b for i, a in enumerate(axes) for b in axes[i:]]
    return np.stack([t.ravel() for t in terms], axis=1)


def _nearest(image: np.ndarray, means: np.ndarray) -> np.ndarray:
    return np.argmin(np.abs(image[..., None] - means), axis=-1)


def intensity_groups(means: np.ndarray, sigma: float) -> list[tuple[int, ...]]:
    """Labels whose means chain within ``GROUP_GAP`` x sigma of each other form one group (sorted by mean)."""
    order = np.argsort(means)
    groups, current = [], [int(order[0])]
    for prev, k in zip(order[:-1], order[1:]):
        if means[k] - means[prev] < GROUP_GAP * sigma:
            current.append(int(k))
        else:
            groups.append(tuple(current))
            current = [int(k)]
    return groups + [tuple(current)]


def _classify(image: np.ndarray, means: np.ndarray, sigma: float) -> np.ndarray:
    """Each voxel's intensity group by nearest mean; within a group of several labels, the nearest mean to
    the group's intensity averaged around the voxel (Gaussian, ``SMOOTH_VOXELS``, over the group's voxels)."""
    labels = _nearest(image, means)
    out = labels.copy()
    for group in intensity_groups(means, sigma):
        if len(group) == 1:
            continue
        mask = np.isin(labels, group)
        weight = ndimage.gaussian_filter(mask.astype(np.float64), SMOOTH_VOXELS, mode="nearest")
        local = ndimage.gaussian_filter(np.where(mask, image, 0.0), SMOOTH_VOXELS, mode="nearest") / np.maximum(weight, 1e-6)
        sub = np.asarray(group)
        out[mask] = sub[_nearest(local[mask], means[sub])]
    return out


def bias_field(image: np.ndarray, body_mean: float) -> np.ndarray:
    """The renderer's multiplicative field, fitted as a quadratic to image / body mean over the voxels
    within ``BIAS_WINDOW`` of the body's level (a window that halves each round, symmetric so that
    the body's texture does not bias the fit; the heart's and spine's few voxels fall out) -> (z, y, x)."""
    basis = _quadratic_basis(image.shape)
    ratio = image.ravel() / body_mean
    field = np.ones(ratio.shape)
    for k in range(BIAS_ROUNDS):
        sel = np.abs(ratio / field - 1.0) < BIAS_WINDOW / 2 ** k
        if sel.sum() < basis.shape[1]:
            break
        coef, *_ = np.linalg.lstsq(basis[sel], ratio[sel], rcond=None)
        field = np.clip(basis @ coef, 0.5, 1.5)
    return field.reshape(image.shape)


def segment(image: np.ndarray, means: Sequence[float], sigma: float) -> np.ndarray:
    """Label map (z, y, x) int of a raw-intensity phantom volume: bias field removed, nearest class mean
    (:func:`_classify`), dark voxels connected to the volume's border
    background and the enclosed ones lung.

    means: the training data's mean intensity per label 0..7 (background first); sigma: their
    within-class intensity spread (:func:`class_spread`).
    """
    img = np.asarray(image, np.float64)
    m = np.asarray(means, np.float64)
    if img.ndim not in (2, 3) or len(m) != len(LABELS) or not np.all(np.isfinite(m)):
        raise InputError(f"segment needs a (z, y, x) volume or a (y, x) slice and {len(LABELS)} finite class means, "
                         f"got shape {img.shape} and {len(m)} means.")
    corrected = img / bias_field(img, float(m[BODY]))
    labels = _classify(corrected, m, sigma)
    dark, n = ndimage.label(np.isin(labels, (0, LUNG)))
    border = np.unique(np.concatenate([np.take(dark, [0, -1], axis=a).ravel() for a in range(dark.ndim)]))
    labels[dark > 0] = LUNG
    labels[np.isin(dark, border[border > 0])] = 0
    return labels


def lung_balls(labels: np.ndarray) -> int:
    """Number of 6-connected pieces of at least ``MIN_VOXELS`` of any structure but body and lung in a
    segmented volume (:func:`segment`, z, y, x) whose shell (the voxels next to them) is more than
    ``ENCLOSED`` lung: a real phantom's tumour, and any extra one a model draws."""
    pieces, n = ndimage.label(~np.isin(labels, (0, BODY, LUNG)))
    count = 0
    for sl, i in zip(ndimage.find_objects(pieces), range(1, n + 1)):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        piece = pieces[box] == i
        if piece.sum() < MIN_VOXELS:
            continue
        shell = ndimage.binary_dilation(piece) & ~piece
        count += int(np.mean(labels[box][shell] == LUNG) > ENCLOSED)
    return count


def class_spread(images: np.ndarray, labels: np.ndarray) -> float:
    """Pooled within-class standard deviation of training volumes' intensities (the segmentation's noise)."""
    img, lab = np.asarray(images, np.float64), np.asarray(labels).astype(np.int64)
    means = np.bincount(lab.ravel(), weights=img.ravel()) / np.maximum(np.bincount(lab.ravel()), 1)
    return float(np.sqrt(np.mean((img - means[lab]) ** 2)))


def intensity_classes(means: Sequence[float]) -> dict[int, tuple[int, ...]]:
    """Per structure, the labels that share its intensity class (means within ``MERGE_GAP`` of the brightest)."""
    m = np.asarray(means, np.float64)
    gap = MERGE_GAP * float(np.nanmax(np.abs(m)))
    return {k: tuple(j for j in STRUCTURES if abs(m[j] - m[k]) < gap) for k in STRUCTURES}


def judge(labels: np.ndarray, ref: Reference, classes: dict[int, tuple[int, ...]]) -> dict[int, np.ndarray | None]:
    """Per structure: the centre (z, y, x, voxels) of the largest 6-connected piece of its intensity class
    inside its region when that piece is present (a plausible size, at least ``MIN_VOXELS``, centred within
    ``PLACE_TOL`` voxels of a training centroid), else None."""
    out: dict[int, np.ndarray | None] = {}
    for k in STRUCTURES:
        piece = _largest_piece(np.isin(labels, classes[k]) & ref.regions[k])
        count = int(piece.sum())
        lo, hi = ref.sizes[k]
        centre = np.argwhere(piece).mean(0) if count else None
        ok = (centre is not None and max(SIZE_LOW * lo, MIN_VOXELS) <= count <= SIZE_HIGH * hi
              and np.min(np.linalg.norm(ref.centroids[k] - centre, axis=1)) <= PLACE_TOL)
        out[k] = centre if ok else None
    return out


def presence(labels: np.ndarray, ref: Reference, classes: dict[int, tuple[int, ...]]) -> dict[int, bool]:
    """Per structure: is it present (:func:`judge`)?"""
    return {k: c is not None for k, c in judge(labels, ref, classes).items()}


def shares_present(judged: Sequence[dict[int, np.ndarray | None]]) -> dict[str, float]:
    """Fraction of the judged volumes (:func:`judge`, one dict each) in which each structure is present, by name."""
    return {name: float(np.mean([j[k] is not None for j in judged])) for k, name in STRUCTURES.items()}


def centre_spread(judged: Sequence[dict[int, np.ndarray | None]]) -> float:
    """How much the anatomy varies across a set (voxels; 0 for copies of one volume): per structure, the
    RMS distance of its centres (:func:`judge`, volumes where it is present) from their mean, averaged over
    the structures present in at least two volumes."""
    spreads = []
    for k in STRUCTURES:
        centres = np.array([j[k] for j in judged if j[k] is not None])
        if len(centres) >= 2:
            spreads.append(float(np.sqrt(((centres - centres.mean(0)) ** 2).sum(1).mean())))
    if not spreads:
        raise InputError("No structure is present in two of the volumes: no spread of their centres to measure.")
    return float(np.mean(spreads))


def _label_maps(segmented: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The label maps of :meth:`Measure.segment`; InputError for raw intensities (float) passed in their place."""
    maps = [np.asarray(x) for x in segmented]
    if any(not np.issubdtype(x.dtype, np.integer) for x in maps):
        raise InputError("Structure presence takes label maps (integers), not images: pass Measure.segment(volumes).")
    return maps


@dataclass(frozen=True)
class Measure:
    """What presence is judged against, from the training volumes and their exact label maps."""

    means: np.ndarray
    sigma: float
    ref: Reference

    @classmethod
    def from_training(cls, images: np.ndarray, labels: np.ndarray) -> Measure:
        """images, labels: (n, z, y, x) raw training volumes and their label maps."""
        from .quality import class_means

        return cls(class_means(images, labels, len(LABELS)), class_spread(images, labels), reference(list(labels)))

    def segment(self, volumes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each volume (raw, (z,) y, x) segmented into the phantom's classes (:func:`segment`): the label
        maps every other method takes, so that a set is segmented once."""
        return [segment(vol, self.means, self.sigma) for vol in volumes]

    def judge(self, segmented: Sequence[np.ndarray]) -> list[dict[int, np.ndarray | None]]:
        """Each label map of :meth:`segment` judged (:func:`judge`): per structure its centre or None."""
        classes = intensity_classes(self.means)
        return [judge(labels, self.ref, classes) for labels in _label_maps(segmented)]

    def hearts_in_place(self, segmented: Sequence[np.ndarray]) -> np.ndarray:
        """Per label map of :meth:`segment` ((z,) y, x): does its blood pool (the largest piece segmented as
        LV blood) lie on the training hearts' side rather than mirrored left-right (last axis) about the
        body's centre? False where there is none. -> (n,) bool."""
        train_x = float(self.ref.centroids[LV_BLOOD][:, -1].mean())
        out = []
        for labels in _label_maps(segmented):
            pool = _largest_piece(labels == LV_BLOOD)
            if not pool.any():
                out.append(False)
                continue
            x, centre = np.argwhere(pool)[:, -1].mean(), np.argwhere(labels > 0)[:, -1].mean()
            out.append(bool(abs(x - train_x) < abs(x - (2 * centre - train_x))))
        return np.array(out)

    def rates(self, segmented: Sequence[np.ndarray]) -> dict[str, float]:
        """Fraction of the label maps of :meth:`segment` in which each structure is present, by name."""
        return shares_present(self.judge(segmented))
