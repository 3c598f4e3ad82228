"""Label-map deformations for anatomical variety: Volume in -> labels Volume out, same geometry.

Geometric methods (any label map, 3D or 4D; a 4D series gets the same transform on every frame):

* ``elastic``: a smooth random displacement field (Gaussian-filtered white noise, ``sigma_mm``
  smoothness, ``magnitude_mm`` largest displacement), nearest-neighbour resampling, seeded.
* ``dilate`` / ``erode``: grow or shrink one label by ``radius`` voxels (``unit="voxel"``) or
  millimetres (``unit="mm"``, honouring anisotropic spacing). Eroded voxels take the nearest
  other label.
* ``affine``: rotation in the axial (y, x) plane by ``rotation_deg`` and scaling by ``scale``
  about the volume centre, in physical millimetres, nearest-neighbour.

With a label VAE (models/label_vae.py, 2D slices):

* ``vae-sample``: ``n`` new plausible slices decoded from random latents (seeded).
* ``vae-interpolate``: encode two subjects slice by slice, interpolate the latents at ``t``
  (spherical or linear), decode. The subjects' label values become the VAE's classes through
  :mod:`..data.label_mapping` (proposed from label names; ``label_map`` specs ``VALUE=CLASS`` or
  ``identity`` as the CLI's ``--map``); the result holds the VAE's classes, named in its metadata.

:func:`deform` is the generator that both the widget and ``medgen deform`` run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..data import label_mapping
from ..errors import InputError
from ..io.volume import Volume
from ..progress import CancelToken, Progress

METHODS = ("elastic", "dilate", "erode", "affine", "vae-sample", "vae-interpolate")


def _check_labels(labels: Volume) -> np.ndarray:
    data = np.asarray(labels.data)
    if not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise InputError(f"Label deformation needs an integer label map; got {data.dtype} values that are not "
                             f"whole numbers (is this an image rather than labels?)")
        data = data.astype(np.int32)
    if data.size and data.min() < 0:
        raise InputError(f"Label maps must not hold negative values (found {int(data.min())}).")
    return data


def _per_frame(labels: Volume, fn: Callable[[np.ndarray], np.ndarray]) -> Volume:
    data = _check_labels(labels)
    out = np.stack([fn(f) for f in data]) if labels.is_time_series else fn(data)
    return labels.with_data(out.astype(data.dtype, copy=False), is_label=True)


def _spacing_zyx(labels: Volume) -> np.ndarray:
    return np.asarray(labels.spacing[::-1], dtype=float)


def elastic(labels: Volume, *, sigma_mm: float = 20.0, magnitude_mm: float = 6.0, seed: int = 0) -> Volume:
    """Smooth random deformation of a (z, y, x) or (t, z, y, x) label map, nearest-neighbour.

    sigma_mm: smoothness (Gaussian sigma of the displacement field, mm); magnitude_mm: the largest
    displacement (mm). Axes with a single voxel (2D slices) are not displaced.
    """
    if sigma_mm <= 0 or magnitude_mm < 0:
        raise InputError(f"elastic needs sigma_mm > 0 and magnitude_mm >= 0 (got {sigma_mm}, {magnitude_mm}).")
    shape = labels.spatial_shape
    sp = _spacing_zyx(labels)
    rng = np.random.default_rng(seed)
    fields = []
    for ax in range(3):
        if shape[ax] == 1:
            fields.append(np.zeros(shape))
            continue
        f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma_mm / sp, mode="reflect")
        peak = np.abs(f).max()
        fields.append(f / peak * magnitude_mm / sp[ax] if peak > 0 else f)
    grid = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    coords = np.stack([g + d for g, d in zip(grid, fields)])
    note = f"elastic deformation (sigma {sigma_mm} mm, magnitude {magnitude_mm} mm, seed {seed})"
    out = _per_frame(labels, lambda a: ndimage.map_coordinates(a, coords, order=0, mode="nearest"))
    return _noted(out, note)


def _grow_shrink(labels: Volume, label: int, radius: float, unit: str, grow: bool) -> Volume:
    if unit not in ("voxel", "mm"):
        raise InputError(f"unit must be 'voxel' or 'mm', not {unit!r}.")
    if radius < 0:
        raise InputError(f"radius must be >= 0 (got {radius}).")
    data = _check_labels(labels)
    if label <= 0 or not np.any(data == label):
        present = sorted(int(v) for v in np.unique(data) if v > 0)
        raise InputError(f"Label {label} is not in this label map (labels present: {present}).")
    sampling = _spacing_zyx(labels) if unit == "mm" else np.ones(3)

    def op(a: np.ndarray) -> np.ndarray:
        mask = a == label
        out = a.copy()
        if grow:
            out[ndimage.distance_transform_edt(~mask, sampling=sampling) <= radius] = label
        else:
            dist, idx = ndimage.distance_transform_edt(mask, sampling=sampling, return_indices=True)
            shrink = mask & (dist <= radius)
            out[shrink] = a[tuple(i[shrink] for i in idx)]
        return out

    verb = "dilated" if grow else "eroded"
    return _noted(_per_frame(labels, op), f"label {label} {verb} by {radius} {unit}")


def dilate(labels: Volume, label: int, radius: float = 1, unit: str = "voxel") -> Volume:
    """Grow ``label`` by ``radius`` (voxels, or mm with ``unit="mm"``) over its neighbours."""
    return _grow_shrink(labels, label, radius, unit, grow=True)


def erode(labels: Volume, label: int, radius: float = 1, unit: str = "voxel") -> Volume:
    """Shrink ``label`` by ``radius``; freed voxels take the nearest other label."""
    return _grow_shrink(labels, label, radius, unit, grow=False)


def affine(labels: Volume, *, rotation_deg: float = 0.0, scale: float = 1.0) -> Volume:
    """Rotate in the axial (y, x) plane and scale about the volume centre (physical mm), nearest."""
    if scale <= 0:
        raise InputError(f"scale must be > 0 (got {scale}).")
    th = np.deg2rad(rotation_deg)
    fwd = np.eye(3) * scale  # physical (z, y, x) mm, about the centre
    fwd[1:, 1:] = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    sp = _spacing_zyx(labels)
    inv_vox = np.diag(1 / sp) @ np.linalg.inv(fwd) @ np.diag(sp)  # output voxel -> input voxel
    centre = (np.asarray(labels.spatial_shape, dtype=float) - 1) / 2
    offset = centre - inv_vox @ centre

    def op(a: np.ndarray) -> np.ndarray:
        return ndimage.affine_transform(a, inv_vox, offset=offset, order=0, mode="constant", cval=0)

    return _noted(_per_frame(labels, op), f"rotated {rotation_deg} deg, scaled x{scale}")


def _noted(vol: Volume, note: str) -> Volume:
    history = list(vol.metadata.get("deformations", []))
    vol.metadata = {**vol.metadata, "deformations": history + [note]}
    return vol


def _vae(model: Any, device: str):
    from ..models.label_vae import LabelVAE

    if isinstance(model, LabelVAE):
        return model
    if model is None:
        raise InputError("This method needs a label VAE model (--model / the model field).")
    return LabelVAE(Path(model), device=device)


def vae_sample(model: Any, *, n: int = 8, seed: int = 0, like: Volume | None = None, device: str = "auto",
               cancel: CancelToken | None = None) -> Generator[Progress, None, Volume]:
    """Decode ``n`` random latents into new label slices (n, y, x) at the model's slice shape.

    like: a label Volume whose spacing/origin/direction/label names the result takes (else the
    model card's spacing).
    """
    vae = _vae(model, device)
    z = vae.random_latents(n, seed)
    out = yield from _decode_batches(vae, z, cancel, "sampling")
    spacing = like.spacing if like is not None else tuple(vae.card.get("voxel_mm") or (1.0, 1.0, 1.0))
    base = like if like is not None else Volume(np.zeros((1, 1, 1), np.uint8), spacing, is_label=True)
    vol = Volume(out, base.spacing, base.origin, base.direction, True,
                 {**base.metadata, "label_names": vae.label_names})
    return _noted(vol, f"label VAE sample (n {n}, seed {seed})")


def vae_interpolate(model: Any, a: Volume, b: Volume, *, t: float = 0.5, spherical: bool = True,
                    label_map: Sequence[str] = (), device: str = "auto",
                    cancel: CancelToken | None = None) -> Generator[Progress, None, Volume]:
    """Interpolate two label maps of the same shape slice by slice in the VAE latent space.

    t: 0 gives (the VAE's reconstruction of) ``a``, 1 of ``b``. label_map: ``VALUE=CLASS`` /
    ``identity`` specs for both subjects (see :func:`..data.label_mapping.parse_map`). Result:
    ``a``'s geometry, the VAE's classes (``metadata["label_names"]``).
    """
    if a.spatial_shape != b.spatial_shape or a.is_time_series or b.is_time_series:
        raise InputError(f"Interpolation needs two 3D label maps of the same shape (got {a.data.shape} "
                         f"and {b.data.shape}).")
    vae = _vae(model, device)
    explicit, identity = label_mapping.parse_map(label_map, vae.label_names, vae.n_classes)
    za = vae.encode(vae.check(_vae_classes(vae, a, "Subject A", explicit, identity)))
    zb = vae.encode(vae.check(_vae_classes(vae, b, "Subject B", explicit, identity)))
    z = slerp(za, zb, t) if spherical else (1 - t) * za + t * zb
    out = yield from _decode_batches(vae, z, cancel, "interpolating", a.spatial_shape[1:])
    vol = a.with_data(out, is_label=True, label_names=dict(vae.label_names))
    return _noted(vol, f"label VAE interpolation (t {t}, {'slerp' if spherical else 'lerp'})")


def _vae_classes(vae: Any, labels: Volume, what: str, explicit: dict[int, int], identity: bool) -> np.ndarray:
    """A subject's label values as the VAE's classes (InputError naming both sides where one has none)."""
    data = _check_labels(labels)
    mapping = label_mapping.resolve(label_mapping.label_values(data, what),
                                    label_mapping.user_label_names(labels.metadata), vae.label_names,
                                    vae.n_classes, explicit, identity, what=what, model="the label VAE")
    return mapping.apply(data, what, vae.label_names, vae.n_classes)


def _decode_batches(vae: Any, z: np.ndarray, cancel: CancelToken | None, what: str,
                    out_shape: tuple[int, int] | None = None, batch: int = 16) -> Generator[Progress, None, np.ndarray]:
    parts = []
    for i in range(0, len(z), batch):
        if cancel is not None:
            cancel.check()
        parts.append(vae.decode(z[i:i + batch], out_shape))
        yield Progress(min(i + batch, len(z)), len(z), f"{what}: slice {min(i + batch, len(z))}/{len(z)}")
    return np.concatenate(parts)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation row by row of (n, d) latents (linear where a and b are parallel)."""
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    cos = np.clip(np.sum(a * b, axis=-1, keepdims=True) / np.maximum(na * nb, 1e-12), -1, 1)
    om = np.arccos(cos)
    so = np.sin(om)
    lin = (1 - t) * a + t * b
    with np.errstate(invalid="ignore", divide="ignore"):
        sph = (np.sin((1 - t) * om) * a + np.sin(t * om) * b) / so
    return np.where(so > 1e-6, sph, lin)


def deform(labels: Volume | None, method: str, *, seed: int = 0, cancel: CancelToken | None = None,
           **params: Any) -> Generator[Progress, None, Volume]:
    """Run one deformation ``method`` (see METHODS) with its keyword parameters; returns a labels Volume.

    Geometric methods: labels is the input. vae-sample: labels (optional) gives the geometry;
    params model, n. vae-interpolate: labels is subject A; params model, other (Volume B), t.
    """
    if method not in METHODS:
        raise InputError(f"Unknown deformation method {method!r}; choose one of {', '.join(METHODS)}.")
    if labels is None and method != "vae-sample":
        raise InputError(f"Method {method!r} needs an input label map.")
    yield Progress(0, 1, f"{method}...")
    if cancel is not None:
        cancel.check()
    if method == "elastic":
        out = elastic(labels, seed=seed, **params)
    elif method == "affine":
        out = affine(labels, **params)
    elif method in ("dilate", "erode"):
        out = (dilate if method == "dilate" else erode)(labels, **params)
    elif method == "vae-sample":
        out = yield from vae_sample(params.pop("model", None), seed=seed, like=labels, cancel=cancel, **params)
    else:
        other = params.pop("other", None)
        if other is None:
            raise InputError("vae-interpolate needs a second label map (subject B).")
        out = yield from vae_interpolate(params.pop("model", None), labels, other, cancel=cancel, **params)
    yield Progress(1, 1, f"{method} done")
    return out
