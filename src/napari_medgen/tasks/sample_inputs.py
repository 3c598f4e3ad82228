"""What a diffusion sample is given and where it lands: masks on the model's grid, named conditioning
values, MAISI's label map on the bundle's output grid, and the geometry of the result.

Axes: napari-medgen arrays are (z, y, x); a MONAI bundle's network works in MONAI's (x, y[, z]) order
(``model.extra["array_axes"] == "xyz"``), RAS for 3D. Masks are reversed into the network's order and
results back.

A mask's values mean the model's classes only as :mod:`..data.label_mapping` decides (names, 0 as
background, ``VALUE=CLASS`` specs, equal numbers only when confirmed with ``identity``), for MAISI
(:mod:`.sample_maisi`) as for every other mask-conditioned model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..data import label_mapping
from ..data.label_mapping import LabelMapping
from ..errors import InputError, MedgenError
from ..io.volume import Volume
from ..models.bundle_config import ConditionField
from ..models.diffusion import DiffusionModel
from ..models.store import load_card

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


def mask_inputs(model: DiffusionModel, mask: Volume, index: int | None = None, label_map: Sequence[str] = ()
                ) -> tuple[torch.Tensor, Grid, dict[str, object]]:
    """Label map (z, y, x), or a series (t, z, y, x), -> one-hot (1 or t, label_nc, *model.shape) of the model's
    classes (:func:`mask_classes` with ``label_map``) resampled (nearest neighbour) to the model's grid, the grid
    of the output (the mask's; for a 2D model, the slice ``index`` of a 3D mask, default the middle one) and
    metadata for the result (``notes`` on values that took another class number). InputError when the model is
    not conditioned or a value has no class."""
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
    classes, meta = mask_classes(model, mask, frames, label_map)
    lab = torch.from_numpy(np.ascontiguousarray(to_network_axes(model, classes)).astype(np.int64))
    if tuple(lab.shape[1:]) != tuple(model.shape):
        lab = F.interpolate(lab[:, None].float(), size=tuple(model.shape), mode="nearest-exact")[:, 0].long()
    seg = F.one_hot(lab, model.label_nc).movedim(-1, 1).float()
    return seg, Grid(out_shape, mask.spacing, tuple(origin), mask.direction), meta


def mask_classes(model: DiffusionModel, mask: Volume, data: np.ndarray, specs: Sequence[str] = ()
                 ) -> tuple[np.ndarray, dict[str, object]]:
    """``data`` (the mask's values, any shape) as the model's classes (same shape) by the rules of
    :func:`..data.label_mapping.resolve` (the mask's names vs the card's ``label_names``; ``specs``:
    "VALUE=CLASS" or "identity"), and the result's notes. InputError naming the mask, the unmapped values
    and the model's classes."""
    what = f"Mask '{mask.metadata['source']}'" if mask.metadata.get("source") else "The mask"
    model_names, n = dict(model.label_names or {}), int(model.label_nc or 0)
    values, names = mask_labels(mask, what, data)
    try:
        explicit, identity = label_mapping.parse_map(specs, model_names, n)
        mapping = label_mapping.resolve(values, names, model_names, n, explicit, identity, what=what,
                                        model=f"model '{model.source}'")
    except InputError as exc:
        if model_names:
            raise
        raise InputError(f"{exc} Model '{model.source}' names none of its classes (its card has no label_names), so "
                         "only --map VALUE=CLASS or --map identity (the dock: the label table) can map values.") from None
    return mapping.apply(data, what, model_names, n), mapping_notes(mapping, names, model_names, "the model's")


def mask_labels(mask: Volume, what: str, data: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """The distinct values of ``data`` (default the mask's; InputError for a non-label array) and the names
    the mask's file or layer gives them ({value: name})."""
    values = label_mapping.label_values(mask.data if data is None else data, what)
    return values, label_mapping.user_label_names(mask.metadata)


def mapping_notes(mapping: LabelMapping, user_names: Mapping[int, str], model_names: Mapping[int, str],
                  whose: str) -> dict[str, object]:
    """The result's ``notes`` naming the values that took another class number ({} when none did)."""
    changed = LabelMapping({v: c for v, c in mapping.table.items() if v != c})
    if not changed.table:
        return {}
    return {"notes": [f"label values as {whose} classes: {changed.describe(user_names, model_names)}"]}


def placeholder(model: str | Path, n: int, mask: Volume | None = None, slice_index: int | None = None) -> Volume | None:
    """Zeros shaped and placed like the samples ``sample(model, n=n, mask=mask)`` will return, read
    from the model card alone (no weights); None for bundles and cards that give no shape.

    A dock shows it as the output layer before the job starts, so the layer (a costly napari
    operation) is made while the CPU is free and the job's previews only update it.
    """
    path = Path(model)
    if path.is_dir():
        return None
    try:
        card = load_card(path)
    except MedgenError:
        return None  # the job itself reports the problem
    shape = card.get("shape")
    if not isinstance(shape, list) or len(shape) not in (2, 3):
        return None
    zyx = (1, *shape) if len(shape) == 2 else tuple(shape)
    grid = Grid(zyx, tuple(card.get("voxel_mm") or (1.0, 1.0, 1.0)))
    if mask is not None:
        if mask.is_time_series:
            n = len(mask.data)
        k = mask_slice(mask, slice_index) if len(shape) == 2 else 0
        origin = np.asarray(mask.origin) + mask.direction[:, 2] * mask.spacing[2] * k
        zyx = (1, *mask.spatial_shape[1:]) if len(shape) == 2 else mask.spatial_shape
        grid = Grid(zyx, mask.spacing, tuple(origin), mask.direction)
    return grid.volume(np.zeros((n, *zyx), np.float32), source=str(path), stack_axis="sample", time_spacing=1.0)


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
