"""What a diffusion sample is given and where it lands: masks on the model's grid, named conditioning
values, MAISI's label map on the bundle's output grid, and the geometry of the result.

Axes: napari-medgen arrays are (z, y, x); a MONAI bundle's network works in MONAI's (x, y[, z]) order
(``model.extra["array_axes"] == "xyz"``), RAS for 3D. Masks are reversed into the network's order and
results back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.volume import Volume
from ..models.bundle_config import ConditionField
from ..models.diffusion import DiffusionModel

RAS = np.diag([-1.0, -1.0, 1.0])  # direction (LPS) of an array whose axes grow to the right, anterior, superior


def is_xyz(model: DiffusionModel) -> bool:
    return model.extra.get("array_axes") == "xyz"


def to_network_axes(model: DiffusionModel, arr: np.ndarray | torch.Tensor, lead: int = 1):
    """(lead..., z, y, x) or (lead..., y, x) -> the network's axis order (reversed for bundles)."""
    if not is_xyz(model):
        return arr
    axes = tuple(range(lead)) + tuple(range(arr.ndim - 1, lead - 1, -1))
    return arr.transpose(axes) if isinstance(arr, np.ndarray) else arr.permute(axes)


@dataclass
class Grid:
    """Where samples (n, z, y, x) land: ``shape`` (z, y, x) of the output, spacing/origin (x, y, z) mm and
    direction (LPS). Samples of another shape are resized (linear) to it."""

    shape: tuple[int, int, int] | None
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray | None = None

    def volume(self, arr: np.ndarray, **meta: object) -> Volume:
        if self.shape is not None and tuple(arr.shape[1:]) != tuple(self.shape):
            t = torch.from_numpy(arr)[:, None]
            size = self.shape if self.shape[0] > 1 else self.shape[1:]
            t = F.interpolate(t if self.shape[0] > 1 else t[:, :, 0], size=size, mode="trilinear" if self.shape[0] > 1
                              else "bilinear", align_corners=False)
            arr = (t[:, 0] if self.shape[0] > 1 else t[:, 0, None]).numpy()
        direction = np.eye(3) if self.direction is None else self.direction
        return Volume(np.ascontiguousarray(arr, dtype=np.float32), self.spacing, self.origin, direction, metadata=meta)


def default_grid(model: DiffusionModel) -> Grid:
    """No mask: the model's voxel size at origin 0 (RAS directions for 3D bundles)."""
    return Grid(None, model.spacing, direction=RAS if is_xyz(model) and model.spatial_dims == 3 else None)


def mask_slice(mask: Volume, index: int | None) -> int:
    """The z index a 2D model samples from a 3D mask: ``index``, else the middle slice."""
    depth = mask.spatial_shape[0]
    k = depth // 2 if index is None else int(index)
    if not 0 <= k < depth:
        raise InputError(f"Slice {k} is outside the mask, which has {depth} slices.")
    return k


def mask_inputs(model: DiffusionModel, mask: Volume, index: int | None = None) -> tuple[torch.Tensor, Grid]:
    """Label map (z, y, x), or a series (t, z, y, x), -> one-hot (1 or t, label_nc, *model.shape) resampled
    (nearest neighbour) to the model's grid, and the grid of the output (the mask's; for a 2D model, the
    slice ``index`` of a 3D mask, default the middle one). InputError when the model is not conditioned or
    a value is not a class of the model."""
    where = mask.metadata.get("source", "the mask")
    if not model.label_nc:
        raise InputError(f"Model '{model.source}' is not mask-conditioned: sample it without a mask.")
    frames = mask.data if mask.is_time_series else mask.data[None]
    origin = np.asarray(mask.origin, float)
    if model.spatial_dims == 2:
        k = mask_slice(mask, index)
        frames = frames[:, k]
        origin = origin + mask.direction[:, 2] * mask.spacing[2] * k
        out_shape = (1, *frames.shape[1:])
    else:
        out_shape = tuple(frames.shape[1:])
    if not np.issubdtype(frames.dtype, np.integer) and not np.array_equal(frames, np.round(frames)):
        raise InputError(f"{where}: the mask holds non-integer values; it must be a label map.")
    classes = np.unique(frames).astype(int)
    bad = [int(c) for c in classes if c < 0 or c >= model.label_nc]
    if bad:
        names = ", ".join(f"{k} {v}" for k, v in (model.label_names or {}).items())
        raise InputError(f"{where}: label value(s) {bad} are not classes of the model "
                         f"(it knows 0..{model.label_nc - 1}{': ' + names if names else ''}).")
    lab = torch.from_numpy(np.ascontiguousarray(to_network_axes(model, frames)).astype(np.int64))
    if tuple(lab.shape[1:]) != tuple(model.shape):
        lab = F.interpolate(lab[:, None].float(), size=tuple(model.shape), mode="nearest-exact")[:, 0].long()
    seg = F.one_hot(lab, model.label_nc).movedim(-1, 1).float()
    return seg, Grid(out_shape, mask.spacing, tuple(origin), mask.direction)


