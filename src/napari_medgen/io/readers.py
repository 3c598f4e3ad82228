"""Read a medical volume file or DICOM folder into a :class:`Volume` (LPS mm, see volume.py).

Formats: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a single DICOM
file (.dcm, .ima or any file with the DICOM preamble) and a DICOM series folder. Every failure
is a :class:`ReadError` that names the file and says what is wrong. Usable but odd data open
with a message in ``metadata["notes"]`` (NaN/Inf voxels replaced by 0, singular affine, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ReadError
from ._common import RawImage, describe_content, is_dicom_file
from ._labels import guess_is_label, name_hints_label, to_label_array
from ._nifti import read_nifti
from .volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".ima")


def supported_file(path: str | Path) -> bool:
    """True when ``path`` (a file) has a suffix this module reads, or is a DICOM file."""
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES + ITK_SUFFIXES + DICOM_SUFFIXES) or is_dicom_file(path)


def read_volume(path: str | Path, as_label: bool | None = None) -> Volume:
    """Read a file or DICOM series folder. ``as_label``: force label map (True) / image (False).

    Returns a 3D (z, y, x) or 4D (t, z, y, x) Volume; metadata holds ``source``, ``format``,
    ``notes`` and for series ``time_spacing``.
    """
    path = Path(path)
    if path.is_dir():
        from ._dicom import read_dicom_series  # SimpleITK loads only when needed (~0.1 s, holds the GIL)

        raw = read_dicom_series(path)
    elif not path.exists():
        raise ReadError(path, "no such file or folder")
    elif path.stat().st_size == 0:
        raise ReadError(path, "the file is empty (0 bytes)")
    else:
        raw = _read_file(path)
    return _to_volume(path, raw, as_label)


def _read_file(path: Path) -> RawImage:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti(path)
    if name.endswith(ITK_SUFFIXES) or is_dicom_file(path):
        from ._itk import read_itk_file

        return read_itk_file(path)
    what = describe_content(path)
    raise ReadError(path, f"unsupported file type{f' (it looks like {what})' if what else ''}; this reader opens "
                          ".nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, DICOM files and DICOM series folders")


def _to_volume(path: Path, raw: RawImage, as_label: bool | None) -> Volume:
    """Clean up dimensions, non-finite voxels and the label decision."""
    data = _spatial_dims(path, raw.data)
    notes = list(raw.notes)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if np.iscomplexobj(data):
        raise ReadError(path, "the image holds complex numbers; only real-valued volumes are supported")
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad:
            data = np.where(bad, 0, data).astype(data.dtype)
            notes.append(f"{n_bad} NaN/Inf voxels replaced by 0.")
    is_label = next((d for d in (as_label, raw.is_label) if d is not None), None)
    if is_label is None:
        is_label = guess_is_label(data, raw.label_hint or name_hints_label(path))
    if is_label:
        data, note = to_label_array(data)
        if note:
            notes.append(note)
    meta = {**raw.metadata, "source": str(path)}
    if data.ndim == 4:
        meta["time_spacing"] = raw.time_spacing if raw.time_spacing else 1.0
    if notes:
        meta["notes"] = notes
    try:
        return Volume(data, raw.spacing, raw.origin, raw.direction, is_label=bool(is_label), metadata=meta)
    except ValueError as exc:
        raise ReadError(path, f"the geometry in the header is unusable ({exc})") from None


def _spatial_dims(path: Path, data: np.ndarray) -> np.ndarray:
    """(..., z, y, x) -> (z, y, x) or (t, z, y, x): 2D gets z = 1, extra size-1 axes are dropped."""
    if data.ndim < 2:
        raise ReadError(path, f"the image has {data.ndim} dimension(s); at least 2 are needed")
    if data.ndim == 2:
        return data[None]
    if data.ndim > 3:
        lead = [s for s in data.shape[:-3] if s != 1]
        if len(lead) > 1:
            raise ReadError(path, f"{data.ndim}D data (size {data.shape[::-1]} in x, y, z, ... order) are not "
                                  "supported: only 3D volumes and 4D time series open (extra axes must have size 1)")
        data = data.reshape(tuple(lead) + data.shape[-3:])
    return data
