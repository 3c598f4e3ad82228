"""Intensity normalisation for training and inference, described by a JSON "spec" kept in model cards.

Two kinds, both a linear map of the input range ``[lo_value, hi_value]`` (input intensity units,
e.g. MR a.u. or CT HU) onto ``range`` (default ``[-1, 1]``), clipped by default:

* ``{"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": .., "hi_value": .., "range": [-1, 1]}``:
  lo/hi_value are the input's values at the ``low``/``high`` percentiles (measured by
  :func:`percentile_spec`; a spec without them is measured on the array being normalised).
* ``{"kind": "fixed", "lo_value": -160, "hi_value": 240, "range": [-1, 1]}``: a fixed window, e.g.
  a CT HU window (see :data:`CT_WINDOWS` and :func:`fixed_spec`).

:func:`denormalize` maps model output back to input intensities with the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

# CT windows in HU as (lowest, highest) shown value: level -/+ width/2
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (-160.0, 240.0),  # level 40, width 400
    "lung": (-1350.0, 150.0),  # level -600, width 1500
    "bone": (-450.0, 1050.0),  # level 300, width 1500
    "brain": (0.0, 80.0),  # level 40, width 80
}


def percentile_spec(arr: np.ndarray, low: float = 0.5, high: float = 99.5,
                    out_range: tuple[float, float] = (-1.0, 1.0), mask: np.ndarray | None = None) -> dict[str, Any]:
    """Measure a percentile spec on ``arr`` (any shape; NaN ignored; only voxels where ``mask`` is true)."""
    if not 0 <= low < high <= 100:
        raise InputError(f"Percentiles must satisfy 0 <= low < high <= 100, got {low} and {high}.")
    values = np.asarray(arr, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError("Cannot measure intensity percentiles: the image has no finite values (in the mask).")
    lo, hi = np.percentile(values, [low, high])
    return {"kind": "percentile", "low": float(low), "high": float(high), "lo_value": float(lo),
            "hi_value": float(hi), "range": [float(out_range[0]), float(out_range[1])]}


def fixed_spec(window: str | tuple[float, float], out_range: tuple[float, float] = (-1.0, 1.0)) -> dict[str, Any]:
    """A fixed-window spec from a CT window name (see :data:`CT_WINDOWS`) or (lo_value, hi_value)."""
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise InputError(f"Unknown CT window '{window}' (known: {', '.join(CT_WINDOWS)}).")
        window = CT_WINDOWS[window]
    lo, hi = (float(v) for v in window)
    if not hi > lo:
        raise InputError(f"A fixed intensity window needs lo < hi, got ({lo}, {hi}).")
    return {"kind": "fixed", "lo_value": lo, "hi_value": hi, "range": [float(out_range[0]), float(out_range[1])]}


def linear_map(spec: dict[str, Any], arr: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """(lo_value, hi_value, out_lo, out_hi) of a spec: input ``lo..hi`` maps linearly onto ``out_lo..out_hi``.
    Percentiles missing from a spec are measured on ``arr``."""
    kind = spec.get("kind")
    if kind == "percentile" and ("lo_value" not in spec or "hi_value" not in spec):
        spec = {**spec, **percentile_spec(arr, spec.get("low", 0.5), spec.get("high", 99.5))}
    elif kind not in ("percentile", "fixed"):
        raise InputError(f"Unknown intensity normalisation kind {kind!r} (expected 'percentile' or 'fixed').")
    lo, hi = float(spec["lo_value"]), float(spec["hi_value"])
    out_lo, out_hi = (float(v) for v in spec.get("range", (-1.0, 1.0)))
    if hi <= lo:  # a constant image: map it to the middle of the range instead of dividing by zero
        hi = lo + 1.0
    return lo, hi, out_lo, out_hi


def normalize(arr: np.ndarray, spec: dict[str, Any], clip: bool = True) -> np.ndarray:
    """Input intensities -> ``spec["range"]`` (float32, same shape); clipped to the range unless clip=False."""
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi, out_lo, out_hi = linear_map(spec, arr)
    out = (arr - lo) * ((out_hi - out_lo) / (hi - lo)) + out_lo
    return np.clip(out, min(out_lo, out_hi), max(out_lo, out_hi)) if clip else out.astype(np.float32)


def denormalize(arr: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`normalize` (without the clipping): model output -> input intensities (float32).

    The spec must hold lo_value/hi_value (as every spec stored in a model card does)."""
    if "lo_value" not in spec or "hi_value" not in spec:
        raise InputError("Cannot restore intensities: the normalisation spec has no measured lo_value/hi_value.")
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi, out_lo, out_hi = linear_map(spec, arr)
    return ((arr - out_lo) * ((hi - lo) / (out_hi - out_lo)) + lo).astype(np.float32)
