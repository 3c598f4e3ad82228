"""``medgen info FILE`` (what a volume holds) and ``medgen convert IN OUT`` (format conversion).

Both read through :func:`napari_medgen.io.readers.read_volume`, so they show exactly what the
napari reader would open: LPS geometry in (x, y, z) mm, the label/image decision and its notes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import options

if TYPE_CHECKING:
    from ..io.volume import Volume

_MAX_LISTED_LABELS = 20
WRITE_SUFFIXES = options.names("napari_medgen.io.writers", "WRITE_SUFFIXES")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("info", help="print shape, dtype, geometry and value range of a volume",
                              description="Describe a NIfTI/NRRD/MetaImage/DICOM file or DICOM series folder.")
    p.add_argument("path", type=Path, help="file or DICOM series folder")
    _kind_options(p)
    p.set_defaults(func=run_info)

    c = subparsers.add_parser("convert", help="convert a volume to another format, geometry kept",
                              description=f"Read IN and write OUT ({', '.join(WRITE_SUFFIXES)}) atomically.")
    c.add_argument("src", type=Path, metavar="IN", help="file or DICOM series folder")
    options.output(c, "file", "output file", flag="dst", metavar="OUT")
    _kind_options(c)
    c.set_defaults(func=run_convert)


def _kind_options(p: argparse.ArgumentParser) -> None:
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--as-label", dest="as_label", action="store_true", default=None,
                      help="treat as a label map (values rounded to integers)")
    kind.add_argument("--as-image", dest="as_label", action="store_false", help="treat as an image")


def describe(vol: Volume, decided: bool) -> list[str]:
    """Lines of text describing ``vol``; decided: the label/image kind was forced by the user."""
    import numpy as np

    d = vol.data
    kind = "label map" if vol.is_label else "image"
    lines = [
        f"source:    {vol.metadata.get('source', '?')} ({vol.metadata.get('format', '?')})",
        f"shape:     {d.shape} ({'t, z, y, x' if vol.is_time_series else 'z, y, x'})",
        f"dtype:     {d.dtype}",
        f"spacing:   {_fmt(vol.spacing)} mm (x, y, z)",
        f"origin:    {_fmt(vol.origin)} mm LPS (x, y, z)",
        "direction: " + "; ".join(_fmt(row) for row in vol.direction) + (" (axis-aligned)" if vol.is_axis_aligned()
                                                                        else " (oblique)"),
        f"kind:      {kind} ({'as asked' if decided else 'decided from the file: header, dtype, name, values'})",
        f"range:     {d.min()} .. {d.max()}" if d.size else "range:     (empty)",
    ]
    if vol.is_time_series:
        lines.append(f"time:      {d.shape[0]} frames, spacing {vol.metadata.get('time_spacing', 1.0)}")
    dicom = [f"{k.replace('_', ' ')} {vol.metadata[k]}" for k in ("modality", "series_description", "n_files",
                                                                   "series_uid") if k in vol.metadata]
    if dicom:
        lines.append("dicom:     " + ", ".join(dicom))
    if vol.is_label:
        values, counts = np.unique(d, return_counts=True)
        listed = ", ".join(f"{v}: {c}" for v, c in list(zip(values, counts))[:_MAX_LISTED_LABELS])
        more = f" (+{len(values) - _MAX_LISTED_LABELS} more)" if len(values) > _MAX_LISTED_LABELS else ""
        lines.append(f"labels:    {len(values)} values (value: voxels) {listed}{more}")
    lines += [f"note:      {n}" for n in vol.metadata.get("notes", [])]
    return lines


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def run_info(args: argparse.Namespace) -> int:
    from ..io.readers import read_volume

    vol = read_volume(args.path, as_label=args.as_label)
    print("\n".join(describe(vol, args.as_label is not None)))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..io.readers import read_volume
    from ..io.writers import write_volume

    vol = read_volume(args.src, as_label=args.as_label)
    for note in vol.metadata.get("notes", []):
        print(f"note: {note}")
    out = write_volume(vol, args.dst)
    print(f"wrote {out} ({'label map' if vol.is_label else 'image'}, {vol.data.dtype}, shape {vol.data.shape})")
    return 0
