"""Measures of synthetic follow-ups: against a known truth (phantom) and, without one, on any scan.

``intensity range`` below is the baseline's 0.5-99.5 percentile range; ``shell`` is the tissue 3-10 mm
outside the baseline lesion (the lesion's value excluded). Distances are in mm on the scan's grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..io.volume import Volume
from .followup import FollowUps

SHELL_MM = (3.0, 10.0)
CHANGE_FRACTION = 0.05  # "changed": |follow-up - baseline| above this share of the intensity range


def intensity_range(image: np.ndarray) -> float:
    lo, hi = np.percentile(image, [0.5, 99.5])
    return float(max(hi - lo, 1e-6))


def local_std(image: np.ndarray, size: int = 3) -> np.ndarray:
    """Standard deviation in a ``size``^3 voxel window around each voxel."""
    x = image.astype(np.float64)
    mean = ndimage.uniform_filter(x, size, mode="nearest")
    return np.sqrt(np.maximum(ndimage.uniform_filter(x * x, size, mode="nearest") - mean ** 2, 0.0))


def scan_checks(result: FollowUps, baseline: Volume, labels: Volume) -> dict[str, float]:
    """The issue's checks that need no truth, on a real scan (or a phantom treated as one).

    geometry_error: largest difference of spacing, origin or direction between result and baseline.
    monotone: 1 when the lesion volume changes in one direction at every follow-up.
    changed_within_mm: distance from the baseline lesion of the farthest voxel changed by more than
    CHANGE_FRACTION of the intensity range, any follow-up. vacated_moved: at the last follow-up, where
    the lesion was and is no more, (mean - lesion mean) / (shell mean - lesion mean) (1 = the shell's
    mean). std_ratio: mean local std (3^3 voxels) of that region (less the voxels whose window reaches the
    remaining lesion) over the shell's.
    """
    geo = max(float(np.max(np.abs(np.subtract(a.spacing, baseline.spacing)))) for a in (result.image, result.labels))
    geo = max(geo, *(float(np.max(np.abs(np.subtract(a.origin, baseline.origin)))) for a in (result.image, result.labels)),
              *(float(np.max(np.abs(a.direction - baseline.direction))) for a in (result.image, result.labels)))
    base = np.asarray(baseline.data, np.float32)
    lesion = np.asarray(labels.data) == result.tracked
    sp = baseline.spacing[::-1]
    dist = ndimage.distance_transform_edt(~lesion, sampling=sp)
    changed = np.zeros(base.shape, bool)
    for frame in result.image.data[1:]:
        changed |= np.abs(frame - base) > CHANGE_FRACTION * intensity_range(base)
    steps = np.diff(result.tracked_ml)
    last = result.image.data[-1]
    vacated = lesion & (np.asarray(result.labels.data[-1]) != result.tracked)
    shell = (dist >= SHELL_MM[0]) & (dist <= SHELL_MM[1]) & (np.asarray(labels.data) != result.tracked)
    # local std away from the remaining lesion's edge (a window across that edge measures the edge, not texture)
    remaining = np.asarray(result.labels.data[-1]) == result.tracked
    inner = vacated & ~ndimage.binary_dilation(remaining, np.ones((3, 3, 3), bool))
    inner = inner if inner.sum() >= 10 else vacated
    out = {"geometry_error": geo, "monotone": float(bool(np.all(steps < 0) or np.all(steps > 0))),
           "changed_within_mm": float(dist[changed].max()) if changed.any() else 0.0,
           "vacated_moved": float("nan"), "std_ratio": float("nan")}
    if vacated.any() and shell.any():
        les_mean, shell_mean = float(base[lesion].mean()), float(base[shell].mean())
        out["vacated_moved"] = (float(last[vacated].mean()) - les_mean) / (shell_mean - les_mean)
        out["std_ratio"] = float(local_std(last)[inner].mean() / max(local_std(base)[shell].mean(), 1e-9))
    return out


def truth_scores(image: np.ndarray, labels: np.ndarray, true_image: np.ndarray, true_labels: np.ndarray,
                 tracked: int, sp: tuple[float, float, float], margin_mm: float) -> dict[str, np.ndarray]:
    """Scores per follow-up t = 1..T against a known truth; arrays (T, y, x ...) all (T + 1, z, y, x), frame 0 = baseline.

    dice, volume_error (predicted / true - 1) of the tracked structure; contrast: mean change (follow-up
    - baseline) over the truly vacated voxels, over the true mean change there (1 = all of it);
    outside_change: mean |follow-up - baseline| farther than ``margin_mm`` from the baseline lesion, as a
    share of the intensity range; outside_max: its maximum; texture: std of the fine grain (image minus
    its 1-voxel Gaussian blur) over the truly vacated voxels 2 voxels or more from its borders, over the
    truth's there (1 = same grain, 0 = flat; NaN where fewer than 20 such voxels). sp: voxel size (z, y, x) mm.
    """
    pred, true = labels == tracked, true_labels == tracked
    base = true_image[0].astype(np.float32)
    far = ndimage.distance_transform_edt(~true[0], sampling=sp) > margin_mm
    span = intensity_range(base)
    rows: dict[str, list[float]] = {k: [] for k in ("dice", "volume_error", "contrast", "outside_change", "outside_max",
                                                    "texture")}
    for t in range(1, len(pred)):
        inter = (pred[t] & true[t]).sum()
        rows["dice"].append(2 * inter / max(pred[t].sum() + true[t].sum(), 1))
        rows["volume_error"].append(pred[t].sum() / max(true[t].sum(), 1) - 1)
        left = true[0] & ~true[t]
        true_change = float((true_image[t] - base)[left].mean()) if left.any() else 0.0
        pred_change = float((image[t] - base)[left].mean()) if left.any() else 0.0
        rows["contrast"].append(pred_change / true_change if true_change else float("nan"))
        outside = np.abs(image[t] - base)[far]
        rows["outside_change"].append(float(outside.mean()) / span)
        rows["outside_max"].append(float(outside.max()) / span)
        inner = left & ~ndimage.binary_dilation(true[t] | ~true[0], iterations=2)  # 2 voxels from either border
        grain, true_grain = _grain(image[t]), _grain(true_image[t])
        rows["texture"].append(float(grain[inner].std() / max(true_grain[inner].std(), 1e-9))
                               if inner.sum() >= 20 else float("nan"))
    return {k: np.asarray(v, float) for k, v in rows.items()}


def _grain(image: np.ndarray) -> np.ndarray:
    """Fine grain of an image: itself minus its Gaussian blur of 1 voxel."""
    x = image.astype(np.float32)
    return x - ndimage.gaussian_filter(x, 1.0, mode="nearest")
