"""Pieces shared by the format readers: the raw result of a reader and the header checks.

A format reader returns :class:`RawImage` (array in numpy order, geometry in (x, y, z) LPS mm);
:func:`napari_medgen.io.readers.read_volume` turns it into a :class:`Volume`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReadError

#: Largest volume (bytes, after decoding) a reader accepts; checked from the header alone.
MAX_VOLUME_BYTES = 8 * 1024**3


@dataclass
class RawImage:
    """A freshly read image before dimension clean-up and label detection.

    data: numpy order, i.e. (..., z, y, x) for any number of dimensions >= 2. spacing/origin:
    (x, y, z) mm LPS; direction: 3x3 (columns = index axes i, j, k). label_hint: the header says
    "label map" (still checked against the values). is_label: a decision recorded in the header
    by this project's writer (None: guess). notes: messages for the user.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    time_spacing: float | None = None
    label_hint: bool = False
    is_label: bool | None = None
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def memory_limit() -> int:
    """Bytes a single volume may take: :data:`MAX_VOLUME_BYTES` or half the machine's RAM."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return MAX_VOLUME_BYTES
    return min(MAX_VOLUME_BYTES, ram // 2)


def check_header_shape(path: str | Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse, before any voxel is read, a zero-sized dimension or a volume too big for memory."""
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ReadError(path, f"the header gives a negative image size {shape}; the file is damaged")
    if any(s == 0 for s in shape):
        raise ReadError(path, f"the image has a zero-sized dimension (size {shape}): it holds no voxels")
    nbytes = math.prod(shape) * int(itemsize)
    limit = memory_limit()
    if nbytes > limit:
        raise ReadError(path, f"the header claims an image of size {shape} ({nbytes / 1024**3:.1f} GiB), more than "
                              f"the {limit / 1024**3:.1f} GiB this reader allows; the header is probably damaged")


def describe_content(path: str | Path) -> str | None:
    """Guess what a file really is from its first bytes (for error messages), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return None
    magics = {
        b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
        b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive", b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image", b"\x1f\x8b": "a gzip-compressed file", b"NRRD": "a NRRD file",
    }
    for magic, what in magics.items():
        if head.startswith(magic):
            return what
    if head[128:132] == b"DICM":
        return "a DICOM file"
    return None


def is_dicom_file(path: str | Path) -> bool:
    """True when the file has the DICOM preamble ('DICM' at byte 128) or a DICOM extension."""
    p = Path(path)
    if p.suffix.lower() in (".dcm", ".ima"):
        return True
    return describe_content(p) == "a DICOM file"
