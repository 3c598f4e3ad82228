"""MONAI's MAISI bundle (maisi_ct_generative): CT generated from a label map through its ControlNet.

The label map (X, Y, Z) on the output grid conditions MAISI's ``ControlNetMaisi`` as its 8 bits
(8 channels at image resolution); the ControlNet's residuals, the body-region one-hots (top and
bottom region, x 100) and the voxel size (mm x 100) go into ``DiffusionModelUNetMaisi`` (each where
the config's ``include_*_input`` says so); latents (4 channels, 1/4 of the image size) decode with
``AutoencoderKlMaisi`` (``latent / scale_factor``, sliding windows above the bundle's window size),
clipped to [0, 1] and mapped to -1000..1000 HU, with voxels labelled 0 set to -1000 HU. These steps
follow the bundle's ``scripts/sample.py`` (which is not run); the constants below are taken from it.
The label map must use MAISI's label values: those of the bundle's ``configs/label_dict.json``
(downloaded with its weights), 0 background and 200 body. Without a label map, one is generated from
anatomy sizes by the bundle's mask-generation networks (:mod:`.bundle_maisi_masks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..errors import InputError, ModelError
from .bundle_config import BundleConfig, ConditionField, read_file
from .bundle_maisi_masks import MaskGenerator, anatomy_fields
from .bundle_weights import build, load_into, scale_factor, weight_file
from .bundle_wiring import Component
from .diffusion import DiffusionModel

REGIONS = ("head", "chest/thorax", "abdomen", "pelvis/lower")  # MAISI's body-region order (one-hot index)
# the names scripts/find_masks.py convert_body_region accepts, and their index
REGION_INDEX = {"head": 0, "chest": 1, "thorax": 1, "chest/thorax": 1, "abdomen": 2, "pelvis": 3, "lower": 3,
                "pelvis/lower": 3}
# labels that mark each region (scripts/utils.py get_body_region_index_from_mask)
REGION_LABELS = ((22, 120), (28, 29, 30, 31, 32), (1, 2, 3, 4, 5, 14), (93, 94))
AUTO = "auto"
HU_RANGE = (-1000.0, 1000.0)  # decoder output [0, 1] -> HU (scripts/sample.py a_min, a_max)
SPACING_XY, SPACING_Z = (0.5, 3.0), (0.5, 5.0)  # mm, the ranges scripts/sample.py check_input accepts
BITS = 8  # the ControlNet's conditioning channels: label values 0..255 in binary
BACKGROUND, BODY = 0, 200  # label values outside label_dict.json that MAISI's masks hold (scripts/utils.py)


@dataclass
class MaisiModel(DiffusionModel):
    """A DiffusionModel whose network is MAISI's ControlNet + UNet; ``shape`` is the latent's (x, y, z).

    Call :meth:`set_inputs` before sampling: it fixes the label map, voxel size and body regions.
    ``classes``: {label value: name} from ``label_dict_path`` (empty when that file is missing);
    ``masks``: the mask generator (None: ``masks_missing`` says why)."""

    controlnet: torch.nn.Module | None = None
    factor: int = 4
    window: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.6667
    labels: torch.Tensor | None = None
    region_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    inputs: tuple[str, ...] = ("top_region_index_tensor", "bottom_region_index_tensor", "spacing_tensor")
    classes: dict[int, str] = field(default_factory=dict)
    label_dict_path: Path = Path("configs/label_dict.json")
    masks: MaskGenerator | None = None
    masks_missing: str = ""

    @property
    def latent_factor(self) -> int:
        return self.factor

    def set_inputs(self, labels: np.ndarray, spacing: tuple[float, float, float], top: int | None,
                   bottom: int | None) -> torch.Tensor:
        """labels (X, Y, Z) ints 0..255 on the output grid, spacing (x, y, z) mm, region indices (None: the
        UNet takes none) -> the ControlNet's condition (1, 8, X, Y, Z) float32 (the labels' bits)."""
        dev = next(self.unet.parameters()).device
        lab = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))[None, None].to(dev)
        self.labels = lab
        self.region_tensors = self._tensors(spacing, top, bottom, dev)
        bits = 2 ** torch.arange(BITS, device=dev)
        return (lab[..., None] & bits).ne(0).squeeze(1).movedim(-1, 1).float()

    def _tensors(self, spacing: tuple[float, float, float], top: int | None, bottom: int | None,
                 dev: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The UNet's extra inputs (x 100, as the bundle gives them); regions None: zeros."""
        eye = torch.eye(len(REGIONS), device=dev)
        values = {"top_region_index_tensor": eye[top] if top is not None else eye[0] * 0,
                  "bottom_region_index_tensor": eye[bottom] if bottom is not None else eye[0] * 0,
                  "spacing_tensor": torch.tensor(spacing, dtype=torch.float32, device=dev)}
        return {k: values[k][None] * 100 for k in self.inputs}

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


