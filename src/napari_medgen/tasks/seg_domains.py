"""Image domains for segmentation experiments: the phantom in one contrast style, or a user's folder.

A domain is named by a spec: ``phantom:STYLE`` (a style of :data:`..data.phantom.STYLES`:
mr_vendor_a, mr_vendor_b, mr_vendor_c, ct) or a folder path holding ``images/`` and ``labels/``
with files of the same names (NIfTI, NRRD, MHA; one volume each). Every domain yields 2D slices
at the synthesis model's slice grid (its in-plane spacing and shape, see ``models.spade``):
images (n, y, x) float32 scaled to [0, 1] per slice, labels (n, y, x) int64 model classes.

Phantom subjects never overlap between roles (seeds): training 100,000 + 10,000 x seed (the shipped
models saw seeds below 100), style references 800,000+, test 900,000+ (the same anatomy in every
test domain). A folder's label values are mapped to the model's classes by one
:class:`..data.label_mapping.LabelMapping` per folder (names from the files, ``--map VALUE=CLASS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import label_mapping
from ..errors import InputError
from ..models import spade
from ..models.features import scale_unit
from .segmentation import SegData

PHANTOM = "phantom:"
TRAIN_SEED0, STYLE_SEED0, TEST_SEED0 = 100_000, 800_000, 900_000
MIN_FOREGROUND = 0.05  # a folder slice is used when labels > 0 cover at least this fraction


@dataclass(frozen=True)
class Grid:
    """The slice grid of a model: shape (rows, cols), plane_spacing (rows, cols) mm, names {class: name}."""

    shape: tuple[int, int]
    plane_spacing: tuple[float, float]
    names: dict[int, str]

    @property
    def n_classes(self) -> int:
        return max(self.names) + 1


def domain_name(spec: str) -> str:
    """Short name of a domain spec: the phantom style, or the folder's name."""
    return spec[len(PHANTOM):] if spec.startswith(PHANTOM) else Path(spec).name


def check_spec(spec: str) -> str:
    """The spec itself; InputError for an unknown phantom style or a folder without images/ and labels/."""
    from ..data.phantom import STYLES

    if spec.startswith(PHANTOM):
        if spec[len(PHANTOM):] not in STYLES:
            raise InputError(f"Unknown phantom domain '{spec}': use phantom:STYLE with STYLE one of "
                             f"{', '.join(STYLES)}.")
        return spec
    folder = Path(spec)
    for sub in ("images", "labels"):
        if not (folder / sub).is_dir():
            raise InputError(f"Domain '{spec}' is neither phantom:STYLE nor a folder with '{sub}/' "
                             f"(a folder needs images/ and labels/ holding files of the same names).")
    return spec


def phantom_slices(seeds: range, style: str, grid: Grid, scale: bool = True) -> SegData:
    """Axial 2D phantom subjects (one slice per seed; tumour radius, breathing, cardiac phase and rotation
    drawn from the seed) at ``grid``'s shape over the phantom's field of view; ``scale=False``: images in
    the style's own units (MR a.u., CT HU) instead of [0, 1]."""
    from ..data.phantom import LABELS, make_phantom

    imgs, labs = [], []
    for s in seeds:
        r = np.random.default_rng([s, 5])
        img, lab = make_phantom(seed=s, shape=(1, *grid.shape), tumour_radius_mm=float(r.uniform(0, 20)),
                                breathing_phase=float(r.uniform()), cardiac_phase=float(r.uniform()),
                                rotation_deg=float(r.uniform(-10, 10)), style=style)
        imgs.append(scale_unit(img.data)[0] if scale else img.data[0])
        labs.append(lab.data[0].astype(np.int64))
    return SegData(np.stack(imgs), np.stack(labs), dict(LABELS))


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    from ..io.readers import supported_file

    images = {p.name: p for p in sorted((folder / "images").iterdir()) if p.is_file() and supported_file(p)}
    labels = {p.name: p for p in sorted((folder / "labels").iterdir()) if p.is_file() and supported_file(p)}
    missing = sorted(set(images) ^ set(labels))
    if missing:
        raise InputError(f"Folder '{folder}': '{missing[0]}' is in only one of images/ and labels/ "
                         "(each image needs a label map of the same file name).")
    if not images:
        raise InputError(f"Folder '{folder}' has no image files in images/ (.nii, .nii.gz, .nrrd, .mha).")
    return [(images[k], labels[k]) for k in sorted(images)]


