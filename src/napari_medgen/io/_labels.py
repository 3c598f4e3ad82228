"""Is an array a label map? The guess used by the readers, and the conversion to label dtype."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .volume import Volume

#: Most distinct values an integer volume may have to be guessed a label map without a hint.
MAX_GUESSED_LABELS = 32
#: Most distinct values a hinted (name or header) volume may have to be taken as labels.
MAX_HINTED_LABELS = 65536

_CHUNK = 1 << 22  # voxels per step when tabulating values

_NAME_HINT = re.compile(r"(_seg|_label|_labels|_mask|seg\.|aseg|labels)", re.IGNORECASE)


def name_hints_label(path: str | Path) -> bool:
    """True when the file name says "label map" (_seg, _label(s), _mask, seg., aseg, labels)."""
    return bool(_NAME_HINT.search(Path(path).name))


def _integral(data: np.ndarray) -> bool:
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return True
    if not np.issubdtype(data.dtype, np.floating):
        return False
    return bool(np.all(np.isfinite(data)) and np.all(data == np.round(data)))


def _few_values(data: np.ndarray, limit: int) -> bool:
    """True when data (>= 0) hold at most ``limit`` distinct values (cheap subsample test first)."""
    flat = data.reshape(-1)
    step = max(1, flat.size // 100_000)
    if np.unique(flat[::step]).size > limit:
        return False
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 2:  # table of seen values, no sort
        flat = flat.view(f"u{flat.dtype.itemsize}")
        seen = np.zeros(1 << (8 * flat.dtype.itemsize), bool)
        for start in range(0, flat.size, _CHUNK):
            seen[flat[start:start + _CHUNK]] = True
        return int(seen.sum()) <= limit
    return np.unique(flat).size <= limit


def guess_is_label(data: np.ndarray, hinted: bool) -> bool:
    """Label map if the values are integers, >= 0, and few (many more allowed with a hint).

    hinted: the file name or header says label map. Without a hint only integer dtypes qualify
    (float volumes with integer values are kept as images).
    """
    if data.size == 0 or data.dtype == bool:
        return data.dtype == bool
    if not hinted and not np.issubdtype(data.dtype, np.integer):
        return False
    if not _integral(data) or data.min() < 0:
        return False
    return _few_values(data, MAX_HINTED_LABELS if hinted else MAX_GUESSED_LABELS)


def smallest_label_dtype(lo: float, hi: float) -> np.dtype:
    """The smallest of uint8/uint16/int16/int32/int64 holding the range [lo, hi]."""
    for dt in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def to_label_array(data: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Array as an integer label map; integer dtypes are kept as they are.

    Float or bool data are rounded (non-finite -> 0) into the smallest fitting integer dtype.
    Returns (labels, note); note says what was lost when values were not whole numbers.
    """
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.integer):
        return data, None
    if data.dtype == bool:
        return data.astype(np.uint8), None
    finite = np.where(np.isfinite(data), data, 0)
    rounded = np.round(finite)
    note = None
    if not np.array_equal(rounded, data):
        note = "The values were not all whole numbers: they were rounded to make a label map."
    if rounded.size == 0:
        return rounded.astype(np.uint8), note
    dtype = smallest_label_dtype(float(rounded.min()), float(rounded.max()))
    return rounded.astype(dtype), note


def with_label_kind(vol: Volume, is_label: bool) -> Volume:
    """The user's override of the label guess: same geometry and metadata, label map or image.

    To a label map: values become integers (see :func:`to_label_array`; a note says if values
    were rounded). To an image: the array is kept as it is.
    """
    if not is_label:
        return vol.with_data(vol.data, is_label=False)
    data, note = to_label_array(vol.data)
    notes = [note] if note else []
    return vol.with_data(data, is_label=True, notes=notes)


LABEL_NAMES_KEY = "medgen_label_names"  # header key (NRRD/MHA) / JSON key (NIfTI comment extension)


def label_names_to_json(names: dict) -> dict[str, str]:
    """``{value: name}`` as a JSON-ready object (string keys)."""
    return {str(int(k)): str(v) for k, v in names.items()}


def label_names_from_json(obj: object) -> dict[int, str] | None:
    """Inverse of :func:`label_names_to_json` (a parsed JSON object); None when it is not one."""
    if not isinstance(obj, dict):
        return None
    try:
        return {int(k): str(v) for k, v in obj.items()}
    except (TypeError, ValueError):
        return None