def region_choices(meta: dict[str, Any]) -> tuple[str, ...]:
    """The body regions metadata.json names (any ``*_data_format``'s input ``body_region`` value_range) in
    MAISI's index order, else REGIONS."""
    names: list[str] = []
    for fmt in (v for k, v in meta.items() if k.endswith("data_format") and isinstance(v, dict)):
        spec = (fmt.get("inputs") or {}).get("body_region") if isinstance(fmt.get("inputs"), dict) else None
        rng = spec.get("value_range") if isinstance(spec, dict) else None
        names += [str(r) for r in rng if str(r) in REGION_INDEX] if isinstance(rng, list) else []
    by_index = {REGION_INDEX[n]: n for n in reversed(names)}
    return tuple(by_index[i] for i in sorted(by_index)) if len(by_index) == len(REGIONS) else REGIONS


def maisi_fields(spacing: tuple[float, float, float], regions: tuple[str, ...] | None,
                 masks: bool) -> tuple[ConditionField, ...]:
    """MAISI's conditioning values: top and bottom body region (auto: from the label map; only when the
    UNet takes them), the output voxel size (defaults: the config's ``spacing``) and, when the bundle
    generates masks, the anatomy sizes."""
    fields = (ConditionField("top_region", "top body region", AUTO, choices=(AUTO, *regions)),
              ConditionField("bottom_region", "bottom body region", AUTO, choices=(AUTO, *regions))) if regions else ()
    fields += (ConditionField("spacing_xy", "voxel size x, y (mm)", spacing[0], *SPACING_XY),
               ConditionField("spacing_z", "voxel size z (mm)", spacing[2], *SPACING_Z))
    return fields + (anatomy_fields() if masks else ())


