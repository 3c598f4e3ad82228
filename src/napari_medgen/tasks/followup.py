"""Synthetic follow-ups of a real scan and its lesion mask, on any modality, without a trained model.

:func:`simulate_followups` separates shape from appearance (docs/longitudinal.md, "The real-scan path"):

* shape: the tracked lesion's volume follows a parametric law in months (:mod:`..data.progression`);
  each follow-up's mask is the volume-matched level set of the baseline mask's smoothed signed
  distance (exact to one voxel, nested, so the volume is monotone); a growing lesion's distance
  outside it is geodesic through the anatomy (:func:`..data.lesion_change.growth_distance`);
* anatomy: a smooth invertible displacement pulls the surrounding tissue ``pull`` of the way into
  the space the lesion leaves (or pushes it away from a growing lesion), zero beyond ``margin_mm``;
* appearance: the space the lesion leaves is filled from its surroundings with the scan's own
  texture; a growing lesion's new part takes the lesion's own appearance
  (:func:`..data.lesion_change.texture_fill`).

All work happens in a crop around the lesion; every voxel outside the margin keeps its exact
value. The result has the baseline's exact geometry and units (HU stay HU).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data import lesion_change as lc
from ..data.body import body_mask
from ..data.progression import Progression, check_months
from ..errors import InputError
from ..io.volume import Volume
from ..progress import CancelToken, Progress

LESION_NAME = re.compile(r"tumou?r|lesion|mass|nodule|metasta|cancer|carcinoma|gtv|neoplasm", re.IGNORECASE)
MARGIN_MM = 10.0  # the displacement is zero this far outside the baseline lesion (regression)
SHELL_MM = 10.0  # the fill's source: tissue between the rim and this distance (mm) outside the lesion
RIM_VOX = 1.5  # the lesion's partial-volume rim (voxels): replaced by the fill, blended out over one more voxel
EDGE_SOFT = 0.3  # logistic width of the new border, in voxels (a Gaussian edge of ~half a voxel)
PULL = 0.15  # share of the shrink distance the surrounding tissue moves in (more stretches its texture into streaks)
FILL_PAD_MM = 4.0  # room beyond the lesion's extent for the texture donors


@dataclass
class FollowUps:
    """image/labels: 4D (t, z, y, x) Volumes with the baseline's geometry, frame 0 = baseline.

    tracked_ml: volume of the tracked structure per time point (ml); times: time of each frame in
    ``time_unit``; slices: indices of the axial slices that changed; notes: messages for the user.
    """

    image: Volume
    labels: Volume
    tracked_ml: list[float]
    times: list[float]
    slices: list[int]
    notes: list[str] = field(default_factory=list)
    tracked: int = 0


def propose_tracked(labels: Volume) -> int | None:
    """The label to follow: the one named like a lesion (tumour, mass, nodule ...), else the only foreground value."""
    present = label_values(labels)
    names = {int(k): str(v) for k, v in labels.metadata.get("label_names", {}).items()}
    named = [v for v in present if LESION_NAME.search(names.get(v, ""))]
    if named:
        return named[0]
    return present[0] if len(present) == 1 else None


def label_values(labels: Volume) -> list[int]:
    """Foreground values present in a label map, ascending."""
    data = np.asarray(labels.data)
    if data.size and data.dtype.kind in "ub" and data.dtype.itemsize <= 2:  # counting is faster than sorting
        flat, top, n = data.ravel(), int(data.max()) + 1, 1 << 21  # np.bincount holds the GIL (40 ms for 512^2 x 100):
        counts = sum(np.bincount(flat[i:i + n], minlength=top) for i in range(0, flat.size, n))  # 2M voxels at a time
        return [int(v) for v in np.flatnonzero(counts) if v != 0]
    return [int(v) for v in np.unique(data) if v != 0]


def resolve_tracked(labels: Volume, tracked: int | str | None) -> int:
    """A label value from a value or a name (case-insensitive); None = :func:`propose_tracked`.

    Refuses, naming the label map and what it holds, a value or name the map does not contain.
    """
    name = labels.metadata.get("source", "the label map")
    present = label_values(labels)
    names = {int(k): str(v) for k, v in labels.metadata.get("label_names", {}).items()}
    held = ", ".join(f"{v}" + (f" ({names[v]})" if v in names else "") for v in present) or "no foreground"
    if tracked is None or (isinstance(tracked, str) and not tracked.strip()):
        value = propose_tracked(labels)
        if value is None:
            raise InputError(f"{name} holds {held}: choose the label to follow (--tracked VALUE_OR_NAME).")
        return value
    text = str(tracked).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
    else:
        by_name = [v for v, n in names.items() if n.lower() == text.lower()]
        if not by_name:
            raise InputError(f"{name} has no label named {text!r}; it holds {held}.")
        value = by_name[0]
    if value not in present:
        raise InputError(f"{name} has no voxels with label {value}; it holds {held}.")
    return value


def simulate_followups(baseline: Volume, labels: Volume, tracked: int | str | None, months: list[float],
                       progression: Progression | None = None, *, margin_mm: float = MARGIN_MM, pull: float = PULL,
                       seed: int = 0, cancel: CancelToken | None = None) -> Generator[Progress, None, FollowUps]:
    """Follow-ups of ``baseline`` (3D, any modality/units) at ``months`` after it (> 0, increasing).

    labels: the baseline's label map (same grid); tracked: the lesion's value or name (None: proposed).
    progression: the volume law (default: regression, 3-month halving time). margin_mm: no tissue moves
    further than this outside the baseline lesion. pull in [0, 1): share of the shrink (growth) distance
    done by moving the surrounding tissue, lowered per follow-up where needed to stay invertible.
    Returns FollowUps with frame 0 = baseline and ``times`` = [0, *months].
    """
    cancel = cancel or CancelToken()
    progression = progression or Progression()
    months = check_months(months)
    _check(baseline, labels, margin_mm, pull)
    value = resolve_tracked(labels, tracked)
    yield Progress(0, len(months) + 1, "preparing")
    sp = tuple(float(s) for s in baseline.spacing[::-1])  # (z, y, x) mm
    lab = np.asarray(labels.data)
    lesion = lab == value
    n0 = int(lesion.sum())
    targets = [int(round(n0 * progression.ratio(m))) for m in months]
    grow_mm = max(0.0, _ball_radius(max(targets) * np.prod(sp)) - _ball_radius(n0 * np.prod(sp)))
    box = _crop(lesion, sp, margin_mm, grow_mm)
    img_c = np.asarray(baseline.data[box], np.float32)
    lab_c = lab[box]
    les_c = lesion[box]
    phi = lc.signed_distance(les_c, sp)
    if max(targets) > n0:  # growth follows the tissue, not straight lines out of the patient
        body = body_mask(np.asarray(baseline.data, np.float32))[box] | les_c
        phi = lc.growth_distance(phi, les_c, lc.growth_cost(body, lab_c, value), sp)
    n = lc.normals(phi, sp) * (ndimage.distance_transform_edt(~les_c, sampling=sp) < margin_mm)[None]  # 0 beyond
    # the labels the lesion covers, were it gone: each lesion voxel takes its nearest other label
    nearest = ndimage.distance_transform_edt(les_c, sampling=sp, return_distances=False, return_indices=True)
    under = lab_c[tuple(nearest)]
    out_img = np.empty((len(months) + 1,) + lab.shape, np.float32)
    out_lab = np.empty((len(months) + 1,) + lab.shape, lab.dtype)
    out_img[0], out_lab[0] = baseline.data, lab
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    changed: set[int] = set()
    for i, target in enumerate(targets):
        cancel.check()
        yield Progress(i + 1, len(months) + 1, f"follow-up {i + 1}/{len(months)} ({months[i]:g} months)")
        mask_t, level = lc.level_set(phi, les_c, target)
        shrink = max(-level, 0.0) if target < n0 else -max(level, 0.0)
        moved = _safe_pull(pull, shrink, margin_mm)
        u = lc.pull_field(phi, n, shrink, moved, margin_mm)
        img_t, lab_t = _compose(img_c, lab_c, les_c, under, phi, mask_t, level, u, value, sp, rng)
        out_img[i + 1], out_lab[i + 1] = out_img[0], out_lab[0]
        out_img[(i + 1, *box)], out_lab[(i + 1, *box)] = img_t, lab_t
        changed.update(int(z) + box[0].start for z in np.nonzero(np.any(img_t != img_c, axis=(1, 2)))[0])
        if moved < pull:
            notes.append(f"at {months[i]:g} months tissue moves {moved:.2f} of the shrink distance (not {pull:g}) "
                         f"to stay invertible within the {margin_mm:g} mm margin")
    times = [0.0, *months]
    ml = float(np.prod(sp)) / 1000.0
    meta = {"time_unit": "months", "times": times, "progression": progression.describe(), "tracked_label": value,
            "method": "real-scan progression", "notes": notes}
    image = baseline.with_data(out_img, is_label=False, **meta)
    image.metadata.pop("label_names", None)
    series = labels.with_data(out_lab, is_label=True, **meta)
    volumes = [float((f[box] == value).sum() * ml) for f in out_lab]  # the crop holds the whole lesion
    return FollowUps(image, series, volumes, times, sorted(changed), notes, value)


def _compose(img: np.ndarray, lab: np.ndarray, lesion: np.ndarray, under: np.ndarray, phi: np.ndarray,
             mask_t: np.ndarray, level: float, u: np.ndarray, value: int, sp: tuple[float, float, float],
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One follow-up in the crop: warp, fill what the lesion leaves (or its new part), soft new border."""
    warped = lc.warp(img, u, sp)
    shown = lc.warp(lesion.astype(np.uint8), u, sp, order=0) > 0  # where the warped image still shows lesion
    soft = 1.0 / (1.0 + np.exp(np.clip((phi - level) / (EDGE_SOFT * min(sp)), -50, 50)))  # ~1 inside mask_t
    soft = np.where(mask_t, np.maximum(soft, 0.5), np.minimum(soft, 0.5)).astype(np.float32)
    out_vox = ndimage.distance_transform_edt(~shown)  # in voxels: the rim is a matter of partial volume
    in_vox = ndimage.distance_transform_edt(shown)
    lesion_look, tissue_look = warped, warped
    rim_out = out_vox < RIM_VOX + 1
    if (rim_out & ~mask_t).any():  # surroundings' appearance where the lesion was
        source = (out_vox >= RIM_VOX + 1) & (ndimage.distance_transform_edt(~shown, sampling=sp) <= SHELL_MM) & ~lesion
        tissue_look = warped.copy()
        tissue_look[rim_out] = lc.texture_fill(warped, rim_out, source, sp, rng)
        w = np.clip(RIM_VOX + 1 - out_vox, 0, 1).astype(np.float32)
        tissue_look = w * tissue_look + (1 - w) * warped
    region = mask_t & (in_vox < RIM_VOX + 1)
    if (mask_t & ~shown).any():  # lesion appearance where it grows (and over its old rim)
        core = in_vox >= RIM_VOX + 1
        lesion_look = warped.copy()
        lesion_look[region] = lc.texture_fill(warped, region, core if core.any() else shown, sp, rng)
        w = np.clip(RIM_VOX + 1 - in_vox, 0, 1).astype(np.float32)
        lesion_look = w * lesion_look + (1 - w) * warped
    out = soft * lesion_look + (1 - soft) * tissue_look
    touched = rim_out | mask_t | np.any(u != 0, axis=0)
    out = np.where(touched, out, img)
    lab_t = lc.warp(np.where(lesion, under, lab), u, sp, order=0)
    lab_t[mask_t] = value
    return out.astype(np.float32), lab_t.astype(lab.dtype)


