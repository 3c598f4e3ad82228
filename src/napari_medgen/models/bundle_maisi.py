"""MONAI's MAISI bundle (maisi_ct_generative): CT generated from a label map through its ControlNet.

The label map (X, Y, Z) on the output grid conditions MAISI's ``ControlNetMaisi`` as its 8 bits
(8 channels at image resolution); the ControlNet's residuals, the body-region one-hots (top and
bottom region, x 100) and the voxel size (mm x 100) go into ``DiffusionModelUNetMaisi``; latents
(4 channels, 1/4 of the image size) decode with ``AutoencoderKlMaisi`` (``latent / scale_factor``,
sliding windows above the bundle's window size), clipped to [0, 1] and mapped to -1000..1000 HU,
with voxels labelled 0 set to -1000 HU. These steps follow the bundle's ``scripts/sample.py`` (which
is not run); the constants below are taken from it. The label map must use MAISI's label indices
(the bundle's ``configs/label_dict.json``, downloaded with its weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..errors import InputError, ModelError
from .bundle_config import BundleConfig, ConditionField
from .diffusion import DiffusionModel

REGIONS = ("head", "chest/thorax", "abdomen", "pelvis/lower")  # MAISI's body-region order (one-hot index)
# labels that mark each region (scripts/utils.py get_body_region_index_from_mask)
REGION_LABELS = ((22, 120), (28, 29, 30, 31, 32), (1, 2, 3, 4, 5, 14), (93, 94))
AUTO = "auto"
HU_RANGE = (-1000.0, 1000.0)  # decoder output [0, 1] -> HU (scripts/sample.py a_min, a_max)
SPACING_XY, SPACING_Z = (0.5, 3.0), (0.5, 5.0)  # mm, the ranges scripts/sample.py check_input accepts
BITS = 8  # the ControlNet's conditioning channels: label values 0..255 in binary


@dataclass
class MaisiModel(DiffusionModel):
    """A DiffusionModel whose network is MAISI's ControlNet + UNet; ``shape`` is the latent's (x, y, z).

    Call :meth:`set_inputs` before sampling: it fixes the label map, voxel size and body regions."""

    controlnet: torch.nn.Module | None = None
    factor: int = 4
    window: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.6667
    labels: torch.Tensor | None = None
    region_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def latent_factor(self) -> int:
        return self.factor

    def set_inputs(self, labels: np.ndarray, spacing: tuple[float, float, float], top: int, bottom: int) -> torch.Tensor:
        """labels (X, Y, Z) ints 0..255 on the output grid, spacing (x, y, z) mm, region indices ->
        the ControlNet's condition (1, 8, X, Y, Z) float32 (the labels' bits)."""
        dev = next(self.unet.parameters()).device
        lab = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))[None, None].to(dev)
        self.labels = lab
        eye = torch.eye(len(REGIONS), device=dev)
        self.region_tensors = {"top_region_index_tensor": eye[top][None] * 100,
                               "bottom_region_index_tensor": eye[bottom][None] * 100,
                               "spacing_tensor": torch.tensor([spacing], dtype=torch.float32, device=dev) * 100}
        bits = 2 ** torch.arange(BITS, device=dev)
        return (lab[..., None] & bits).ne(0).squeeze(1).movedim(-1, 1).float()

    def predict(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 4, *latent), t (B,), seg (B, 8, *image) the ControlNet condition (zeros when None: the
        memory probe)."""
        if seg is None:
            seg = x.new_zeros((len(x), BITS, *[s * self.factor for s in x.shape[2:]]))
        down, mid = self.controlnet(x=x, timesteps=t, controlnet_cond=seg.to(x.dtype))
        extra = {k: v.expand(len(x), -1).to(x) for k, v in self.region_tensors.items()}
        return self.unet(x=x, timesteps=t, down_block_additional_residuals=down, mid_block_additional_residual=mid,
                         **extra)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, 4, *latent) -> CT (B, 1, *image) in HU; voxels labelled 0 are -1000 HU."""
        def recon(latent: torch.Tensor) -> torch.Tensor:
            return self.autoencoder.decode_stage_2_outputs(latent / self.scale_factor)

        if np.prod(z.shape[2:]) < np.prod(self.window):
            image = recon(z)
        else:
            roi = [min(s * self.factor // 4 * 3, w) for s, w in zip(z.shape[2:], self.window)]
            image = sliding_window_inference(z, roi, 1, recon, overlap=self.overlap, mode="gaussian")
        low, high = HU_RANGE
        hu = image.float().clamp(0, 1) * (high - low) + low
        if self.labels is not None and self.labels.shape[2:] == hu.shape[2:]:
            hu = hu.masked_fill(self.labels == 0, low)
        return hu


def body_regions(labels: np.ndarray) -> tuple[int, int]:
    """(top, bottom) region index of a MAISI label map: the first and last region whose labels it holds.
    InputError when it holds none of them."""
    present = set(np.unique(labels).tolist())
    found = [i for i, labs in enumerate(REGION_LABELS) if present.intersection(labs)]
    if not found:
        raise InputError("The label map holds no label that marks a MAISI body region "
                         f"({', '.join(f'{r}: {list(ls)}' for r, ls in zip(REGIONS, REGION_LABELS))}); choose the "
                         "top and bottom regions.")
    return found[0], found[-1]


def maisi_fields(spacing: tuple[float, float, float]) -> tuple[ConditionField, ...]:
    """MAISI's conditioning values: top and bottom body region (auto: from the label map) and the output
    voxel size (defaults: the config's ``spacing``)."""
    return (ConditionField("top_region", "top body region", AUTO, choices=(AUTO, *REGIONS)),
            ConditionField("bottom_region", "bottom body region", AUTO, choices=(AUTO, *REGIONS)),
            ConditionField("spacing_xy", "voxel size x, y (mm)", spacing[0], *SPACING_XY),
            ConditionField("spacing_z", "voxel size z (mm)", spacing[2], *SPACING_Z))


def open_maisi(cfg: BundleConfig, common: dict[str, Any], controlnet: torch.nn.Module,
               ae_kwargs: dict[str, Any]) -> MaisiModel:
    """The MaisiModel of a bundle: output size and voxel size from the config (``output_size``,
    ``spacing``, x y z), sliding-window settings, and its conditioning fields."""
    channels = ae_kwargs.get("num_channels", ae_kwargs.get("channels", (0, 0, 0)))
    model = MaisiModel(**common, controlnet=controlnet, factor=2 ** (len(channels) - 1))
    size = _plain(cfg, "output_size")
    if isinstance(size, list) and len(size) == 3 and all(isinstance(s, int) and s % model.factor == 0 for s in size):
        model.shape = tuple(s // model.factor for s in size)
    window, overlap = _plain(cfg, "autoencoder_sliding_window_infer_size"), _plain(cfg, "autoencoder_sliding_window_infer_overlap")
    if isinstance(window, list) and len(window) == 3:
        model.window = tuple(int(w) for w in window)
    if isinstance(overlap, (int, float)) and 0 <= overlap < 1:
        model.overlap = float(overlap)
    model.extra["modality"] = "CT"
    model.region_tensors = {"top_region_index_tensor": torch.zeros(1, len(REGIONS)),
                            "bottom_region_index_tensor": torch.zeros(1, len(REGIONS)),
                            "spacing_tensor": torch.tensor([model.spacing]) * 100}
    return model


def _plain(cfg: BundleConfig, key: str) -> Any:
    try:
        return cfg.get(key) if key in cfg.data else None
    except ModelError:
        return None