def open_maisi(cfg: BundleConfig, common: dict[str, Any], controlnet: torch.nn.Module, ae_kwargs: dict[str, Any],
               unet_kwargs: dict[str, Any]) -> MaisiModel:
    """The MaisiModel of a bundle: output size and voxel size from the config (``output_size``,
    ``spacing``, x y z), sliding-window settings, the UNet's extra inputs and the label classes."""
    channels = ae_kwargs.get("num_channels", ae_kwargs.get("channels", (0, 0, 0)))
    model = MaisiModel(**common, controlnet=controlnet, factor=2 ** (len(channels) - 1))
    size = plain(cfg, "output_size")
    if isinstance(size, list) and len(size) == 3 and all(isinstance(s, int) and s % model.factor == 0 for s in size):
        model.shape = tuple(s // model.factor for s in size)
    model.window, model.overlap = sliding_window(cfg)
    model.extra["modality"] = "CT"
    model.inputs = tuple(k for k, flag in (("top_region_index_tensor", "include_top_region_index_input"),
                                           ("bottom_region_index_tensor", "include_bottom_region_index_input"),
                                           ("spacing_tensor", "include_spacing_input")) if unet_kwargs.get(flag))
    model.region_tensors = model._tensors(model.spacing, None, None)
    model.label_dict_path = bundle_file(cfg, "label_dict_json", "configs/label_dict.json")
    model.classes = label_classes(model.label_dict_path)
    return model


def open_masks(cfg: BundleConfig, comps: dict[str, Component], kwargs: dict[str, dict[str, Any]], wiring: list[Any],
               scheduler: dict[str, Any], device: torch.device | str) -> tuple[MaskGenerator | None, str]:
    """The bundle's mask generator ``comps`` ("unet", "autoencoder", "scheduler" components), built and loaded;
    (None, why) when the config defines none or its weights are missing (the rest of the bundle still works)."""
    if not comps:
        return None, (f"Bundle config '{cfg.path}' defines no mask-generation networks (mask_generation_diffusion_def, "
                      "mask_generation_autoencoder_def)")
    for key in ("unet", "autoencoder"):
        source, path = weight_file(cfg, comps[key], wiring, ())
        if not path.is_file():
            return None, f"the bundle's mask-generation weights '{source.path}' ('{comps[key].id}') are missing"
    nets = {}
    for key in ("unet", "autoencoder"):
        nets[key] = build(comps[key], kwargs[comps[key].id], cfg.path)
        load_into(cfg, comps[key], nets[key], wiring)
    shape = plain(cfg, "mask_generation_latent_shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(type(v) is int and v > 0 for v in shape)):
        raise ModelError(f"Bundle config '{cfg.path}': 'mask_generation_latent_shape' must be 4 positive integers "
                         f"(channels, x, y, z), got {str(shape)[:60]}.")
    steps = plain(cfg, "mask_generation_num_inference_steps")
    return MaskGenerator(
        nets["unet"].to(device).eval(), nets["autoencoder"].to(device).eval(), scheduler,
        scale_factor(cfg, "mask_generation_scale_factor"), tuple(shape), steps if type(steps) is int else 1000,
        int(kwargs[comps["autoencoder"].id].get("out_channels", 1)),
        bundle_file(cfg, "label_dict_remap_json", "configs/label_dict_124_to_132.json"),
        bundle_file(cfg, "all_anatomy_size_condtions_json", "configs/all_anatomy_size_condtions.json"),
        *sliding_window(cfg)), ""


def sliding_window(cfg: BundleConfig) -> tuple[tuple[int, int, int], float]:
    """The autoencoder's sliding-window size and overlap from the config (MAISI's defaults otherwise)."""
    window, overlap = plain(cfg, "autoencoder_sliding_window_infer_size"), plain(cfg, "autoencoder_sliding_window_infer_overlap")
    ok = isinstance(window, list) and len(window) == 3 and all(type(w) is int and w > 0 for w in window)
    return (tuple(window) if ok else (96, 96, 96),  # type: ignore[return-value]
            float(overlap) if type(overlap) in (int, float) and 0 <= overlap < 1 else 0.6667)


def label_classes(path: Path) -> dict[int, str]:
    """{value: name} of MAISI's label_dict.json ({name: value}) with 0 background and 200 body; {} when the
    file is missing. ModelError when it is not such a mapping."""
    if not path.is_file():
        return {}
    data = read_file(path)
    if not isinstance(data, dict) or not all(type(v) is int and 0 < v < 2**BITS for v in data.values()):
        raise ModelError(f"'{path}' must map MAISI's label names to values 1..255 ({{'liver': 1, ...}}).")
    return {BACKGROUND: "background", **{v: str(k) for k, v in data.items()}, BODY: "body"}


def bundle_file(cfg: BundleConfig, key: str, default: str) -> Path:
    """The path a config entry names (relative to the bundle folder), else ``default``; ModelError for a
    path outside the folder."""
    value = plain(cfg, key)
    rel = value if isinstance(value, str) else default
    path = (cfg.folder / rel).resolve()
    if cfg.folder.resolve() not in path.parents:
        raise ModelError(f"Bundle config '{cfg.path}': '{key}' names '{rel}', outside the bundle folder.")
    return path


def plain(cfg: BundleConfig, key: str) -> Any:
    """A config entry's resolved value, or None when it is missing or not readable as data."""
    try:
        return cfg.get(key) if key in cfg.data else None
    except ModelError:
        return None
