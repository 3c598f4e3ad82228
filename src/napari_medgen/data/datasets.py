"""Training data from folders: image/label volumes matched by file name, and 2D slices of them.

Matching: ``case01.nii.gz`` in the images folder pairs with ``case01_seg.nii.gz`` (or ``case01.nrrd``,
``case01_label.mha`` ...) in the labels folder: the key is the file name without its volume
extension and without one role suffix such as ``_seg``, ``_label``, ``_mask``, ``_img``
(case-insensitive). Sub-folders are read as DICOM series, keyed by their name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.transforms import ResizeWithPadOrCrop

from ..errors import InputError, ReadError
from ..io.readers import ITK_SUFFIXES, NIFTI_SUFFIXES, read_volume
from ..io.volume import Volume

ROLE_SUFFIXES = ("_segmentation", "_seg", "_labels", "_label", "_mask", "_lbl", "_gt", "_image", "_img")
_SUFFIXES = tuple(sorted(NIFTI_SUFFIXES + ITK_SUFFIXES, key=len, reverse=True))  # ".nii.gz" before ".nii"


def case_key(path: str | Path) -> str:
    """Matching key of a volume file: lower-case name without volume extension and role suffix."""
    name = Path(path).name.lower()
    for ext in _SUFFIXES:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    for role in ROLE_SUFFIXES:
        if name.endswith(role) and len(name) > len(role):
            return name[: -len(role)]
    return name


def list_volumes(folder: str | Path) -> dict[str, Path]:
    """{case key: path} of the volume files (and DICOM series sub-folders) in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(folder, "is not a folder" if folder.exists() else "does not exist")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.name.lower().endswith(_SUFFIXES):
            key = case_key(p)
            if key in found:
                raise InputError(f"Folder '{folder}' holds two volumes for case '{key}': "
                                 f"'{found[key].name}' and '{p.name}'. Keep one.")
            found[key] = p
    if not found:
        raise ReadError(folder, f"contains no volume files ({', '.join(_SUFFIXES)}) or DICOM series folders")
    return found


def load_pairs(images_dir: str | Path, labels_dir: str | Path) -> list[tuple[Volume, Volume]]:
    """Read every (image, label map) pair, matched by :func:`case_key`, sorted by key.

    Raises InputError naming the files when a case has no partner, a volume is 4D, or an image
    and its label map differ in shape (z, y, x)."""
    images, labels = list_volumes(images_dir), list_volumes(labels_dir)
    only_img, only_lab = sorted(images.keys() - labels.keys()), sorted(labels.keys() - images.keys())
    if only_img or only_lab:
        parts = []
        if only_img:
            parts.append(f"images without a label map in '{labels_dir}': {_names(images, only_img)}")
        if only_lab:
            parts.append(f"label maps without an image in '{images_dir}': {_names(labels, only_lab)}")
        raise InputError("Images and label maps do not match by file name; " + "; ".join(parts) + ".")
    pairs = []
    for key in sorted(images):
        img, lab = read_volume(images[key], as_label=False), read_volume(labels[key], as_label=True)
        for vol, path in ((img, images[key]), (lab, labels[key])):
            if vol.is_time_series:
                raise InputError(f"'{path}' is a 4D series (shape {vol.data.shape}); training needs 3D volumes.")
        if img.spatial_shape != lab.spatial_shape:
            raise InputError(f"Image '{images[key]}' has shape {img.spatial_shape} (z, y, x) but its label map "
                             f"'{labels[key]}' has shape {lab.spatial_shape}.")
        pairs.append((img, lab))
    return pairs


def _names(found: dict[str, Path], keys: list[str], at_most: int = 5) -> str:
    shown = ", ".join(found[k].name for k in keys[:at_most])
    return shown + (f" and {len(keys) - at_most} more" if len(keys) > at_most else "")


def through_plane_axis(vol: Volume) -> int:
    """Array axis (0, 1 or 2 of (z, y, x)) to slice along: the one with the largest spacing, or, for
    (near-)isotropic voxels, the one whose direction points most head-foot (axial slices)."""
    spacing_zyx = np.asarray(vol.spacing)[::-1]  # spacing of array axes (z, y, x)
    if spacing_zyx.max() > 1.01 * spacing_zyx.min():
        return int(np.argmax(spacing_zyx))  # ties: the first, z
    index_axis = int(np.argmax(np.abs(vol.direction[2, :])))  # index axis i, j, k is array axis 2, 1, 0
    return 2 - index_axis


def axial_slices(image: Volume, labels: Volume, size: tuple[int, int] = (128, 128),
                 axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """2D slices along ``axis`` (default :func:`through_plane_axis`), centre-padded/cropped to ``size``.

    Returns (images (n, *size) float32, padded with the image minimum; labels (n, *size) uint8,
    padded with 0). n = number of slices along the axis."""
    axis = through_plane_axis(image) if axis is None else axis
    img = np.moveaxis(np.asarray(image.data, dtype=np.float32), axis, 0)
    lab = np.moveaxis(np.asarray(labels.data), axis, 0)
    # MONAI treats the first axis as channels: every slice is padded/cropped the same way
    fit = ResizeWithPadOrCrop(spatial_size=tuple(size), mode="constant")
    fill = float(img.min()) if img.size else 0.0
    out_img = np.asarray(fit(img - fill)) + fill
    out_lab = np.asarray(fit(lab.astype(np.int32)))
    return out_img.astype(np.float32), out_lab.astype(np.uint8)


def slices2d(pairs: list[tuple[Volume, Volume]], size: tuple[int, int] = (128, 128),
             min_foreground: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`axial_slices` of every pair stacked: (images (N, *size) float32, labels (N, *size) uint8),
    keeping only slices whose label foreground (label > 0) covers at least ``min_foreground`` (0..1)."""
    imgs, labs = zip(*(axial_slices(i, lab, size) for i, lab in pairs), strict=True)
    images, labels = np.concatenate(imgs), np.concatenate(labs)
    keep = (labels > 0).mean(axis=(1, 2)) >= min_foreground
    if not keep.any():
        raise InputError(f"No slice has at least {min_foreground:.0%} labelled (non-zero) pixels.")
    return images[keep], labels[keep]
