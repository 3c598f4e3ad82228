"""Training slices of the "spade" family: 2D slices (n, y, x) of label/image volume pairs.

Slices are cut along the training orientation (axial by default) at the first volume's in-plane
spacing, centre-padded to the model's input shape with each image's background, intensities
normalised to [-1, 1] with ``data.normalize``. Sources: the shipped 2 mm brain sample (every 5th
axial slice held back), the 1 mm MNI152 template (held-out slabs of ``data.brain.axial_split``),
phantom subjects in rotating MR contrast styles (seeds 0..N-1; seeds from 1000 held back), or the
user's image/label folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import normalize as norm
from ..errors import InputError
from ..io.volume import Volume
from ..models import spade
from .source import TrainingSource

BRAIN_HOLDOUT_EVERY = 5
PHANTOM_HOLDOUT_SEEDS = (1000, 1001, 1002, 1003)


@dataclass
class SliceSet:
    """Training slices. images: (n, y, x) float32 normalised; labels: (n, y, x) int64; styles: the
    contrast-style name of each slice ("" when unknown); spacing: (rows, cols) mm of the slices."""

    images: np.ndarray
    labels: np.ndarray
    styles: list[str]
    spacing: tuple[float, float]
    label_names: dict[int, str]
    normalization: dict[str, Any]
    description: str
    held_out: str = ""
    notes: list[str] = field(default_factory=list)
    held_out_slabs_mm: list[list[float]] | None = None


def volumes_to_slices(pairs: list[tuple[Volume, Volume, str]], model_shape: tuple[int, int],
                      orientation: str = "axial", keep: Any = None) -> tuple[np.ndarray, np.ndarray, list[str], tuple[float, float]]:
    """(image, labels, style) volume triples -> raw image slices, label slices (n, *model_shape), styles, spacing.

    Slices are cut along the orientation's axis at the first volume's in-plane spacing (others
    are resampled to it) and padded with each image's background (mean intensity of label 0).
    keep(index) -> bool selects slice indices (e.g. the held-back ones are dropped).
    """
    images, labels, styles = [], [], []
    ref_spacing = None
    for image, lab, style in pairs:
        if image.data.shape != lab.data.shape:
            raise InputError(f"Image and labels '{lab.metadata.get('source', '')}' differ in shape: "
                             f"{image.data.shape} vs {lab.data.shape}.")
        axis = spade.slice_axis(lab.spacing, lab.direction, orientation)
        ref_spacing = ref_spacing or spade.plane_spacing(lab.spacing, axis)
        plan = spade.plan_slices(lab.data.shape, lab.spacing, axis, model_shape, ref_spacing)
        idx = [i for i in range(lab.data.shape[axis]) if keep is None or keep(i)]
        img = np.asarray(image.data, dtype=np.float32)
        images.append(spade.to_model(spade.cut(img, axis)[idx], plan, nearest=False,
                                     fill=spade.background_value(img, lab.data)))
        labels.append(spade.to_model(spade.cut(lab.data, axis)[idx].astype(np.int64), plan, nearest=True))
        styles += [style] * len(idx)
    return np.concatenate(images), np.concatenate(labels), styles, ref_spacing


def brain_slices(model_shape: tuple[int, int], resolution: int = 2, high: float = 99.5) -> SliceSet:
    """Training slices of the brain: the shipped 2 mm sample (every 5th slice held back), or at 1 mm.
    ``high``: the intensity percentile normalised to 1 (every loader here; brighter values are clipped)."""
    if resolution == 1:
        return brain_split_1mm(model_shape, high=high)[0]
    if resolution != 2:
        raise InputError(f"Brain resolution {resolution} mm is not available: use 2 (shipped sample) or 1.")
    source = TrainingSource("brain")
    [(image, labels)] = source.pairs()
    keep = lambda i: i % BRAIN_HOLDOUT_EVERY != BRAIN_HOLDOUT_EVERY // 2  # noqa: E731
    raw, lab, styles, sp = volumes_to_slices([(image, labels, "")], model_shape, keep=keep)
    spec = norm.percentile_spec(image.data, high=high)
    return SliceSet(norm.normalize(raw, spec), lab, styles, sp, source.label_names(), spec,
                    "shipped brain sample (MNI152 2009 T1, 2 mm), axial slices",
                    f"axial slices z with z % {BRAIN_HOLDOUT_EVERY} == {BRAIN_HOLDOUT_EVERY // 2}")


def brain_split_1mm(model_shape: tuple[int, int], min_brain: float = 0.01, high: float = 99.5) -> tuple[SliceSet, SliceSet]:
    """(training, held-out) axial slices of the 1 mm MNI152 template, image zeroed outside the brain.

    The split is ``data.brain.axial_split`` (slabs named by MNI z); slices whose brain covers less
    than ``min_brain`` of the plane are left out of both. One normalisation (the volume's percentiles).
    """
    from ..data import brain

    image, labels = brain.derive_brain_sample(resolution=1)
    data = np.where(labels.data > 0, image.data, 0).astype(np.float32)
    image = Volume(data, image.spacing, image.origin, image.direction, False, dict(image.metadata))
    train, held = brain.axial_split(brain.axial_z_mm(labels))
    enough = (labels.data > 0).reshape(len(labels.data), -1).mean(1) >= min_brain
    spec = norm.percentile_spec(data, high=high)
    names = dict(brain.TISSUE_LABELS)
    slabs = [list(s) for s in brain.HELDOUT_SLABS_MM]
    out = []
    for mask, what in ((train & enough, "training"), (held & enough, "held-out")):
        raw, lab, styles, sp = volumes_to_slices([(image, labels, "")], model_shape, keep=lambda i, m=mask: bool(m[i]))
        out.append(SliceSet(norm.normalize(raw, spec), lab, styles, sp, names, spec,
                            f"MNI152 2009 T1 template (nilearn wheel), 1 mm, brain only, {len(raw)} {what} axial slices",
                            brain.heldout_description(), held_out_slabs_mm=slabs))
    return out[0], out[1]


def mr_styles() -> list[str]:
    """The phantom's MR contrast styles ("vendors"); "ct" (Hounsfield units) is left out: one model has
    one intensity scale."""
    from ..data import phantom

    return [s for s in phantom.STYLES if s.startswith("mr")]


def phantom_slices(model_shape: tuple[int, int], subjects: int, high: float = 99.5) -> SliceSet:
    """Axial slices of phantom subjects (seeds 0..subjects-1), style = mr_styles()[seed % 3]."""
    from ..data import phantom

    vendors = mr_styles()
    pairs = []
    for seed in range(subjects):
        style = vendors[seed % len(vendors)]
        image, labels = phantom.make_phantom(seed=seed, style=style)
        pairs.append((image, labels, style))
    raw, lab, styles, sp = volumes_to_slices(pairs, model_shape)
    spec = norm.percentile_spec(np.stack([p[0].data for p in pairs]), high=high)
    return SliceSet(norm.normalize(raw, spec), lab, styles, sp, dict(phantom.LABELS), spec,
                    f"phantom subjects seeds 0..{subjects - 1}, axial slices, styles {', '.join(vendors)} "
                    f"by seed % {len(vendors)}",
                    f"phantom seeds {', '.join(map(str, PHANTOM_HOLDOUT_SEEDS))} (never trained on)")


def folder_slices(source: TrainingSource, model_shape: tuple[int, int], high: float = 99.5) -> SliceSet:
    """Axial slices of the user's image/label folders (a "folders" source: pairs matched by file name)."""
    pairs = source.pairs()
    raw, lab, styles, sp = volumes_to_slices([(i, l, "") for i, l in pairs], model_shape)
    spec = norm.percentile_spec(np.concatenate([i.data.ravel() for i, _ in pairs]), high=high)
    names = source.label_names([l for _, l in pairs])
    return SliceSet(norm.normalize(raw, spec), lab, styles, sp, names, spec, source.describe())
