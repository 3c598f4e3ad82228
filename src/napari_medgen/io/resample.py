"""Resample an oblique volume onto an axis-aligned grid (identity direction) with SimpleITK.

The new grid covers the bounding box of the old voxel centres. The spacing along physical axis p
is ``1 / sqrt(sum_c (D[p, c] / s_c)^2)``: the old sampling density projected onto p, which is
exactly the old spacing for axis-aligned directions and between the old spacings otherwise. Images use linear interpolation
(float32 result; outside = the image minimum), label maps nearest neighbour (dtype kept;
outside = 0). 4D volumes are resampled frame by frame on one grid.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from .volume import Volume


def aligned_grid(vol: Volume) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...]]:
    """(spacing, origin, size) in (x, y, z) of the axis-aligned grid covering ``vol``."""
    nx_ny_nz = vol.spatial_shape[::-1]
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in nx_ny_nz])), dtype=float)
    pts = vol.index_to_physical(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    spacing = 1.0 / np.sqrt(((vol.direction / np.asarray(vol.spacing)) ** 2).sum(axis=1))
    size = np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1
    return tuple(spacing), tuple(lo), tuple(int(s) for s in size)


def resample_axis_aligned(vol: Volume) -> Volume:
    """Volume on an axis-aligned grid covering ``vol`` (linear for images, nearest for labels)."""
    spacing, origin, size = aligned_grid(vol)
    frames = vol.data if vol.is_time_series else vol.data[None]
    if vol.is_label:
        interp, default, out_dtype = sitk.sitkNearestNeighbor, 0.0, frames.dtype
    else:
        interp, out_dtype = sitk.sitkLinear, np.float32
        default = float(frames.min()) if frames.size else 0.0
    out = []
    for frame in frames:
        img = sitk.GetImageFromArray(frame if vol.is_label else frame.astype(np.float32))
        img.SetSpacing(vol.spacing)
        img.SetOrigin(vol.origin)
        img.SetDirection(vol.direction.ravel().tolist())
        res = sitk.Resample(img, size, sitk.Transform(), interp, origin, spacing, np.eye(3).ravel().tolist(), default)
        out.append(sitk.GetArrayFromImage(res).astype(out_dtype, copy=False))
    data = np.stack(out) if vol.is_time_series else out[0]
    meta = {**vol.metadata, "resampled_from": {"spacing": list(vol.spacing), "origin": list(vol.origin),
                                               "direction": vol.direction.tolist()}}
    return Volume(data, spacing, origin, np.eye(3), vol.is_label, meta)
