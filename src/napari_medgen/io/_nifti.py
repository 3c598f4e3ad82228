"""NIfTI-1/2 (.nii, .nii.gz) through nibabel: RAS on disk, LPS in memory.

Geometry: nibabel's best affine (sform if its code is set, else qform, else pixdim), converted
from RAS to LPS by negating its first two rows. Spatial units metres/microns become mm. A
compressed file is decompressed in full (so a truncated or corrupted stream is always caught by
gzip's length and CRC checks) before nibabel parses it; nothing is ever padded with zeros.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import ReadError
from ._common import RawImage, check_header_shape, describe_content, memory_limit
from ._labels import LABEL_NAMES_KEY, label_names_from_json, label_names_to_json
from .volume import Volume

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}
_LABEL_INTENTS = ("label", "neuroname")
_CHUNK = 16 * 1024 * 1024
_COMMENT_CODE = 6  # NIfTI extension code "comment"


def read_nifti(path: Path) -> RawImage:
    """Read a .nii or .nii.gz file; data in numpy order (..., z, y, x)."""
    compressed = path.name.lower().endswith(".gz")
    if compressed and describe_content(path) != "a gzip-compressed file":
        what = describe_content(path) or "not gzip data"
        raise ReadError(path, f"the name ends in .gz but the file is not gzip-compressed (it looks like {what})")
    img = _load_header(path)
    hdr = img.header
    shape = tuple(int(s) for s in hdr.get_data_shape())
    slope, inter = hdr.get_slope_inter()
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    itemsize = max(hdr.get_data_dtype().itemsize, 8 if scaled else 0)
    check_header_shape(path, shape, itemsize)
    offset = int(img.dataobj.offset)
    expected = offset + math.prod(shape) * hdr.get_data_dtype().itemsize
    if expected > memory_limit():
        raise ReadError(path, f"the header puts the voxel data {offset} bytes into the file (vox_offset), beyond "
                              "what this reader allows; the header is probably damaged")
    if compressed:
        img = type(img).from_bytes(_decompress(path, expected))
    else:
        size = os.path.getsize(path)
        if size < expected:
            raise ReadError(path, f"the file is truncated: its header needs {expected} bytes but the file has only {size}")
        img = nib.load(str(path), mmap=False)
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, ValueError, EOFError) as exc:
        raise ReadError(path, f"the voxel data could not be read ({exc})") from None
    spacing, origin, direction, notes = _geometry(img)
    zooms = img.header.get_zooms()
    time_unit = _units(img.header)[1]
    time_spacing = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    intent = _header_value(img.header.get_intent, ("none",))[0]
    meta: dict = {"format": "NIfTI", **({"time_unit": time_unit} if time_spacing else {})}
    if names := _label_names(img):
        meta["label_names"] = names
    return RawImage(np.ascontiguousarray(data.T), spacing, origin, direction, time_spacing=time_spacing,
                    label_hint=intent in _LABEL_INTENTS or bool(names), notes=notes, metadata=meta)


def _label_names(img: nib.Nifti1Image) -> dict[int, str] | None:
    """label_names from a comment extension holding ``{"medgen_label_names": {...}}`` (see write_nifti)."""
    for ext in img.header.extensions:
        if ext.get_code() != _COMMENT_CODE:
            continue
        try:
            obj = json.loads(ext.get_content())
        except (ValueError, TypeError):
            continue
        if isinstance(obj, dict) and (names := label_names_from_json(obj.get(LABEL_NAMES_KEY))):
            return names
    return None


def _load_header(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    try:
        img = nib.load(str(path))
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise ReadError(path, "the compressed file is damaged or truncated (its header cannot be decompressed)") from None
    except Exception as exc:  # nibabel raises many types for non-NIfTI content
        what = describe_content(path) if not path.name.lower().endswith(".gz") else None
        reason = f"it looks like {what}" if what else "no valid NIfTI header was found; the file is damaged or of another type"
        raise ReadError(path, f"this is not a NIfTI file ({reason})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ReadError(path, f"this is not a NIfTI file (it reads as {type(img).__name__})")
    return img


def _decompress(path: Path, expected: int) -> bytearray:
    """The first ``expected`` decompressed bytes (header + data). The stream is read to its end so
    that gzip checks its length and CRC; a short, damaged or oversized stream is refused."""
    buf = bytearray(expected)
    view = memoryview(buf)
    got = extra = 0
    try:
        with gzip.open(path, "rb") as f:
            while got < expected and (n := f.readinto(view[got:got + _CHUNK])):
                got += n
            while chunk := f.read(_CHUNK):
                extra += len(chunk)
                if extra > 64 * _CHUNK:
                    raise ReadError(path, "the compressed data are much larger than the header says; the file is damaged")
    except EOFError:
        raise ReadError(path, "the compressed file is truncated (it ends before its data do); it was not opened") from None
    except (zlib.error, gzip.BadGzipFile, OSError) as exc:
        what = "its checksum does not match" if "CRC" in str(exc) else "it cannot be decompressed"
        raise ReadError(path, f"the compressed data are damaged ({what}); it was not opened") from None
    if got < expected:
        raise ReadError(path, f"the file is truncated: its header needs {expected} bytes of data but it holds only {got}")
    return buf


def _geometry(img: nib.Nifti1Image) -> tuple[tuple, tuple, np.ndarray, list[str]]:
    """(spacing, origin, direction, notes) in LPS mm from the image's best affine."""
    hdr = img.header
    notes: list[str] = []
    candidates = []
    if int(hdr["sform_code"]) > 0:
        candidates.append(("sform", hdr.get_sform()))
    if int(hdr["qform_code"]) > 0:
        candidates.append(("qform", hdr.get_qform()))
    candidates.append(("pixdim", None))
    for source, affine in candidates:
        if affine is not None and _usable(affine[:3, :3]):
            break
        if affine is not None:
            notes.append(f"The {source} matrix of the NIfTI header is singular or not finite; it was ignored.")
    if affine is None:
        zooms = [float(z) if np.isfinite(z) and z > 0 else 1.0 for z in hdr.get_zooms()[:3]]
        zooms += [1.0] * (3 - len(zooms))
        affine = np.diag(zooms + [1.0])
        if candidates[0][0] != "pixdim":
            notes.append(f"No usable orientation: spacing {tuple(zooms)} mm was taken from the header's pixdim, "
                         "with identity (RAS) orientation and origin 0.")
    unit = _UNIT_TO_MM.get(_units(hdr)[0], 1.0)
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    lin = lps[:3, :3] * unit
    spacing = np.linalg.norm(lin, axis=0)
    direction = lin / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        u, _, vt = np.linalg.svd(direction)
        direction = u @ vt
        notes.append("The NIfTI affine is sheared; the nearest rotation was used (shear is not supported).")
    return tuple(spacing), tuple(lps[:3, 3] * unit), direction, notes