def _safe_pull(pull: float, shrink_mm: float, margin_mm: float) -> float:
    """pull, lowered where needed so that the displacement stays invertible (slope pull*|shrink|*pi/2/margin <= 0.8)."""
    if shrink_mm == 0:
        return pull
    return float(min(pull, 0.8 * 2 * margin_mm / (np.pi * abs(shrink_mm))))


def _ball_radius(volume_mm3: float) -> float:
    return float((3 * volume_mm3 / (4 * np.pi)) ** (1 / 3))


def _crop(lesion: np.ndarray, sp: tuple[float, float, float], margin_mm: float, grow_mm: float) -> tuple[slice, ...]:
    """Box around the lesion holding the margin, the fill's source shell and its texture donors."""
    idx = np.nonzero(lesion)
    lo, hi = np.array([i.min() for i in idx]), np.array([i.max() for i in idx])
    extent_mm = (hi - lo + 1) * np.asarray(sp)
    pad_mm = max(margin_mm, SHELL_MM) + grow_mm + float(extent_mm.max()) + 2 * FILL_PAD_MM
    pad = np.ceil(pad_mm / np.asarray(sp)).astype(int)
    return tuple(slice(max(0, a - p), min(n, b + p + 1)) for a, b, p, n in zip(lo, hi, pad, lesion.shape))


