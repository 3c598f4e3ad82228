"""Write a :class:`Volume` to .nii.gz, .nii, .nrrd or .mha, atomically, geometry and dtype kept.

The file appears under its final name only when complete (atomic.py: temporary file with the
same extension, fsync, rename). Label maps keep their integer dtype (uint8, uint16, int16,
int32, ...); NIfTI files get intent "label", sform and qform (RAS), NRRD/MHA are LPS like the
Volume. 4D volumes are written as 4D in every format, with ``metadata["time_spacing"]``.
NIfTI-1 stores the geometry in float32 (about 1e-7 relative precision); NRRD/MHA in float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write_with
from ..errors import WriteError
from ._nifti import write_nifti
from .volume import Volume

WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def write_volume(vol: Volume, path: str | Path) -> Path:
    """Write ``vol`` to ``path`` (format from the suffix) atomically; returns the path."""
    path = Path(path)
    name = path.name.lower()
    suffix = next((s for s in WRITE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise WriteError(path, f"unsupported file type; write one of {', '.join(WRITE_SUFFIXES)}")
    vol = _storable(path, vol)
    if suffix.startswith(".nii"):
        write = write_nifti
    else:
        from ._itk import write_itk  # SimpleITK loads only when needed

        write = write_itk
    try:
        atomic_write_with(path, lambda tmp: write(vol, tmp), suffix=path.name[-len(suffix):])
    except (OSError, RuntimeError, ValueError) as exc:
        raise WriteError(path, str(exc).splitlines()[-1] if str(exc) else type(exc).__name__) from None
    return path


def _storable(path: Path, vol: Volume) -> Volume:
    """Map dtypes the formats lack: bool -> uint8, float16 -> float32; refuse complex/object."""
    dt = vol.data.dtype
    if dt == bool:
        return vol.with_data(vol.data.astype(np.uint8))
    if dt == np.float16:
        return vol.with_data(vol.data.astype(np.float32))
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise WriteError(path, f"voxel type {dt} cannot be stored; use integers or floats")
    return vol
