"""Family "spade": label-to-image synthesis with MONAI's SPADENet (a VAE-GAN with a style encoder).

Shapes: labels are one-hot ``(B, n_classes, *input_shape)`` float; images ``(B, 1, *input_shape)``
in normalised intensity units; a style is a vector ``(B, z_dim)``. ``input_shape`` is ``(y, x)``
for the default 2D model (``spatial_dims=2``) or ``(z, y, x)`` for the 3D option; every entry
must be divisible by ``2 ** len(channels)``.

MONAI's decoder runs its last SPADE block at half the input resolution, and its instance
normalisation removes much of the global intensity information the style vector carries. A
small head at full resolution fixes both: a 1x1 convolution over the decoder's features, the
one-hot labels and the style broadcast to every pixel, a LeakyReLU, and a 3x3 convolution to the
image, plus a per-label intensity offset that is a linear function of the style (a Linear
z_dim -> n_classes read out through the one-hot map). It restores sharp label borders and lets
the style set each label's intensity (the scanner "contrast").

``zero_mean_texture`` (network option, off in older cards): the head's output is made zero-mean
within each label of each image and zero in the background (label 0). A label's mean intensity is
then exactly the style's linear offset, so a vendor's mean style paints that vendor's mean contrast
(the mean of linear offsets), and the background is flat: the card's acquisition noise is all the
texture it gets (air has no anatomy to draw).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import SPADENet


DEFAULTS: dict[str, Any] = {
    "spatial_dims": 2,
    "n_classes": 4,
    "input_shape": [128, 128],
    "channels": [16, 32, 64],
    "z_dim": 8,
    "spade_hidden": 32,
    "head_channels": 8,
    "zero_mean_texture": False,
}


class SpadeGenerator(torch.nn.Module):
    """SPADENet (style encoder + SPADE decoder) followed by a full-resolution head that sees labels and style."""

    def __init__(self, spatial_dims: int, n_classes: int, input_shape: list[int], channels: list[int],
                 z_dim: int, spade_hidden: int, head_channels: int, zero_mean_texture: bool = False):
        super().__init__()
        self.zero_mean_texture = zero_mean_texture
        self.n_classes = n_classes
        self.z_dim = z_dim
        self.input_shape = tuple(input_shape)
        act = ("LEAKYRELU", {"negative_slope": 0.2})
        # SPADENet reverses and extends the channel list it is given: pass a copy.
        self.net = SPADENet(spatial_dims=spatial_dims, in_channels=1, out_channels=head_channels,
                            label_nc=n_classes, input_shape=list(input_shape), channels=list(channels),
                            z_dim=z_dim, is_vae=True, spade_intermediate_channels=spade_hidden,
                            norm="INSTANCE", act=act, last_act=act,
                            upsampling_mode="bilinear" if spatial_dims == 2 else "trilinear")
        self.head = torch.nn.Sequential(
            Convolution(spatial_dims, head_channels + n_classes + z_dim, 2 * head_channels, kernel_size=1,
                        act=act, norm=None),
            Convolution(spatial_dims, 2 * head_channels, 1, kernel_size=3, act=None, norm=None, conv_only=True))
        self.label_style = torch.nn.Linear(z_dim, n_classes)
        torch.nn.init.zeros_(self.label_style.weight)  # starts as a no-op: random offsets made early training unstable
        torch.nn.init.zeros_(self.label_style.bias)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image (B, 1, *input_shape) -> (mu, logvar), each (B, z_dim)."""
        return self.net.encoder(image)

    def decode(self, onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One-hot labels (B, C, *input_shape) and style z (B, z_dim) -> image (B, 1, *input_shape)."""
        features = self.net.decode(onehot, z)
        style = z.reshape(*z.shape, *([1] * (onehot.ndim - 2))).expand(-1, -1, *onehot.shape[2:])
        offsets = self.label_style(z).reshape(*z.shape[:1], -1, *([1] * (onehot.ndim - 2)))
        texture = self.head(torch.cat([features, onehot, style], dim=1))
        if self.zero_mean_texture:
            texture = zero_mean_per_label(texture, onehot)
        return texture + (onehot * offsets).sum(1, keepdim=True)

    def forward(self, onehot: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """VAE pass for training: (reconstruction, mu, logvar), z drawn by reparameterisation."""
        mu, logvar = self.encode(image)
        z = self.net.encoder.reparameterize(mu, logvar)
        return self.decode(onehot, z), mu, logvar


def zero_mean_per_label(texture: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """``texture`` (B, 1, *spatial) minus its mean within each label of each image, and 0 where label 0
    (background) is; ``onehot`` (B, C, *spatial)."""
    dims = tuple(range(2, onehot.ndim))
    means = (texture * onehot).sum(dims, keepdim=True) / onehot.sum(dims, keepdim=True).clamp(min=1.0)
    return (texture - (onehot * means).sum(1, keepdim=True)) * (1.0 - onehot[:, :1])


def network_config(**overrides: Any) -> dict[str, Any]:
    """The card's ``network`` entry: DEFAULTS updated with ``overrides`` (plain JSON values)."""
    cfg = {**DEFAULTS, **overrides}
    cfg["input_shape"] = [int(s) for s in cfg["input_shape"]]
    cfg["channels"] = [int(c) for c in cfg["channels"]]
    return cfg


def build_spade(config: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """Network config (see DEFAULTS) -> {"generator": SpadeGenerator}."""
    cfg = network_config(**config)
    return {"generator": SpadeGenerator(cfg["spatial_dims"], cfg["n_classes"], cfg["input_shape"], cfg["channels"],
                                        cfg["z_dim"], cfg["spade_hidden"], cfg["head_channels"],
                                        bool(cfg["zero_mean_texture"]))}


# --- Slice geometry: how a volume is cut into the 2D model's input and put back together. -------------

_PHYSICAL_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # LPS physical axis (x, y, z) normal to the plane


def slice_axis(spacing: tuple[float, float, float], direction: np.ndarray, orientation: str = "axial",
               anisotropy: float = 1.25) -> int:
    """Array axis of a (z, y, x) volume to cut slices along.

    The through-plane axis is the one with the largest spacing when it is at least ``anisotropy``
    times the others; otherwise the index axis closest to the physical normal of ``orientation``
    (the plane the model was trained on). spacing: (x, y, z) mm; direction: 3x3, columns = i, j, k.
    """
    per_array_axis = np.asarray(spacing, dtype=float)[::-1]
    largest = int(np.argmax(per_array_axis))
    if per_array_axis[largest] >= anisotropy * np.delete(per_array_axis, largest).max():
        return largest
    index_axis = int(np.argmax(np.abs(np.asarray(direction)[_PHYSICAL_AXIS[orientation], :])))
    return 2 - index_axis


def plane_spacing(spacing: tuple[float, float, float], axis: int) -> tuple[float, float]:
    """In-plane spacing (rows, cols) in mm of slices cut along array ``axis``; spacing is (x, y, z)."""
    per_array_axis = [float(s) for s in spacing[::-1]]
    del per_array_axis[axis]
    return per_array_axis[0], per_array_axis[1]


@dataclass
class SlicePlan:
    """How slices of ``plane_shape`` (rows, cols) become the model's ``model_shape`` and back.

    work_shape: in-plane shape after resampling (equal to plane_shape when no resampling is
    needed); it always fits in model_shape, the rest is padding. notes: plain-words messages
    for the user when the input was resampled.
    """

    axis: int
    plane_shape: tuple[int, int]
    work_shape: tuple[int, int]
    model_shape: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    @property
    def resampled(self) -> bool:
        return self.work_shape != self.plane_shape


def plan_slices(shape: tuple[int, int, int], spacing: tuple[float, float, float], axis: int,
                model_shape: tuple[int, int], model_spacing: tuple[float, float], tolerance: float = 1.5) -> SlicePlan:
    """Plan for a (z, y, x) volume of ``shape`` and ``spacing`` (x, y, z mm) cut along ``axis``.

    In-plane spacing more than ``tolerance`` times finer or coarser than the model's
    ``model_spacing`` (rows, cols mm) is resampled to the model's; a plane larger than
    ``model_shape`` is shrunk to fit. Smaller planes are padded (and cropped back).
    """
    plane = tuple(int(s) for i, s in enumerate(shape) if i != axis)
    sp = np.asarray(plane_spacing(spacing, axis))
    ratio = sp / np.asarray(model_spacing, dtype=float)
    far = bool(np.any((ratio > tolerance) | (ratio < 1.0 / tolerance)))
    work = np.asarray(plane, dtype=float) * (ratio if far else 1.0)
    shrink = max(1.0, float(np.max(work / np.asarray(model_shape))))
    work_shape = tuple(int(max(1, min(m, round(w / shrink)))) for w, m in zip(work, model_shape))
    notes = []
    if work_shape != plane:
        reasons = []
        if far:
            reasons.append(f"in-plane spacing {sp[0]:.3g} x {sp[1]:.3g} mm is far from the model's "
                           f"{model_spacing[0]:.3g} x {model_spacing[1]:.3g} mm")
        if shrink > 1.0:
            reasons.append(f"the plane does not fit the model's {model_shape[0]} x {model_shape[1]} input")
        notes.append(f"Slices of {plane[0]} x {plane[1]} voxels were resampled to {work_shape[0]} x {work_shape[1]} "
                     f"for the model ({'; '.join(reasons)}) and the result resampled back to the input grid.")
    return SlicePlan(axis, plane, work_shape, tuple(model_shape), notes)  # type: ignore[arg-type]


def background_value(image: np.ndarray, labels: np.ndarray) -> float:
    """Padding value for image slices: the mean intensity of label 0 (the minimum if there is none)."""
    bg = labels == 0
    return float(image[bg].mean()) if bg.any() else float(image.min())


def cut(volume: np.ndarray, axis: int) -> np.ndarray:
    """(z, y, x) array -> (n, rows, cols) slices along ``axis`` (a view)."""
    return np.moveaxis(volume, axis, 0)


def _resize(slices: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    mode = "nearest-exact" if nearest else "bilinear"
    out = torch.nn.functional.interpolate(t, size=size, mode=mode, **({} if nearest else {"align_corners": False}))
    return out[:, 0].numpy()


def _centre_box(inner: tuple[int, int], outer: tuple[int, int]) -> tuple[slice, slice]:
    r0, c0 = (outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2
    return slice(r0, r0 + inner[0]), slice(c0, c0 + inner[1])


def to_model(slices: np.ndarray, plan: SlicePlan, *, nearest: bool, fill: float = 0.0) -> np.ndarray:
    """(n, rows, cols) -> (n, *model_shape): resample to work_shape if planned, centre-pad with ``fill``.

    nearest: True for labels (values kept), False for images (bilinear).
    """
    if plan.resampled:
        resized = _resize(slices, plan.work_shape, nearest)
        slices = np.rint(resized).astype(slices.dtype) if nearest else resized
    out = np.full((slices.shape[0], *plan.model_shape), fill, dtype=slices.dtype)
    out[(slice(None), *_centre_box(plan.work_shape, plan.model_shape))] = slices
    return out


def from_model(slices: np.ndarray, plan: SlicePlan) -> np.ndarray:
    """(n, *model_shape) image slices -> (n, rows, cols) on the input grid (crop, bilinear resample back)."""
    out = slices[(slice(None), *_centre_box(plan.work_shape, plan.model_shape))]
    return _resize(out, plan.plane_shape, nearest=False) if plan.resampled else out
