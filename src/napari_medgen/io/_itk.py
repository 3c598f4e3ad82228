"""NRRD, MetaImage and single DICOM files through SimpleITK (LPS, like us); series: _dicom.py.

ITK converts NRRD files in RAS space to LPS itself and applies DICOM rescale slope/intercept
(GDCM). Sizes are checked from ``ReadImageInformation`` before any voxel is read; ITK's C++
messages are reduced to their plain reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ReadError
from ._common import RawImage, check_header_shape
from ._labels import LABEL_NAMES_KEY, label_names_from_json, label_names_to_json
from .volume import Volume

_FORMATS = {".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage"}
LABEL_KEY = "medgen_label_map"  # "true"/"false" in NRRD/MHA headers written by this project
_DICOM_TAGS = {"modality": "0008|0060", "series_description": "0008|103e", "series_uid": "0020|000e"}
_GENERIC = re.compile(r"^(trouble|(\w+: )?Error reading|finished reading header)", re.IGNORECASE)


def itk_reason(exc: Exception) -> str:
    """The human part of an ITK exception message, without file:line and object addresses."""
    keep = []
    for line in str(exc).splitlines():
        line = re.sub(r"^\s*\[nrrd\]\s*\w*:\s*", "", line).strip()
        line = re.sub(r"^(itk::|sitk::)?(ITK )?ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", line, flags=re.IGNORECASE)
        line = re.sub(r"^Unable to determine ImageIO reader.*", "the content is not recognised as an image", line)
        if (not line or "Exception thrown in SimpleITK" in line or re.search(r"\.(cxx|h|hxx):\d+", line)
                or _GENERIC.match(line) or line in keep):
            continue
        keep.append(line)
    text = "; ".join(keep) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def format_name(path: Path) -> str:
    return _FORMATS.get(path.suffix.lower(), "DICOM")


def read_itk_file(path: Path) -> RawImage:
    """Read one NRRD/NHDR/MHA/MHD/DICOM file; data in numpy order (..., z, y, x)."""
    fmt = format_name(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ReadError(path, f"this is not a readable {fmt} file ({itk_reason(exc)})") from None
    check_info(path, reader.GetSize(), reader.GetPixelID(), reader.GetNumberOfComponents())
    if fmt == "MetaImage":
        _check_metaimage_length(path)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        # MetaIO reports damaged compressed data as a missing file: its reason would mislead
        reason = "" if fmt == "MetaImage" else f" ({itk_reason(exc)})"
        raise ReadError(path, f"the {fmt} voxel data are damaged or incomplete{reason}") from None
    raw = image_to_raw(img)
    raw.metadata["format"] = fmt
    if reader.HasMetaDataKey(LABEL_KEY):
        raw.is_label = reader.GetMetaData(LABEL_KEY).strip().lower() == "true"
    if reader.HasMetaDataKey(LABEL_NAMES_KEY):
        with contextlib.suppress(ValueError):
            if names := label_names_from_json(json.loads(reader.GetMetaData(LABEL_NAMES_KEY))):
                raw.metadata["label_names"] = names
    if fmt == "DICOM":
        raw.is_label = False  # DICOM images are images; as_label=True overrides
        raw.metadata.update(dicom_tags(lambda key: reader.GetMetaData(key) if reader.HasMetaDataKey(key) else None))
    return raw


def dicom_tags(get) -> dict[str, str]:
    """Modality, series description and UID through ``get(tag) -> str | None``."""
    return {name: str(v).strip() for name, tag in _DICOM_TAGS.items() if (v := get(tag))}


def check_info(path: Path, size: tuple[int, ...], pixel_id: int, components: int) -> None:
    """Refuse vector voxels, zero-sized or too large images, from ITK's header information."""
    if components > 1:
        raise ReadError(path, f"the image has {components} values per voxel (colour or vector data); "
                              "only scalar volumes are supported")
    itemsize = sitk.GetArrayViewFromImage(sitk.Image([1] * 2, pixel_id)).itemsize
    check_header_shape(path, tuple(size)[::-1], itemsize)


def _check_metaimage_length(path: Path) -> None:
    """Refuse an uncompressed MetaImage whose data file is shorter than its header says."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    fields, header_len = {}, None
    for m in re.finditer(rb"^[ \t]*(\w+)[ \t]*=[ \t]*([^\r\n]*)\r?\n", head, flags=re.MULTILINE):
        fields[m.group(1).decode("latin-1")] = m.group(2).decode("latin-1").strip()
        if m.group(1) == b"ElementDataFile":
            header_len = m.end()
            break
    if header_len is None or fields.get("CompressedData", "False").lower() == "true":
        return
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        itemsize = np.dtype(_MET_TYPES[fields["ElementType"]]).itemsize
    except (KeyError, ValueError):
        return  # ITK already accepted the header; let it decide
    data_file = fields["ElementDataFile"]
    if data_file == "LOCAL":
        available = path.stat().st_size - header_len
    else:
        target = path.parent / data_file
        if not target.is_file():
            raise ReadError(path, f"the data file '{data_file}' named in its header is missing")
        available = target.stat().st_size
    needed = math.prod(dims) * channels * itemsize
    if available < needed:
        raise ReadError(path, f"the voxel data are incomplete: the header needs {needed} bytes but only "
                              f"{available} are there (the file is truncated)")


_MET_TYPES = {"MET_UCHAR": np.uint8, "MET_CHAR": np.int8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16,
              "MET_UINT": np.uint32, "MET_INT": np.int32, "MET_ULONG_LONG": np.uint64, "MET_LONG_LONG": np.int64,
              "MET_ULONG": np.uint64, "MET_LONG": np.int64, "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64}


def image_to_raw(img: sitk.Image) -> RawImage:
    """A SimpleITK image (2D to 5D) as a RawImage; the spatial part is its first three axes."""
    dim = img.GetDimension()
    data = sitk.GetArrayFromImage(img)
    n = min(dim, 3)
    spacing = list(img.GetSpacing()[:n]) + [1.0] * (3 - n)
    origin = list(img.GetOrigin()[:n]) + [0.0] * (3 - n)
    direction = np.eye(3)
    direction[:n, :n] = np.asarray(img.GetDirection()).reshape(dim, dim)[:n, :n]
    time_spacing = float(img.GetSpacing()[3]) if dim >= 4 else None
    return RawImage(data, tuple(spacing), tuple(origin), direction, time_spacing=time_spacing)


def write_itk(vol: Volume, path: Path) -> None:
    """Write ``vol`` with SimpleITK (format from the suffix: .nrrd, .mha), compressed; 4D as 4D.

    The header key ``medgen_label_map`` (true/false) records the label decision for reopening,
    ``medgen_label_names`` the ``metadata["label_names"]`` as JSON.
    """
    img = sitk.GetImageFromArray(np.asarray(vol.data), isVector=False)
    if vol.is_time_series:
        direction = np.eye(4)
        direction[:3, :3] = vol.direction
        img.SetSpacing(tuple(vol.spacing) + (float(vol.metadata.get("time_spacing", 1.0)),))
        img.SetOrigin(tuple(vol.origin) + (0.0,))
        img.SetDirection(direction.ravel().tolist())
    else:
        img.SetSpacing(vol.spacing)
        img.SetOrigin(vol.origin)
        img.SetDirection(vol.direction.ravel().tolist())
    img.SetMetaData(LABEL_KEY, "true" if vol.is_label else "false")
    if vol.metadata.get("label_names"):
        img.SetMetaData(LABEL_NAMES_KEY, json.dumps(label_names_to_json(vol.metadata["label_names"])))
    sitk.WriteImage(img, str(path), useCompression=True)
