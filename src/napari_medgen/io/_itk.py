"""NRRD, MetaImage, single DICOM files and DICOM series through SimpleITK (LPS, like us).

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
from ._common import RawImage, check_header_shape, is_dicom_file
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
    _check_info(path, reader.GetSize(), reader.GetPixelID(), reader.GetNumberOfComponents())
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
        raw.metadata.update(_dicom_tags(lambda key: reader.GetMetaData(key) if reader.HasMetaDataKey(key) else None))
    return raw


def read_dicom_series(folder: Path) -> RawImage:
    """Read the largest DICOM series in ``folder`` (GDCM sorts the slices by position)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    if not files:
        raise ReadError(folder, "the folder is empty")
    warnings_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # "No Series were found" goes into our message
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_on)
    if not ids:
        n_dicom = sum(is_dicom_file(p) for p in files[:200])
        what = "none of them is DICOM" if n_dicom == 0 else "no complete DICOM image series was found among them"
        raise ReadError(folder, f"the folder holds {len(files)} file(s) but {what}")
    series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in ids}
    sid = max(series, key=lambda s: len(series[s]))
    names = series[sid]
    notes = []
    if len(series) > 1:
        others = ", ".join(f"{s} ({len(series[s])} files)" for s in series if s != sid)
        notes.append(f"The folder holds {len(series)} DICOM series; the largest ({len(names)} files) was opened. "
                     f"Others: {others}.")
    info = sitk.ImageFileReader()
    info.SetFileName(names[0])
    try:
        info.ReadImageInformation()
    except RuntimeError as exc:
        raise ReadError(names[0], f"this DICOM file could not be read ({itk_reason(exc)})") from None
    size = list(info.GetSize())
    _check_info(folder, tuple(size[:2]) + (len(names) * (size[2] if len(size) > 2 else 1),),
                info.GetPixelID(), info.GetNumberOfComponents())
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise ReadError(folder, f"the DICOM series could not be read ({itk_reason(exc)})") from None
    raw = image_to_raw(img)
    raw.is_label = False  # DICOM image series are images; as_label=True overrides
    note = _uneven_slices_note(reader, len(names), raw.direction[:, 2], raw.spacing[2])
    raw.notes.extend(notes + ([note] if note else []))
    raw.metadata.update({"format": "DICOM series", "n_files": len(names)})
    raw.metadata.update(_dicom_tags(lambda key: reader.GetMetaData(0, key) if reader.HasMetaDataKey(0, key) else None))
    return raw


def _uneven_slices_note(reader: sitk.ImageSeriesReader, n: int, normal: np.ndarray, shown: float) -> str | None:
    """A note when the slices' ImagePositionPatient are not evenly spaced along ``normal``."""
    key = "0020|0032"
    if n < 3 or not all(reader.HasMetaDataKey(i, key) for i in range(n)):
        return None
    try:
        pos = np.array([[float(v) for v in reader.GetMetaData(i, key).split("\\")] for i in range(n)])
    except ValueError:
        return None
    gaps = np.abs(np.diff(pos @ normal))
    if gaps.max() - gaps.min() <= 0.01 * gaps.mean():
        return None
    return (f"The DICOM slices are not evenly spaced (gaps from {gaps.min():.3g} to {gaps.max():.3g} mm; missing "
            f"slices?). They are shown {shown:.3g} mm apart, so positions along the slice axis are approximate.")


def _dicom_tags(get) -> dict[str, str]:
    return {name: str(v).strip() for name, tag in _DICOM_TAGS.items() if (v := get(tag))}


def _check_info(path: Path, size: tuple[int, ...], pixel_id: int, components: int) -> None:
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