def folder_slices(folder: str | Path, grid: Grid, explicit: dict[int, int] | None = None,
                  identity: bool = False, scale: bool = True) -> tuple[SegData, list[str]]:
    """Slices of every (image, labels) pair of ``folder`` with >= 5 % foreground, at ``grid``; returns the
    slices and, per slice, its file name. Label values -> model classes by one mapping for the folder.
    scale=False: images in the files' own units instead of [0, 1]."""
    from ..io.readers import read_volume

    folder = Path(folder)
    vols = [(read_volume(i, as_label=False), read_volume(lab, as_label=True)) for i, lab in _pairs(folder)]
    values = np.unique(np.concatenate([label_mapping.label_values(lab.data, f"Label map '{lab.metadata['source']}'")
                                       for _, lab in vols]))
    user_names: dict[int, str] = {}
    for _, lab in vols:
        user_names.update(label_mapping.user_label_names(lab.metadata))
    mapping = label_mapping.resolve(values, user_names, grid.names, grid.n_classes, explicit, identity,
                                    what=f"The label maps of '{folder}'", model="the synthesis model")
    images, labels, files = [], [], []
    for img, lab in vols:
        if img.data.shape != lab.data.shape or img.data.ndim != 3:
            raise InputError(f"Image '{img.metadata['source']}' {img.data.shape} and its labels {lab.data.shape} "
                             "must be 3D volumes of the same shape.")
        axis = spade.slice_axis(lab.spacing, lab.direction)
        plan = spade.plan_slices(lab.data.shape, lab.spacing, axis, grid.shape, grid.plane_spacing)
        classes = spade.cut(np.asarray(mapping.apply(lab.data, f"Label map '{lab.metadata['source']}'")), axis)
        keep = (classes > 0).reshape(len(classes), -1).mean(1) >= MIN_FOREGROUND
        if not keep.any():
            continue
        data = np.asarray(img.data, np.float32)
        cut = spade.to_model(spade.cut(data, axis)[keep], plan, nearest=False,
                             fill=spade.background_value(data, lab.data))
        images.append(scale_unit(cut) if scale else cut)
        labels.append(spade.to_model(classes[keep].astype(np.int64), plan, nearest=True))
        files += [Path(img.metadata["source"]).name] * int(keep.sum())
    if not images:
        raise InputError(f"Folder '{folder}' has no slice with at least {MIN_FOREGROUND:.0%} labelled foreground.")
    return SegData(np.concatenate(images), np.concatenate(labels), dict(grid.names)), files


def split_cases(data: SegData, files: list[str], n_first: int) -> tuple[SegData, SegData]:
    """(slices of the first ``n_first`` files, slices of the others): a folder's style references and test set."""
    names = list(dict.fromkeys(files))
    if len(names) <= n_first:
        raise InputError(f"A test folder needs more than {n_first} cases ({n_first} lend their unlabelled images "
                         f"for the target style); it has {len(names)}.")
    first = np.isin(np.asarray(files), names[:n_first])
    return data.subset(np.flatnonzero(first)), data.subset(np.flatnonzero(~first))


def training_set(spec: str, grid: Grid, n: int, seed: int, explicit: dict[int, int] | None = None,
                 identity: bool = False) -> SegData:
    """The labelled training slices of a domain: ``n`` phantom subjects (seeded), or every slice of a folder."""
    if spec.startswith(PHANTOM):
        start = TRAIN_SEED0 + 10_000 * seed
        return phantom_slices(range(start, start + n), domain_name(spec), grid)
    return folder_slices(spec, grid, explicit, identity)[0]


def test_sets(spec: str, grid: Grid, n_test: int, n_style: int, explicit: dict[int, int] | None = None,
              identity: bool = False) -> tuple[SegData, np.ndarray]:
    """(labelled test slices, unlabelled style-reference images (k, y, x) in the domain's own units).

    Phantom: ``n_test`` subjects (seeds 900,000+) and ``n_style`` others (800,000+). Folder: the first
    ``n_style`` cases (sorted by name) give only their images; the other cases are the test set.
    """
    if spec.startswith(PHANTOM):
        style = domain_name(spec)
        refs = (phantom_slices(range(STYLE_SEED0, STYLE_SEED0 + n_style), style, grid, scale=False).images
                if n_style else np.zeros((0, *grid.shape), np.float32))
        return phantom_slices(range(TEST_SEED0, TEST_SEED0 + n_test), style, grid), refs
    raw, files = folder_slices(spec, grid, explicit, identity, scale=False)
    refs, test = split_cases(raw, files, n_style)
    return SegData(scale_unit(test.images), test.labels, test.names), refs.images
