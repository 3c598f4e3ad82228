"""Shape, deformation and appearance of a lesion that shrinks or grows, on the scan's own voxel grid.

Every function works on (z, y, x) arrays in index space with the physical voxel size
``sp = (dz, dy, dx)`` in mm (the direction cosines are orthonormal, so distances in mm are the
same in index space and in patient space: oblique and flipped scans need no resampling).

* :func:`signed_distance` / :func:`level_set`: the lesion at a later time is a level set of its
  smoothed signed distance map, holding exactly the requested number of voxels (nested: regression
  keeps each new mask inside the previous one, growth around it).
* :func:`growth_distance`: for a growing lesion, the distance outside it is geodesic through the
  anatomy (:func:`growth_cost`): it grows through the tissue around it, around other labelled
  structures rather than into them, and never out of the patient into the air around the body.
* :func:`pull_field`: a smooth displacement (backward map, mm) along the lesion's normals that
  pulls surrounding tissue into the space a shrinking lesion leaves (pushes it away from a growing
  one), equal to ``pull`` x the shrink distance at the lesion's border and tapering to exactly zero
  ``margin_mm`` outside it and at the lesion's deepest point; invertible when
  ``pull * |shrink| * pi / 2 < margin_mm`` (checked by the caller).
* :func:`texture_fill`: texture-preserving inpainting: a local mean from the nearest source voxels
  (multi-scale normalised convolution) plus the scan's own residual texture, copied by translation
  from a nearby source patch (so noise grain and correlation are the scan's).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy import ndimage

FILL_SCALES_MM = (2.0, 4.0, 8.0, 16.0, 32.0)  # normalised-convolution sigmas, smallest first
ORGAN_COST = 4.0  # growing 1 mm into another labelled structure counts as 4 mm through plain tissue
OUTSIDE_COST = 1000.0  # ... and 1 mm out of the patient as 1 m: a lesion does not grow into the air around the body


def signed_distance(mask: np.ndarray, sp: tuple[float, float, float], smooth_vox: float = 0.7) -> np.ndarray:
    """Signed distance (mm, < 0 inside) to the border of ``mask`` (z, y, x), smoothed by ``smooth_vox`` voxels."""
    inside = ndimage.distance_transform_edt(mask, sampling=sp)
    outside = ndimage.distance_transform_edt(~mask, sampling=sp)
    half = 0.5 * min(sp)
    phi = np.where(mask, half - inside, outside - half).astype(np.float32)
    return ndimage.gaussian_filter(phi, smooth_vox, mode="nearest") if smooth_vox > 0 else phi


def level_set(phi: np.ndarray, base: np.ndarray, n_voxels: int) -> tuple[np.ndarray, float]:
    """Exactly the ``n_voxels`` voxels of lowest ``phi``, nested with ``base``: inside it when fewer, around it when more.

    Ties in ``phi`` (symmetric shapes on a grid) are broken in a fixed pseudo-random order, so that
    the count is exact and masks for different counts are nested. Returns (mask, level): level lies
    halfway between the last voxel taken and the next one (the border a soft edge is centred on).
    """
    n0 = int(base.sum())
    n_voxels = int(max(0, n_voxels))
    if n_voxels == n0:
        return base.copy(), float(phi[base].max()) if n0 else -np.inf
    shrink = n_voxels < n0
    pool = np.flatnonzero(base if shrink else ~base)
    values = phi.ravel()[pool]
    order = np.lexsort((np.random.default_rng(0).random(values.size), values))
    k = min(n_voxels if shrink else n_voxels - n0, values.size)
    mask = np.zeros(base.shape, bool) if shrink else base.copy()
    mask.ravel()[pool[order[:k]]] = True
    if k == 0:
        return mask, float(values[order[0]]) if values.size else 0.0
    last = float(values[order[k - 1]])
    return mask, (last + float(values[order[k]])) / 2 if k < values.size else last + 1.0


def growth_cost(body: np.ndarray, labels: np.ndarray, value: int) -> np.ndarray:
    """Cost (z, y, x) >= 1 of growing through each voxel: 1 in the lesion's host tissue (the label most
    common on its border, e.g. lung) and in unlabelled tissue, ORGAN_COST in other labelled
    structures, OUTSIDE_COST outside ``body`` (the patient)."""
    lesion = labels == value
    shell = ndimage.binary_dilation(lesion) & ~lesion
    host = int(np.bincount(labels[shell].astype(np.int64)).argmax()) if shell.any() else 0
    cost = np.full(labels.shape, ORGAN_COST, np.float32)
    cost[(labels == 0) | (labels == host) | lesion] = 1.0
    cost[~body & ~lesion] = OUTSIDE_COST
    return cost


def growth_distance(phi: np.ndarray, lesion: np.ndarray, cost: np.ndarray, sp: tuple[float, float, float],
                    smooth_vox: float = 0.7) -> np.ndarray:
    """``phi`` with its outside replaced by the cost-weighted geodesic distance (mm) from the lesion
    (skimage's minimum-cost path), smoothed like :func:`signed_distance`; the inside is kept.

    The search runs with a Python ``goal_reached`` (:func:`_yielding_mcp`): skimage's ``find_costs``
    otherwise holds the GIL throughout (1.7 s on the heartbeat benchmark's crop, 54 x 176 x 176), and
    a viewer whose job runs it in a worker thread stalls that long; the costs are the same."""
    if not lesion.any():
        return phi
    dist, _ = _yielding_mcp(cost, sp).find_costs(np.argwhere(lesion))
    outside = np.minimum(dist, OUTSIDE_COST * float(np.sum(np.asarray(lesion.shape) * np.asarray(sp)))) + 0.5 * min(sp)
    geo = np.where(lesion, phi, outside).astype(np.float32)
    return ndimage.gaussian_filter(geo, smooth_vox, mode="nearest") if smooth_vox > 0 else geo


def _yielding_mcp(cost: np.ndarray, sp: tuple[float, float, float]) -> Any:
    """skimage's MCP_Geometric on ``cost`` (z, y, x) with ``sampling=sp``, whose ``goal_reached`` (called
    once per voxel popped from the heap) is a Python method that always continues: each call passes
    through the interpreter, which hands the GIL to a waiting thread every switch interval (5 ms)."""
    from skimage.graph import MCP_Geometric

    class YieldingMCP(MCP_Geometric):
        def goal_reached(self, index: int, cumcost: float) -> int:
            return 0

    return YieldingMCP(cost, sampling=sp)


def normals(phi: np.ndarray, sp: tuple[float, float, float], smooth_mm: float = 1.5) -> np.ndarray:
    """Unit outward normals (3, z, y, x) of the level sets of ``phi`` (mm components), smoothed."""
    grad = np.stack(np.gradient(phi, *sp)).astype(np.float32)
    sigma = [smooth_mm / s for s in sp]
    for g in grad:
        ndimage.gaussian_filter(g, sigma, output=g, mode="nearest")
    norm = np.sqrt((grad ** 2).sum(0))
    grad /= np.maximum(norm, 1e-6)
    return grad


def pull_field(phi: np.ndarray, n: np.ndarray, shrink_mm: float, pull: float, margin_mm: float) -> np.ndarray:
    """Backward displacement (3, z, y, x) in mm: output x shows the baseline at x + u(x).

    |u| = pull * shrink_mm at the border (phi = 0), a cosine taper to 0 at phi = margin_mm outside and
    to 0 at the deepest point inside. shrink_mm > 0 (regression) points u outward: tissue from further
    out moves in; < 0 (growth) pushes it out.
    """
    depth = max(float(-phi.min()), 1e-3)
    h = np.zeros_like(phi)
    out = (phi >= 0) & (phi < margin_mm)
    h[out] = 0.5 * (1 + np.cos(np.pi * phi[out] / margin_mm))
    inside = phi < 0
    h[inside] = 0.5 * (1 - np.cos(np.pi * np.clip(phi[inside] + depth, 0, depth) / depth))
    return n * (pull * shrink_mm * h)[None]


def warp(image: np.ndarray, u_mm: np.ndarray, sp: tuple[float, float, float], order: int = 1) -> np.ndarray:
    """image (z, y, x) sampled at x + u (u (3, z, y, x) in mm); voxels where u = 0 keep their exact value.

    order 1 (images): texture-preserving: the image's 1-voxel Gaussian low-pass is interpolated linearly,
    and so is the rest (the grain), whose amplitude is then restored (linear interpolation between
    voxels lowers the std of uncorrelated grain by sqrt(prod((1 - f)^2 + f^2)), f the fractional offsets;
    repeating voxels instead, nearest neighbour, draws streaks where tissue is stretched).
    order 0: nearest neighbour (labels).
    """
    moving = np.any(u_mm != 0, axis=0)
    out = image.copy()
    if not moving.any():
        return out
    idx = np.nonzero(moving)
    coords = np.stack([idx[a] + u_mm[a][idx] / sp[a] for a in range(3)])
    if order == 0:
        out[idx] = ndimage.map_coordinates(image, coords, order=0, mode="nearest")
        return out
    low = ndimage.gaussian_filter(image.astype(np.float32), 1.0, mode="nearest")
    frac = coords - np.floor(coords)
    gain = 1.0 / np.sqrt(np.prod((1 - frac) ** 2 + frac ** 2, axis=0))
    out[idx] = (ndimage.map_coordinates(low, coords, order=1, mode="nearest")
                + gain * ndimage.map_coordinates(image - low, coords, order=1, mode="nearest"))
    return out


def texture_fill(image: np.ndarray, region: np.ndarray, source: np.ndarray, sp: tuple[float, float, float],
                 rng: np.random.Generator) -> np.ndarray:
    """Values for ``region`` voxels (1D, in np.nonzero order) that look like the nearby ``source`` voxels.

    Local mean: normalised convolution of the source with the smallest Gaussian (FILL_SCALES_MM)
    that reaches the voxel. Texture: the source's residual (image minus its 2 mm local mean) copied
    by a translation that lands the region on source voxels (candidates: 26 directions, just past the
    region's extent; best coverage with residual spread nearest the source's), falling back to
    other translations, then to random source residuals, voxel by voxel.
    """
    img = image.astype(np.float32)
    s = source.astype(np.float32)
    idx = np.nonzero(region)
    mean = np.full(idx[0].size, np.nan, np.float32)
    resid_src = None
    for scale in FILL_SCALES_MM:
        sigma = [scale / v for v in sp]
        den = ndimage.gaussian_filter(s, sigma, mode="constant")
        num = ndimage.gaussian_filter(img * s, sigma, mode="constant")
        local = num / np.maximum(den, 1e-12)
        if resid_src is None:
            resid_src = np.where(source, img - local, 0.0).astype(np.float32)
        todo = np.isnan(mean) & (den[idx] > 1e-3)
        mean[todo] = local[idx][todo]
        if not np.isnan(mean).any():
            break
    if np.isnan(mean).any():
        mean[np.isnan(mean)] = float(img[source].mean()) if source.any() else float(img[region].mean())
    return mean + _copy_residual(resid_src, region, source, idx, sp, rng)


def _copy_residual(resid: np.ndarray, region: np.ndarray, source: np.ndarray, idx: tuple[np.ndarray, ...],
                   sp: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Residual texture for the region's voxels, copied from the source by translation (see texture_fill)."""
    pts = np.stack(idx, 1)
    out = np.zeros(len(pts), np.float32)
    if not source.any():
        return out
    src_std = float(resid[source].std()) or 1e-6
    lo, hi = pts.min(0), pts.max(0)
    extent_mm = (hi - lo + 1) * np.asarray(sp)
    candidates = []
    for d in itertools.product((-1, 0, 1), repeat=3):
        if d == (0, 0, 0):
            continue
        d = np.asarray(d, float)
        unit = d / np.linalg.norm(d)
        dist = float(np.min(np.where(d != 0, extent_mm / np.maximum(np.abs(unit), 1e-6), np.inf))) + 3.0
        shift = np.round(unit * dist / np.asarray(sp)).astype(int)
        tgt = pts + shift
        ok = np.all((tgt >= 0) & (tgt < np.asarray(region.shape)), 1)
        ok[ok] = source[tuple(tgt[ok].T)]
        if not ok.any():
            continue
        spread = float(resid[tuple(tgt[ok].T)].std()) or 1e-6
        score = ok.mean() * np.exp(-abs(np.log(spread / src_std)))
        candidates.append((score, shift, ok))
    done = np.zeros(len(pts), bool)
    for _, shift, ok in sorted(candidates, key=lambda c: -c[0]):
        take = ok & ~done
        out[take] = resid[tuple((pts[take] + shift).T)]
        done |= take
        if done.all():
            break
    if not done.all():
        out[~done] = rng.choice(resid[source], size=int((~done).sum()))
    return out
