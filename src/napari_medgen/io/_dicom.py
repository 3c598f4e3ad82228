"""DICOM series folders through SimpleITK/GDCM, including series with several time points.

The largest series in the folder is read. Its slices are ordered by their ImagePositionPatient
along the slice normal; when every position occurs k > 1 times (cine, perfusion, multi-phase),
the series opens as 4D (t, z, y, x), the time points ordered by TemporalPositionIdentifier,
TriggerTime, then InstanceNumber. Rescale slope/intercept are applied by GDCM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ReadError
from ._common import RawImage, is_dicom_file
from ._itk import check_info, dicom_tags, image_to_raw, itk_reason

_POSITION_TOL_MM = 1e-3


@dataclass
class _Slice:
    path: str
    position: np.ndarray  # ImagePositionPatient, LPS mm
    order: tuple[float, float, float]  # temporal position, trigger time (ms), instance number
    trigger_ms: float | None


def read_dicom_series(folder: Path) -> RawImage:
    """Read the largest DICOM series in ``folder``; data (z, y, x) or (t, z, y, x)."""
    names, notes = _largest_series(folder)
    slices = [_read_slice_header(folder, n) for n in names]
    first = sitk.ImageFileReader()
    first.SetFileName(names[0])
    first.ReadImageInformation()
    size = first.GetSize()
    check_info(folder, tuple(size[:2]) + (len(names) * (size[2] if len(size) > 2 else 1),),
               first.GetPixelID(), first.GetNumberOfComponents())
    normal = np.asarray(first.GetDirection()).reshape(len(size), len(size))[:3, 2] if len(size) == 3 else None
    if normal is None or not np.all(np.isfinite(normal)):
        normal = np.array([0.0, 0.0, 1.0])
    groups = _group_by_position(folder, slices, normal)
    n_times = len(groups[0])
    frames = [_read_volume(folder, [g[t].path for g in groups]) for t in range(n_times)]
    raw = image_to_raw(frames[0])
    if n_times > 1:
        raw.data = np.stack([sitk.GetArrayFromImage(f) for f in frames])
        raw.time_spacing, time_note = _time_spacing(groups[0])
        notes += [f"The DICOM series holds {n_times} time points at each of {len(groups)} slice positions: "
                  "it opens as a 4D (t, z, y, x) volume."] + ([time_note] if time_note else [])
    gap_note = _uneven_note([g[0].position for g in groups], normal, raw.spacing[2])
    raw.notes.extend(notes + ([gap_note] if gap_note else []))
    raw.is_label = False  # DICOM image series are images; as_label=True overrides
    raw.metadata.update({"format": "DICOM series", "n_files": len(names)})
    raw.metadata.update(dicom_tags(lambda key: first.GetMetaData(key) if first.HasMetaDataKey(key) else None))
    if n_times > 1:
        raw.metadata["time_unit"] = "ms" if groups[0][0].trigger_ms is not None else "frame"
    return raw


def _largest_series(folder: Path) -> tuple[list[str], list[str]]:
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
    series = {sid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)) for sid in ids}
    sid = max(series, key=lambda s: len(series[s]))
    notes = []
    if len(series) > 1:
        others = ", ".join(f"{s} ({len(series[s])} files)" for s in series if s != sid)
        notes.append(f"The folder holds {len(series)} DICOM series; the largest ({len(series[sid])} files) was opened. "
                     f"Others: {others}.")
    return series[sid], notes


def _read_slice_header(folder: Path, name: str) -> _Slice:
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ReadError(name, f"this DICOM file of the series in '{folder}' could not be read ({itk_reason(exc)})") from None

    def number(tag: str) -> float | None:
        try:
            return float(reader.GetMetaData(tag)) if reader.HasMetaDataKey(tag) else None
        except ValueError:
            return None

    trigger = number("0018|1060")
    order = tuple(v if v is not None else 0.0 for v in (number("0020|0100"), trigger, number("0020|0013")))
    return _Slice(name, np.asarray(reader.GetOrigin()[:3], dtype=float), order, trigger)


def _group_by_position(folder: Path, slices: list[_Slice], normal: np.ndarray) -> list[list[_Slice]]:
    """Slices grouped by position along ``normal`` (ascending), each group in time order."""
    depth = np.array([s.position @ normal for s in slices])
    order = np.argsort(depth, kind="stable")
    groups: list[list[_Slice]] = []
    last = None
    for i in order:
        if last is None or depth[i] - last > _POSITION_TOL_MM:
            groups.append([])
            last = depth[i]
        groups[-1].append(slices[i])
    counts = sorted({len(g) for g in groups})
    if len(counts) > 1:
        raise ReadError(folder, f"the slice positions occur unequally often ({counts[0]} to {counts[-1]} times): "
                                "the series cannot be split into time points (missing or extra files?)")
    return [sorted(g, key=lambda s: s.order) for g in groups]


def _read_volume(folder: Path, names: list[str]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    warnings_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # uneven spacing is reported in our own note
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise ReadError(folder, f"the DICOM series could not be read ({itk_reason(exc)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_on)


def _time_spacing(group: list[_Slice]) -> tuple[float, str | None]:
    """Median TriggerTime step (ms) of the time points at one position, or 1 frame with a note."""
    times = [s.trigger_ms for s in group]
    if all(t is not None for t in times):
        steps = np.diff(times)
        if np.all(steps > 0):
            return float(np.median(steps)), None
    return 1.0, "The time points carry no usable TriggerTime: the time axis counts frames (spacing 1)."


def _uneven_note(positions: list[np.ndarray], normal: np.ndarray, shown: float) -> str | None:
    """A note when the slice positions are not evenly spaced along ``normal``."""
    if len(positions) < 3:
        return None
    gaps = np.abs(np.diff([p @ normal for p in positions]))
    if gaps.max() - gaps.min() <= 0.01 * gaps.mean():
        return None
    return (f"The DICOM slices are not evenly spaced (gaps from {gaps.min():.3g} to {gaps.max():.3g} mm; missing "
            f"slices?). They are shown {shown:.3g} mm apart, so positions along the slice axis are approximate.")
