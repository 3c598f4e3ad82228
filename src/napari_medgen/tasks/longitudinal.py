"""Synthetic follow-up scans from a baseline (family "temporal", see :mod:`..models.temporal`).

:func:`predict_followups` inverts each tumour-bearing axial slice of the baseline into the model's latent
space (encoder, then ``refine_steps`` Adam steps on the latent against the slice and, when given, its
labels) and walks it along time: ``method="direction"`` uses the learned time direction, ``"manifold"``
the mean latent step of the ``k`` nearest training progressions. Each follow-up image is
``baseline + (decode(z_t) - decode(z_0))`` (in the baseline's intensity units), by default only within
``local_margin_mm`` of the tracked structure, so what the model does not change stays exactly as it was; the labels at t take the tracked structure (the card's
``tracked_label``, e.g. the tumour) from the decoded labels at t. Slices without the tracked structure
are copied unchanged.

Input checks: 3D (z, y, x) axis-aligned volume; negative intensities (e.g. CT in HU) are refused for a
model trained on MR magnitude; a slice grid other than the model's (pixel size, size) is resampled
in-plane to the model's grid and back, with a note in the result's ``metadata["notes"]``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError, ModelError
from ..io.volume import Volume
from ..models.families import load_model
from ..models.store import load_card
from ..progress import CancelToken, Progress, run_to_completion

METHODS = ("direction", "manifold")


@dataclass
class TemporalModel:
    """A loaded "temporal" model: modules, card and the facts the task needs from it."""

    modules: dict[str, torch.nn.Module]
    card: dict[str, Any]
    name: str = ""

    @classmethod
    def load(cls, path: str | Path) -> TemporalModel:
        family = load_card(path)["family"]
        if family != "temporal":
            raise ModelError(f"Model '{path}' is a '{family}' model; synthetic follow-ups need a 'temporal' model.")
        modules, card = load_model(path)
        return cls(modules, card, Path(path).name.removesuffix(".json").removesuffix(".safetensors"))

    @property
    def net(self) -> torch.nn.Module:
        return self.modules["model"]

    @property
    def size(self) -> int:
        return int(self.card["shape"][0])

    @property
    def pixel_mm(self) -> float:
        return float(self.card["pixel_mm"])

    @property
    def tracked(self) -> int:
        return int(self.card.get("tracked_label", 7))

    @property
    def tracked_name(self) -> str:
        return str(self.card.get("label_names", {}).get(str(self.tracked), f"label {self.tracked}"))


@dataclass
class FollowUps:
    """image/labels: 4D (t, z, y, x) Volumes with the baseline's geometry, frame 0 = baseline.

    tracked_ml: volume of the tracked structure per time point (ml); times: time of each frame in
    ``time_unit``; slices: indices of the slices the model changed.
    """

    image: Volume
    labels: Volume
    tracked_ml: list[float]
    times: list[float]
    slices: list[int]
    notes: list[str] = field(default_factory=list)


def predict_followups(baseline: Volume, model: str | Path | TemporalModel, *, labels: Volume | None = None,
                      steps: int = 5, time_spacing: float = 3.0, time_unit: str = "months", method: str = "direction",
                      k: int = 5, rate: float | None = None, refine_steps: int = 20, local_margin_mm: float | None = 10.0,
                      cancel: CancelToken | None = None
                      ) -> Generator[Progress, None, FollowUps]:
    """Predict ``steps`` follow-ups of ``baseline`` (3D, MR magnitude), ``time_spacing`` ``time_unit`` apart.

    One time point = ``rate`` model time steps (card ``time_step``); None = the card's calibrated
    ``time_rate`` (see :func:`calibrate_rate`) for the learned direction, 1 for "manifold" (whose
    progressions' speeds are fitted per true time step). labels: the baseline's
    label map (same grid); without it the tracked structure is found in the decoded labels.
    local_margin_mm: change the image only within this distance (in-plane) of the tracked structure at
    any time point (None: wherever the model changes it).
    """
    cancel = cancel or CancelToken()
    tm = model if isinstance(model, TemporalModel) else TemporalModel.load(model)
    _check_inputs(baseline, labels, steps, method)
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
        raw = _walk(tm, x, y, times, method, k, refine_steps)  # (T, 1 + K, S, S)
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
    return FollowUps(image, lab_vol, tracked_ml, meta["times"], slices, notes)


def calibrate_rate(model: TemporalModel, series: list[tuple[Volume, Volume]], steps: int = 2) -> dict[str, Any]:
    """Model time steps per true time step, fitted on calibration series (never the evaluation ones).

    series: (image, labels) 4D pairs (t, z, y, x), frame 0 = baseline, at least ``steps`` + 1 frames.
    Follow-ups predicted at rate 1 (baseline labels given); the tracked structure's log volume
    ratio to the baseline, summed over subjects and t = 1..steps, true over predicted, is the rate
    that makes the model's change per time point match the data's, if log volume is linear in
    model time. Returns {"time_rate", "true_log_ratio", "predicted_log_ratio", "subjects"}.
    """
    true_log, pred_log = np.zeros(steps), np.zeros(steps)
    for image, labels in series:
        result = run_to_completion(predict_followups(image.frame(0), model, labels=labels.frame(0), steps=steps,
                                                     rate=1.0))
        scores = compare_series(result, image.with_data(image.data[:steps + 1]),
                                labels.with_data(labels.data[:steps + 1]), model.tracked)
        true_log += np.log(np.maximum(scores["true_ml"][1:], 1e-9) / max(scores["true_ml"][0], 1e-9))
        pred_log += np.log(np.maximum(scores["pred_ml"][1:], 1e-9) / max(scores["pred_ml"][0], 1e-9))
    if not np.all(pred_log < 0) and not np.all(pred_log > 0):
        raise ModelError(f"Model '{model.name}' does not change the tracked structure consistently; cannot calibrate.")
    return {"time_rate": float(true_log.sum() / pred_log.sum()), "true_log_ratio": (true_log / len(series)).tolist(),
            "predicted_log_ratio": (pred_log / len(series)).tolist(), "subjects": len(series)}


def difference(series: Volume, t: int) -> Volume:
    """Frame t minus frame 0 of a 4D image series: 3D float32 Volume (same geometry)."""
    if not series.is_time_series or not 0 <= t < series.data.shape[0]:
        raise InputError(f"time point {t} is not in the series ({series.data.shape[0] if series.is_time_series else 1} frames)")
    diff = series.data[t].astype(np.float32) - series.data[0].astype(np.float32)
    return Volume(diff, series.spacing, series.origin, series.direction, False, {"time_point": t})


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


def export_series(result: FollowUps, out_dir: str | Path, *, single_file: bool = False, suffix: str = ".nii.gz"
                  ) -> list[Path]:
    """Write the series to ``out_dir``: one 4D file per kind (single_file) or one 3D file per time point."""
    from ..io.writers import write_volume

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if single_file:
        return [write_volume(result.image, out / f"followups{suffix}"),
                write_volume(result.labels, out / f"followups_labels{suffix}")]
    paths = []
    for t in range(result.image.data.shape[0]):
        paths.append(write_volume(result.image.frame(t), out / f"followup_t{t:02d}{suffix}"))
        paths.append(write_volume(result.labels.frame(t), out / f"followup_t{t:02d}_labels{suffix}"))
    return paths


def _check_inputs(baseline: Volume, labels: Volume | None, steps: int, method: str) -> None:
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
    if low < -1.0:
        raise InputError(f"{name} has negative intensities (min {low:.0f}): it looks like CT in Hounsfield units, "
                         "but this model was trained on MR magnitude images (>= 0). Give an MR baseline.")
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


def invert(tm: TemporalModel, x: torch.Tensor, y: torch.Tensor | None, refine_steps: int
           ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Latent z (1, C, S/4, S/4) and skips of slice x (1, 1, S, S): the encoder's, then ``refine_steps``
    Adam steps on z against x (and its labels y (1, S, S), when given)."""
    net = tm.net
    with torch.no_grad():
        z0, skips = net.encode(x)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(refine_steps):
        with torch.enable_grad():
            raw = net.decode(z, skips)
            loss = F.l1_loss(torch.sigmoid(raw[:, :1]), x)
            if y is not None:
                loss = loss + F.cross_entropy(raw[:, 1:], y[:, 0] if y.ndim == 4 else y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return z.detach(), skips


@torch.no_grad()
def _decode_at(tm: TemporalModel, z: torch.Tensor, skips: tuple[torch.Tensor, ...], times: list[float],
               direction: torch.Tensor | None = None) -> torch.Tensor:
    """Decode z moved to each of ``times`` along ``direction`` (default: the learned one): (T, 1 + K, S, S) raw."""
    n = len(times)
    zt = tm.net.move(z.repeat(n, 1, 1, 1), torch.tensor(times), None if direction is None else direction.repeat(n, 1))
    return tm.net.decode(zt, tuple(s.repeat(n, 1, 1, 1) for s in skips))


def _walk(tm: TemporalModel, x: torch.Tensor, y: torch.Tensor | None, times: list[float], method: str, k: int,
          refine_steps: int) -> torch.Tensor:
    """Invert slice x (1, 1, S, S) (labels y (1, S, S) optional) and decode it at ``times``: (T, 1 + K, S, S) raw."""
    z, skips = invert(tm, x, y, refine_steps)
    direction = None
    if method == "manifold":
        if "bank" not in tm.modules:
            raise ModelError("This model has no bank of training progressions: use method 'direction'.")
        with torch.no_grad():
            direction = tm.modules["bank"].neighbour_step(z.mean((2, 3)), k)
    return _decode_at(tm, z, skips, times, direction)


SPEED_GRID = tuple(2 ** (i / 4) for i in range(-8, 9))  # candidate speeds 0.25..4 (model steps per true step), x1.19 apart


def progression_speed(tm: TemporalModel, images: torch.Tensor, labels: torch.Tensor, refine_steps: int = 20
                      ) -> tuple[torch.Tensor, float]:
    """One known progression: its baseline's pooled latent (C,) and its speed along the learned direction.

    images (T, S, S) in [0, 1] and labels (T, S, S) of one training series, frame 0 = baseline. The
    baseline is inverted as :func:`predict_followups` inverts it; the speed is the value in
    SPEED_GRID whose walk z0 + speed * t * direction best matches the series' tracked area over
    t = 1..T-1 (least squares on log areas). A series without the tracked structure gets speed 1.
    """
    z, skips = invert(tm, images[:1, None].float(), labels[:1].long(), refine_steps)
    key = z.mean((2, 3))[0]
    true_area = (labels[1:] == tm.tracked).flatten(1).sum(1).float()
    if not (labels[0] == tm.tracked).any() or not (true_area > 0).all():
        return key, 1.0
    steps = torch.arange(1, len(labels), dtype=torch.float32)
    times = [float(v * t) for v in SPEED_GRID for t in steps]
    raw = _decode_at(tm, z, skips, times)
    area = (raw[:, 1:].argmax(1) == tm.tracked).flatten(1).sum(1).float().reshape(len(SPEED_GRID), -1)
    err = ((torch.log(area + 1) - torch.log(true_area + 1)[None]) ** 2).sum(1)
    return key, float(SPEED_GRID[int(err.argmin())])


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