def condition_values(fields: Sequence[ConditionField], given: Mapping[str, object] | Sequence[float] | str | None,
                     source: str) -> dict[str, float | str]:
    """{field key: value} from ``given``: "key=value,..." or a mapping (keys or labels, any case; missing
    fields take their defaults), or plain numbers in field order. InputError for unknown names, values
    outside a field's range or choices."""
    if isinstance(given, str) and "=" in given:
        pairs = [p.split("=", 1) for p in given.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise InputError(f"Conditioning '{given}' must be name=value pairs separated by commas.")
        given = {k.strip(): v.strip() for k, v in pairs}
    if given is None or isinstance(given, Mapping):
        named = {k.lower(): v for k, v in (given or {}).items()}
        lookup = {n: f for f in fields for n in (f.key.lower(), f.label.lower())}
        unknown = [k for k in named if k not in lookup]
        if unknown:
            raise InputError(f"Model '{source}' has no conditioning value named {', '.join(map(repr, unknown))}; it "
                             f"takes {', '.join(f'{f.key} ({f.label})' for f in fields) or 'none'}.")
        values = {f.key: f.default for f in fields}
        values.update({lookup[k].key: v for k, v in named.items()})
    else:
        raw = given.replace(";", ",").split(",") if isinstance(given, str) else list(given)
        raw = [v for v in raw if str(v).strip()]
        if len(raw) != len(fields):
            raise InputError(f"Model '{source}' is conditioned on {len(fields)} values "
                             f"({', '.join(f.label for f in fields)}); got {len(raw)}.")
        values = {f.key: v for f, v in zip(fields, raw)}
    return {f.key: _checked(f, values[f.key], source) for f in fields}


def _checked(f: ConditionField, value: object, source: str) -> float | str:
    if f.choices:
        if str(value) not in f.choices:
            raise InputError(f"'{f.key}' of model '{source}' must be one of {', '.join(f.choices)}, got '{value}'.")
        return str(value)
    if str(value) in f.special:
        return str(value)
    words = f" or one of {', '.join(f.special)}" if f.special else ""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"'{f.key}' ({f.label}) of model '{source}' must be a number{words}, got '{value}'.") from None
    low = -np.inf if f.low is None else f.low
    high = np.inf if f.high is None else f.high
    if not np.isfinite(number) or not low <= number <= high:
        raise InputError(f"'{f.key}' ({f.label}) of model '{source}' must lie in [{f.low}, {f.high}]{words}, got {value}.")
    return number


def label_grid(mask: Volume, spacing: tuple[float, float, float], size_xyz: Sequence[int]) -> tuple[np.ndarray, Grid]:
    """A label map resampled (nearest neighbour) onto an RAS grid of ``size_xyz`` voxels of ``spacing`` (x, y, z)
    mm centred on the mask's centre: the labels (X, Y, Z) in MONAI's order, and that grid (output (z, y, x))."""
    if mask.is_time_series:
        raise InputError("MAISI takes one label map, not a series.")
    img = sitk.GetImageFromArray(np.ascontiguousarray(mask.data).astype(np.int16 if mask.data.max() < 2**15 else np.int32))
    img.SetSpacing(mask.spacing)
    img.SetOrigin(mask.origin)
    img.SetDirection(mask.direction.ravel().tolist())
    centre = mask.index_to_physical(np.array([(np.array(mask.spatial_shape[::-1]) - 1) / 2.0]))[0]
    half = RAS @ (np.asarray(spacing) * (np.asarray(size_xyz) - 1) / 2.0)
    origin = tuple(centre - half)
    res = sitk.Resample(img, [int(s) for s in size_xyz], sitk.Transform(), sitk.sitkNearestNeighbor, origin,
                        tuple(float(s) for s in spacing), RAS.ravel().tolist(), 0)
    zyx = sitk.GetArrayFromImage(res)
    return np.ascontiguousarray(zyx.transpose(2, 1, 0)), Grid(tuple(zyx.shape), tuple(spacing), origin, RAS)