def _check(baseline: Volume, labels: Volume, margin_mm: float, pull: float) -> None:
    name = baseline.metadata.get("source", "the baseline")
    lname = labels.metadata.get("source", "the label map")
    if baseline.is_time_series:
        raise InputError(f"{name} is a time series ({baseline.data.shape[0]} frames): give one 3D baseline volume.")
    if min(baseline.data.shape) < 2:
        raise InputError(f"{name} is 2D (shape {baseline.data.shape}): follow-ups need a 3D volume.")
    if labels.data.shape != baseline.data.shape:
        raise InputError(f"{lname} has shape {labels.data.shape} but {name} has {baseline.data.shape}: "
                         "give the label map drawn on this scan.")
    if not np.issubdtype(np.asarray(labels.data).dtype, np.integer):
        raise InputError(f"{lname} is not an integer label map (dtype {labels.data.dtype}).")
    if (not np.allclose(labels.spacing, baseline.spacing, atol=1e-4)
            or not np.allclose(labels.origin, baseline.origin, atol=1e-3)
            or not np.allclose(labels.direction, baseline.direction, atol=1e-4)):
        raise InputError(f"{lname} and {name} have different geometry (spacing, origin or direction).")
    if not np.isfinite(np.asarray(baseline.data, np.float32)).all():
        raise InputError(f"{name} has NaN or infinite voxels.")
    if not np.isfinite(margin_mm) or margin_mm <= 0:
        raise InputError(f"margin must be positive mm, got {margin_mm:g}")
    if not 0 <= pull < 1:
        raise InputError(f"pull must be in [0, 1), got {pull:g}")