def _header_value(get, default):
    """``get()``, or ``default`` when the header holds a code nibabel does not know."""
    try:
        return get()
    except (KeyError, ValueError, nib.spatialimages.HeaderDataError):
        return default


def _units(hdr) -> tuple[str, str]:
    """(space unit, time unit) names; "unknown" for codes outside the standard."""
    return _header_value(hdr.get_xyzt_units, ("unknown", "unknown"))


def _usable(lin: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(lin)) and abs(np.linalg.det(lin)) > 1e-12)


def write_nifti(vol: Volume, path: Path) -> None:
    """Write ``vol`` to ``path`` (.nii or .nii.gz): sform and qform (code scanner) in RAS mm."""
    data = np.asarray(vol.data).T  # (x, y, z[, t])
    affine = RAS_TO_LPS @ vol.affine()
    img = nib.Nifti1Image(data, affine, dtype=data.dtype)
    img.set_sform(affine, code="scanner")
    img.set_qform(affine, code="scanner")
    img.header.set_xyzt_units("mm", "sec")
    if vol.is_time_series:
        img.header.set_zooms(tuple(vol.spacing) + (float(vol.metadata.get("time_spacing", 1.0)),))
    if vol.is_label:
        img.header.set_intent("label")
    if vol.metadata.get("label_names"):
        text = json.dumps({LABEL_NAMES_KEY: label_names_to_json(vol.metadata["label_names"])})
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", text.encode()))
    nib.save(img, str(path))
