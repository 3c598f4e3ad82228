"""Volume <-> napari layer keyword arguments: the only code that turns geometry into napari terms.

napari world coordinates are LPS millimetres in array-like order ``(z, y, x)`` (``(t, z, y, x)``
for series), so a voxel is shown at its physical point and layers from different files overlay
where the anatomy overlays.

* Axis-aligned direction matrices (any flip or permutation of the axes) are made the identity by
  flipping/transposing the array: lossless, exact, and napari slices it normally. The reorientation
  is remembered in the layer's metadata so that saving writes the file's original orientation.
* Oblique direction matrices: napari cannot slice obliquely. ``oblique="resample"`` (default)
  resamples onto an axis-aligned grid that covers the volume (linear for images, nearest for
  labels); ``oblique="affine"`` passes the rotation as the layer's ``affine`` (exact in 3D view,
  2D slices are then oblique). Either way a note says which was done.

Display contrast (:func:`display_window`): an image opens with a clinical window, never min-max.
A CT (DICOM modality CT, ``units`` HU, or values spanning air and bone: min <= -500 and
max >= 300) gets the lung window (W 1500 / L -600: -1350..150 HU) when more than 15 % of its
non-air voxels (> -950 HU) lie in lung density (-950..-500 HU), else the soft-tissue window
(W 400 / L 40: -160..240 HU). Any other image (MR, PET, synthetic) gets its 0.5-99.5
percentile window. The choice is in ``metadata["display_window"]``.

This module imports neither napari nor Qt: it returns plain dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .volume import Volume

REORIENT_KEY = "medgen_reorient"
LUNG_WINDOW = (-1350.0, 150.0)  # W 1500 / L -600 HU
SOFT_TISSUE_WINDOW = (-160.0, 240.0)  # W 400 / L 40 HU
PERCENTILES = (0.5, 99.5)
_SAMPLE = 1_000_000  # voxels the window is estimated from (an even subsample of larger volumes)
_REV = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # (x, y, z) <-> (z, y, x)


def volume_to_layer(vol: Volume, name: str | None = None, oblique: str = "resample") -> tuple[np.ndarray, dict[str, Any], str]:
    """Return ``(data, kwargs, layer_type)`` for ``viewer.add_image``/``add_labels`` (or LayerData).

    kwargs holds name, scale, translate (and affine for oblique="affine"), metadata with the
    Volume's metadata (``notes`` lists what the GUI should tell the user). layer_type is
    "labels" or "image".
    """
    notes = list(vol.metadata.get("notes", []))
    meta: dict[str, Any] = {k: v for k, v in vol.metadata.items() if k != "notes"}
    affine = None
    translate: tuple[float, ...] = ()
    if vol.is_axis_aligned():
        vol, reorient = to_canonical(vol)
        if reorient is not None:
            meta[REORIENT_KEY] = reorient
    elif oblique == "affine":
        affine = np.eye(4)
        affine[:3, :3] = _REV @ vol.direction @ _REV
        # rotation about the origin: translate is applied before the affine, so pre-rotate the origin
        translate = tuple(_REV @ vol.direction.T @ np.asarray(vol.origin))
        notes.append("The volume is oblique: it is shown with its rotation (affine); 2D slices are cut obliquely.")
    elif oblique == "resample":
        from .resample import resample_axis_aligned

        vol = resample_axis_aligned(vol)
        notes.append("The volume is oblique: it was resampled onto an axis-aligned grid "
                     f"({'nearest-neighbour' if vol.is_label else 'linear'} interpolation) so napari can slice it.")
    else:
        raise ValueError(f"oblique must be 'resample' or 'affine', not {oblique!r}")
    scale = tuple(vol.spacing[::-1])
    if affine is None:
        translate = tuple(vol.origin[::-1])
    if vol.is_time_series:
        scale = (float(vol.metadata.get("time_spacing", 1.0)),) + scale
        translate = (0.0,) + translate
    if notes:
        meta["notes"] = notes
    kwargs: dict[str, Any] = {"scale": scale, "translate": translate, "metadata": meta}
    if not vol.is_label and (window := display_window(vol)) is not None:
        kwargs["contrast_limits"] = window[1]
        meta["display_window"] = window[0]
    if affine is not None:
        full = np.eye(vol.data.ndim + 1)
        full[-4:-1, -4:-1] = affine[:3, :3]
        kwargs["affine"] = full
    if name:
        kwargs["name"] = name
    return vol.data, kwargs, "labels" if vol.is_label else "image"


def is_ct(vol: Volume, sample: np.ndarray | None = None) -> bool:
    """A CT in Hounsfield units: DICOM modality CT, ``units`` HU, or values spanning air and bone."""
    if str(vol.metadata.get("modality", "")).upper() == "CT" or str(vol.metadata.get("units", "")).upper() == "HU":
        return True
    if str(vol.metadata.get("modality", "")).upper() not in ("", "OT"):
        return False
    v = _sample(vol.data) if sample is None else sample
    return bool(v.size and v.min() <= -500 and v.max() >= 300)


def display_window(vol: Volume) -> tuple[str, tuple[float, float]] | None:
    """(name, (low, high)) contrast limits an image opens with (module docstring), or None when the
    image has no finite spread (e.g. a blank placeholder)."""
    v = _sample(vol.data)
    if v.size == 0:
        return None
    if is_ct(vol, v):
        tissue = v[v > -950]
        lung = np.count_nonzero(tissue <= -500) / max(tissue.size, 1)
        return ("CT lung", LUNG_WINDOW) if lung > 0.15 else ("CT soft tissue", SOFT_TISSUE_WINDOW)
    lo, hi = (float(x) for x in np.percentile(v, PERCENTILES))
    if not hi > lo:
        lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return None
    return f"percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g}", (lo, hi)


def _sample(data: np.ndarray) -> np.ndarray:
    """Finite values of an even subsample (at most about _SAMPLE voxels) as float64."""
    flat = np.asarray(data).reshape(-1)
    flat = flat[:: max(1, flat.size // _SAMPLE)].astype(np.float64)
    return flat[np.isfinite(flat)]


def layer_to_volume(data: np.ndarray, scale=None, translate=None, affine=None, metadata: dict | None = None,
                    is_label: bool = False) -> Volume:
    """Inverse of :func:`volume_to_layer`: a napari layer's data and transform back to a Volume.

    data: (z, y, x) or (t, z, y, x); 2D (y, x) is taken as one slice. scale/translate: per data
    axis; affine: (ndim+1)x(ndim+1) napari affine (array order). Restores the file's original
    orientation when the layer came from :func:`volume_to_layer` with a reorientation.
    """
    data = np.asarray(data)
    meta = dict(metadata or {})
    if data.ndim == 2:
        data = data[None]
        scale = (1.0,) + tuple(scale) if scale is not None else None
        translate = (0.0,) + tuple(translate) if translate is not None else None
    nd = data.ndim
    scale = np.ones(nd) if scale is None else np.asarray(scale, dtype=float)
    translate = np.zeros(nd) if translate is None else np.asarray(translate, dtype=float)
    lin = np.eye(3)
    if affine is not None:
        a = np.asarray(affine, dtype=float)
        lin = a[-4:-1, -4:-1]
        translate_sp = lin @ translate[-3:] + a[-4:-1, -1]
    else:
        translate_sp = translate[-3:]
    m_nap = lin @ np.diag(scale[-3:])  # array order (z, y, x)
    m_itk = _REV @ m_nap @ _REV  # (x, y, z) order
    spacing = np.linalg.norm(m_itk, axis=0)
    direction = m_itk / spacing
    origin = translate_sp[::-1]
    if nd == 4:
        meta.setdefault("time_spacing", float(scale[0]))
    reorient = meta.pop(REORIENT_KEY, None)
    meta.pop("notes", None)
    vol = Volume(data, tuple(spacing), tuple(origin), direction, is_label=is_label, metadata=meta)
    if reorient is not None and np.allclose(direction, np.eye(3), atol=1e-6):
        vol = from_canonical(vol, reorient)
    return vol


def to_canonical(vol: Volume) -> tuple[Volume, dict[str, Any] | None]:
    """Flip/transpose an axis-aligned volume so that its direction is the identity (exact).

    Returns the new Volume and the reorientation record (None if nothing changed):
    ``{"axes": [physical axis of index axis c], "flip": [bool per index axis c]}``.
    """
    d = vol.direction
    axes = [int(np.argmax(np.abs(d[:, c]))) for c in range(3)]
    flips = [bool(d[axes[c], c] < 0) for c in range(3)]
    if axes == [0, 1, 2] and not any(flips):
        return vol, None
    nt = vol.data.ndim - 3
    size = vol.spatial_shape[::-1]  # (nx, ny, nz) per index axis
    corner = [size[c] - 1 if flips[c] else 0 for c in range(3)]
    origin = vol.index_to_physical(np.array(corner, dtype=float))
    data = vol.data
    for c in range(3):
        if flips[c]:
            data = np.flip(data, axis=nt + 2 - c)
    # new array axis for physical axis p is (2 - p); it takes the old axis (2 - c) with axes[c] == p
    order = list(range(nt)) + [nt + 2 - axes.index(2 - a) for a in range(3)]
    data = np.ascontiguousarray(np.transpose(data, order))
    spacing = [0.0, 0.0, 0.0]
    for c in range(3):
        spacing[axes[c]] = vol.spacing[c]
    new = Volume(data, tuple(spacing), tuple(origin), np.eye(3), vol.is_label, dict(vol.metadata))
    return new, {"axes": axes, "flip": flips}


def from_canonical(vol: Volume, reorient: dict[str, Any]) -> Volume:
    """Undo :func:`to_canonical`: restore the original axis order and flips (exact)."""
    axes, flips = list(reorient["axes"]), list(reorient["flip"])
    nt = vol.data.ndim - 3
    # old array axis (2 - c) comes from new axis (2 - axes[c])
    order = list(range(nt)) + [nt + 2 - axes[2 - a] for a in range(3)]
    data = np.transpose(vol.data, order)
    direction = np.zeros((3, 3))
    spacing = [vol.spacing[axes[c]] for c in range(3)]
    for c in range(3):
        direction[axes[c], c] = -1.0 if flips[c] else 1.0
        if flips[c]:
            data = np.flip(data, axis=nt + 2 - c)
    size = data.shape[-3:][::-1]
    # origin: the physical point of original index 0 = canonical voxel at the flipped corner
    corner = np.array([size[c] - 1 if flips[c] else 0 for c in range(3)], dtype=float)
    # the canonical origin is the physical point of the original voxel at `corner`
    origin = np.asarray(vol.origin) - direction @ (np.asarray(spacing) * corner)
    return Volume(np.ascontiguousarray(data), tuple(spacing), tuple(origin), direction, vol.is_label, dict(vol.metadata))