class FrameDifference:
    """Frame ``t`` minus frame 0 of a (t, z, y, x) array, as a lazy (z, y, x) float32 array-like: indexing
    computes only what is asked for (a viewer asks for the slices it draws); ``np.asarray`` gives it all."""

    def __init__(self, series: np.ndarray, t: int) -> None:
        if np.ndim(series) != 4 or not 0 <= t < len(series):
            frames = len(series) if np.ndim(series) == 4 else 1
            raise InputError(f"time point {t} is not in the series ({frames} frames)")
        self.series, self.t = series, t
        self.shape: tuple[int, ...] = tuple(series.shape[1:])
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: object) -> np.ndarray:
        return np.subtract(self.series[self.t][key], self.series[0][key], dtype=np.float32)

    def __array__(self, dtype: object = None, copy: bool | None = None) -> np.ndarray:
        full = self[...]
        return full if dtype is None else full.astype(dtype)


def export_series(result: FollowUps, out_dir: str | Path, *, single_file: bool = False, suffix: str = ".nii.gz"
                  ) -> list[Path]:
    """Write the series to ``out_dir``: one 4D file per kind (single_file) or one 3D file per time point,
    plus ``difference`` (4D: each frame minus the baseline) and ``volumes.csv`` (time, lesion volume in ml)."""
    from ..atomic import atomic_write_bytes
    from ..io.writers import write_volume

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if single_file:
        paths = [write_volume(result.image, out / f"followups{suffix}"),
                 write_volume(result.labels, out / f"followups_labels{suffix}")]
    else:
        paths = []
        for t in range(result.image.data.shape[0]):
            paths.append(write_volume(result.image.frame(t), out / f"followup_t{t:02d}{suffix}"))
            paths.append(write_volume(result.labels.frame(t), out / f"followup_t{t:02d}_labels{suffix}"))
    base = result.image.data[0].astype(np.float32)
    paths.append(write_volume(result.image.with_data(result.image.data.astype(np.float32) - base[None]),
                              out / f"difference{suffix}"))
    unit = result.image.metadata.get("time_unit", "months")
    rows = [f"time_{unit},volume_ml"] + [f"{t:g},{ml:.4f}" for t, ml in zip(result.times, result.tracked_ml, strict=True)]
    atomic_write_bytes(out / "volumes.csv", ("\n".join(rows) + "\n").encode())
    return [*paths, out / "volumes.csv"]
