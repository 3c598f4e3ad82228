"""Synthetic follow-up scans from a baseline (family "temporal", see :mod:`..models.temporal`).

:func:`predict_followups` inverts each tumour-bearing axial slice of the baseline into the model's latent
space (encoder, then ``refine_steps`` Adam steps on the latent against the slice and, when given, its
labels) and walks it along time: ``method="direction"`` uses the learned time direction, ``"manifold"``
the mean latent step of the ``k`` nearest training progressions. Each follow-up image is
``baseline + (decode(z_t) - decode(z_0))`` (in the baseline's intensity units), by default only within
``local_margin_mm`` of the tracked structure, so what the model does not change stays exactly as it was; the labels at t take the tracked structure (the card's
``tracked_label``, e.g. the tumour) from the decoded labels at t. Slices without the tracked structure
are copied unchanged.

Input checks: 3D (z, y, x) axis-aligned volume; a scan of another modality than the card's (e.g. CT in HU for a
model trained on MR magnitude) and a followed label other than the model's are refused; a slice grid other
than the model's (pixel size, size) is resampled in-plane to the model's grid and back, with a note in the result's
``metadata["notes"]``.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError
from ..io.volume import Volume
from ..models.temporal import TemporalModel, walk
from ..progress import CancelToken, Progress
from .followup import FollowUps, label_values, resolve_tracked

METHODS = ("direction", "manifold")


def predict_followups(baseline: Volume, model: str | Path | TemporalModel, *, labels: Volume | None = None,
                      steps: int = 5, time_spacing: float = 3.0, time_unit: str = "months", method: str = "direction",
                      k: int = 5, rate: float | None = None, refine_steps: int = 20, local_margin_mm: float | None = 10.0,
                      tracked: int | str | None = None, cancel: CancelToken | None = None
                      ) -> Generator[Progress, None, FollowUps]:
    """Predict ``steps`` follow-ups of ``baseline`` (3D, the model's modality), ``time_spacing`` ``time_unit`` apart.

    One time point = ``rate`` model time steps (card ``time_step``); None = the card's calibrated
    ``time_rate`` (see :func:`..models.temporal.calibrate_rate`) for the learned direction, 1 for "manifold" (whose
    progressions' speeds are fitted per true time step). labels: the baseline's
    label map (same grid); without it the tracked structure is found in the decoded labels.
    local_margin_mm: change the image only within this distance (in-plane) of the tracked structure at
    any time point (None: wherever the model changes it). tracked: the label map's value or name of the
    structure to follow; it must be the value the model follows (its card's ``tracked_label``).
    Time points are the model's own steps (card ``time_step``): ``time_spacing`` labels them.
    """
    cancel = cancel or CancelToken()
    tm = model if isinstance(model, TemporalModel) else TemporalModel.load(model)
    _check_inputs(baseline, labels, steps, method, tm)
    if method == "manifold" and k < 1:
        raise InputError(f"The manifold method needs k >= 1 neighbours (got {k}).")
    if rate is not None and not (np.isfinite(rate) and rate > 0):
        raise InputError(f"The model rate must be a finite number above 0 (got {rate}).")
    if labels is not None:
        _check_tracked(labels, tracked, tm)
    notes: list[str] = []
    data = np.asarray(baseline.data, np.float32)
    lo, hi = np.percentile(data[np.isfinite(data)], [0.5, 99.5])
    scale = float(max(hi - lo, 1e-6))
    norm = np.clip((data - lo) / scale, 0.0, 1.0)
    factor = (baseline.spacing[0] / tm.pixel_mm, baseline.spacing[1] / tm.pixel_mm)
    if abs(factor[0] - 1) > 1e-3 or abs(factor[1] - 1) > 1e-3 or data.shape[1:] != (tm.size, tm.size):
        notes.append(f"the baseline's slices ({data.shape[2]} x {data.shape[1]} px of {baseline.spacing[0]:.2f} x "
                     f"{baseline.spacing[1]:.2f} mm) were resampled to the model's grid ({tm.size} x {tm.size} px of "
                     f"{tm.pixel_mm:.2f} mm) and back")
    if rate is None:  # the bank's speeds are fitted per true time step already
        rate = 1.0 if method == "manifold" else float(tm.card.get("time_rate", 1.0))
    rate = float(rate)
    times = [float(t) * rate for t in range(steps + 1)]  # in model time steps
    out_img = np.repeat(data[None], steps + 1, 0)
    lab0 = None if labels is None else np.asarray(labels.data).astype(np.int64)
    out_lab = np.zeros((steps + 1,) + data.shape, np.uint8)
    slices: list[int] = []
    n = data.shape[0]
    for zi in range(n):
        yield Progress(zi, n, f"slice {zi + 1}/{n}")
        cancel.check()
        x = _to_model(norm[zi], factor, tm.size, "bilinear")
        y = None if lab0 is None else _to_model(lab0[zi].astype(np.float32), factor, tm.size, "nearest").long()
        if y is not None and not (y == tm.tracked).any():
            out_lab[:, zi] = lab0[zi]
            continue
        raw = walk(tm, x, y, times, method, k, refine_steps)  # (T, 1 + K, S, S)
        dec_lab = raw[:, 1:].argmax(1)
        if y is None and not (dec_lab[0] == tm.tracked).any():
            out_lab[:, zi] = _from_model(dec_lab[:1].float(), data.shape[1:], factor, "nearest")[0]
            continue
        slices.append(zi)
        delta = torch.sigmoid(raw[:, :1]) - torch.sigmoid(raw[:1, :1])
        out_lab[:, zi] = _compose_labels(_from_model(dec_lab.float(), data.shape[1:], factor, "nearest"),
                                         None if lab0 is None else lab0[zi], tm.tracked)
        delta = _from_model(delta[:, 0], data.shape[1:], factor, "bilinear") * scale
        if local_margin_mm is not None:
            near = ndimage.binary_dilation((out_lab[:, zi] == tm.tracked).any(0),
                                           iterations=max(1, round(local_margin_mm / min(baseline.spacing[:2]))))
            delta *= near
        out_img[:, zi] += delta
    ml = float(np.prod(baseline.spacing)) / 1000.0
    tracked_ml = [float((out_lab[t] == tm.tracked).sum() * ml) for t in range(steps + 1)]
    meta = {"time_spacing": float(time_spacing), "time_unit": time_unit,
            "times": [i * float(time_spacing) for i in range(steps + 1)], "model": tm.name, "method": method,
            "notes": notes}
    names = {int(k_): v for k_, v in tm.card.get("label_names", {}).items()}
    image = baseline.with_data(out_img, is_label=False, **meta)
    image.metadata.pop("label_names", None)
    lab_vol = baseline.with_data(out_lab, is_label=True, **meta, label_names=names)
    return FollowUps(image, lab_vol, tracked_ml, meta["times"], slices, notes, tm.tracked)


def compare_series(result: FollowUps, true_image: Volume, true_labels: Volume, tracked: int) -> dict[str, np.ndarray]:
    """Score predicted follow-ups against the true series (4D, same grid, frame 0 = baseline).

    Per time point t (arrays of length T): ``dice`` of the tracked structure, ``volume_error`` (relative,
    predicted / true - 1), ``true_ml`` and ``pred_ml``; ``mad_outside`` = mean |follow-up - baseline| in the
    body (label > 0) outside the tracked structure of frames 0 and t, divided by the baseline's 0.5-99.5
    percentile range (so 0.01 = 1 % of the image's intensity range).
    """
    pred, true = np.asarray(result.labels.data) == tracked, np.asarray(true_labels.data) == tracked
    if pred.shape != true.shape or true_image.data.shape != pred.shape:
        raise InputError(f"Predicted series {pred.shape} and true series {true.shape} differ in shape.")
    axes = tuple(range(1, pred.ndim))
    inter, sizes = (pred & true).sum(axes), pred.sum(axes) + true.sum(axes)
    ml = float(np.prod(true_labels.spacing)) / 1000.0
    base = np.asarray(true_image.data[0], np.float32)
    lo, hi = np.percentile(base, [0.5, 99.5])
    body = np.asarray(true_labels.data[0]) > 0
    mad = [float(np.abs(result.image.data[t] - base)[body & ~true[0] & ~true[t] & ~pred[t]].mean() / max(hi - lo, 1e-6))
           for t in range(len(pred))]
    return {"dice": np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), 1.0), "true_ml": true.sum(axes) * ml,
            "pred_ml": pred.sum(axes) * ml, "volume_error": pred.sum(axes) / np.maximum(true.sum(axes), 1) - 1,
            "mad_outside": np.array(mad)}


def _check_tracked(labels: Volume, tracked: int | str | None, tm: TemporalModel) -> None:
    """Refuse a label map whose followed structure is not the model's tracked class (never read it as another)."""
    name = labels.metadata.get("source", "the label map")
    present = label_values(labels)
    value = tm.tracked if tracked is None else resolve_tracked(labels, tracked)
    if value != tm.tracked or value not in present:
        found = f"the structure to follow is label {value}" if value != tm.tracked else \
            f"it has no label {value} (it holds {', '.join(map(str, present)) or 'no foreground'})"
        raise InputError(f"Model '{tm.name}' follows label {tm.tracked} ({tm.tracked_name}), but in {name} {found}: "
                         f"relabel it to {tm.tracked}, or run without a model (the real-scan path follows any label).")


def _check_inputs(baseline: Volume, labels: Volume | None, steps: int, method: str, tm: TemporalModel) -> None:
    name = baseline.metadata.get("source", "the baseline")
    if baseline.is_time_series:
        raise InputError(f"{name} is a time series ({baseline.data.shape[0]} frames): give one 3D baseline volume.")
    if not baseline.is_axis_aligned():
        raise InputError(f"{name} is oblique: resample it to an axis-aligned grid first.")
    if steps < 1 or method not in METHODS:
        raise InputError(f"Need steps >= 1 (got {steps}) and a method among {', '.join(METHODS)} (got {method!r}).")
    finite = np.isfinite(baseline.data)
    if not finite.any():
        raise InputError(f"{name} has no finite intensities.")
    low = float(np.min(baseline.data[finite]))
    trained_ct = tm.modality.upper().startswith("CT")
    if low < -1.0 and not trained_ct:
        raise InputError(f"{name} has negative intensities (min {low:.0f}): it looks like CT in Hounsfield units, "
                         f"but model '{tm.name}' was trained on {tm.modality}. Give a scan of that modality, or run "
                         "without a model (the real-scan path works on any modality).")
    if trained_ct and low > -500.0:
        raise InputError(f"{name} has no air-like values (min {low:.0f}): it does not look like CT in Hounsfield units, "
                         f"but model '{tm.name}' was trained on {tm.modality}. Run without a model for other modalities.")
    if labels is not None and labels.data.shape != baseline.data.shape:
        raise InputError(f"The labels' shape {labels.data.shape} differs from the baseline's {baseline.data.shape}.")


def _to_model(sl: np.ndarray, factor: tuple[float, float], size: int, mode: str) -> torch.Tensor:
    """(y, x) slice -> (1, 1, size, size) on the model's pixel grid (resize by factor, centre crop/pad)."""
    t = torch.as_tensor(sl, dtype=torch.float32)[None, None]
    shape = (max(1, round(sl.shape[0] * factor[1])), max(1, round(sl.shape[1] * factor[0])))
    if shape != tuple(sl.shape):
        t = F.interpolate(t, size=shape, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return _centre(t, (size, size))


def _from_model(t: torch.Tensor, shape: tuple[int, int], factor: tuple[float, float], mode: str) -> np.ndarray:
    """(T, size, size) on the model grid -> (T, *shape) on the slice grid (inverse of :func:`_to_model`)."""
    mid = (max(1, round(shape[0] * factor[1])), max(1, round(shape[1] * factor[0])))
    t = _centre(t[:, None], mid)
    if mid != tuple(shape):
        t = F.interpolate(t, size=shape, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return t[:, 0].numpy()


def _centre(t: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre crop/zero-pad (B, C, H, W) to shape."""
    for axis, n in ((2, shape[0]), (3, shape[1])):
        cur = t.shape[axis]
        if cur > n:
            t = t.narrow(axis, (cur - n) // 2, n)
        elif cur < n:
            pad = [0, 0, 0, 0]
            i = 0 if axis == 3 else 2
            pad[i], pad[i + 1] = (n - cur) // 2, n - cur - (n - cur) // 2
            t = F.pad(t, pad)
    return t


def _compose_labels(decoded: np.ndarray, base: np.ndarray | None, tracked: int) -> np.ndarray:
    """(T, y, x) decoded labels -> labels per time. With the baseline's labels: frame 0 = baseline, later
    frames = the baseline's outside the tracked structure, the decoded tracked structure at t, decoded
    labels where the structure has left."""
    if base is None:
        return decoded.astype(np.uint8)
    out = np.repeat(base[None], len(decoded), 0)
    left = (base == tracked)[None] & (decoded != tracked)
    out[left] = decoded[left]
    out[decoded == tracked] = tracked
    out[0] = base  # the baseline frame keeps its own labels
    return out.astype(np.uint8)
