"""npe2 reader and writers: files <-> napari layers, through io.readers/io.writers and io.layers.

The reader claims .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, DICOM files and folders holding DICOM
files, and returns None for anything else so other readers can try. Read failures raise
ReadError (napari shows its plain message and keeps running); notes (oblique volume resampled,
NaN voxels replaced, several DICOM series...) are shown as napari notifications.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WriteError
from .io._common import is_dicom_file
from .io.layers import layer_to_volume, volume_to_layer
from .io.readers import read_volume, supported_file
from .io.volume import Volume
from .io.writers import write_volume

LayerData = tuple[Any, dict[str, Any], str]
_DICOM_SCAN_LIMIT = 200


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_layers` when every path is a file or folder this plugin opens, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if paths and all(_handles(Path(p)) for p in paths):
        return read_layers
    return None


def _handles(path: Path) -> bool:
    if path.is_dir():
        return any(p.is_file() and is_dicom_file(p) for p in islice(path.iterdir(), _DICOM_SCAN_LIMIT))
    return supported_file(path)


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each path into one LayerData tuple (Image or Labels, with napari world = LPS mm)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers = []
    for p in paths:
        vol = read_volume(p)
        data, kwargs, layer_type = volume_to_layer(vol, name=_layer_name(Path(p)))
        _notify(kwargs["metadata"].get("notes", []))
        layers.append((data, kwargs, layer_type))
    return layers


def _layer_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".ima"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _notify(notes: list[str]) -> None:
    if notes:
        from napari.utils.notifications import show_info

        for note in notes:
            show_info(note)


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for Image layers: geometry from the layer's scale/translate/rotate/shear/affine."""
    if meta.get("rgb") or meta.get("multiscale"):
        raise WriteError(path, "RGB and multiscale layers cannot be saved as medical volumes")
    return [str(write_volume(_layer_volume(data, meta, is_label=False), path))]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for Labels layers: the integer dtype is kept."""
    if meta.get("multiscale"):
        raise WriteError(path, "multiscale layers cannot be saved as medical volumes")
    return [str(write_volume(_layer_volume(data, meta, is_label=True), path))]


def _layer_volume(data: Any, meta: dict[str, Any], is_label: bool) -> Volume:
    """The layer as a Volume; a rotate/shear set in napari is folded into the affine first."""
    data = np.asarray(data)
    scale, translate, affine = meta.get("scale"), meta.get("translate"), meta.get("affine")
    eye = np.eye(data.ndim)
    rotate, shear = meta.get("rotate"), meta.get("shear")
    if (rotate is not None and not np.allclose(rotate, eye)) or (shear is not None and np.any(np.asarray(shear))):
        from napari.utils.transforms import Affine

        physical = Affine(scale=scale, translate=translate, rotate=rotate, shear=shear, ndim=data.ndim)
        outer = np.eye(data.ndim + 1) if affine is None else np.asarray(affine)
        scale, translate, affine = None, None, outer @ physical.affine_matrix
    return layer_to_volume(data, scale, translate, affine, meta.get("metadata"), is_label=is_label)
