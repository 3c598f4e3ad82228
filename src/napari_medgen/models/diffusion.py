"""Family "diffusion": a MONAI ``DiffusionModelUNet`` (or ``SPADEDiffusionModelUNet`` for label-map
conditioning) in 2D or 3D, with the noise schedule it was trained on.

Card keys besides the store's common ones:

* ``network``: ``DiffusionModelUNet`` keyword arguments (``spatial_dims``, ``in_channels``,
  ``out_channels``, ``channels``, ``attention_levels``, ``num_res_blocks``, ``norm_num_groups``,
  ``num_head_channels``); ``label_nc`` (number of label classes) makes it a SPADE model.
* ``scheduler``: ``{"objective": "ddpm" | "rflow", "num_train_timesteps": 1000, ...}`` plus the
  MONAI scheduler arguments used in training (``schedule``, ``beta_start``, ``beta_end``,
  ``prediction_type`` for DDPM). A "ddpm" model samples with DDPM or DDIM; an "rflow" model
  (velocity ``x0 - noise``) with rectified flow.
* ``shape``: spatial shape of one sample, (y, x) or (z, y, x); ``spacing`` (x, y, z) mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet, SPADEDiffusionModelUNet
from monai.utils import OptionalImportError
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler, Scheduler

from ..errors import ModelError
from .store import load_model, register_family

SAMPLERS = ("ddpm", "ddim", "rflow")
_SAMPLERS_OF = {"ddpm": ("ddim", "ddpm"), "rflow": ("rflow",)}
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "rflow": 30}
_NOT_FOR = {"ddpm": ("set_alpha_to_one", "steps_offset"), "ddim": ("variance_type",), "rflow": ()}


@register_family("diffusion")
def build_unet(config: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """Network config -> {"unet": DiffusionModelUNet | SPADEDiffusionModelUNet}."""
    cfg = dict(config)
    label_nc = cfg.pop("label_nc", None)
    try:
        if label_nc:
            return {"unet": SPADEDiffusionModelUNet(label_nc=int(label_nc), **cfg)}
        return {"unet": DiffusionModelUNet(**cfg)}
    except OptionalImportError as exc:
        raise ModelError(f"This diffusion network (attention layers) needs an optional package: {str(exc).splitlines()[0]}. "
                         "Install it (e.g. pip install einops) or use a model without attention.") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"Diffusion network config {config} is not valid for MONAI: {exc}") from None


@dataclass
class DiffusionModel:
    """A loaded diffusion model, from a napari-medgen card or a MONAI bundle.

    unet: predicts noise (epsilon), x0 or velocity from (x (B, C, *shape), t (B,)[, seg]).
    scheduler: {"objective": ..., MONAI scheduler kwargs}. shape: spatial shape of one sample.
    label_names: {class index: name} for mask-conditioned (SPADE) models, else None.
    """

    unet: torch.nn.Module
    scheduler: dict[str, Any]
    shape: tuple[int, ...]
    in_channels: int = 1
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    normalization: dict[str, Any] | None = None
    label_names: dict[int, str] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return len(self.shape)

    @property
    def label_nc(self) -> int | None:
        return getattr(self.unet, "label_nc", None) if isinstance(self.unet, SPADEDiffusionModelUNet) else None

    @property
    def objective(self) -> str:
        return str(self.scheduler.get("objective", "ddpm"))

    def predict(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor | None = None) -> torch.Tensor:
        """One network evaluation: x (B, C, *shape), t (B,) float timesteps, seg (B, label_nc, *shape)."""
        if self.label_nc:
            return self.unet(x, timesteps=t, seg=seg)
        return self.unet(x, timesteps=t)


def make_scheduler(spec: dict[str, Any], sampler: str, steps: int, source: str = "the model") -> Scheduler:
    """A MONAI scheduler for ``sampler`` with ``steps`` inference steps, from a card's scheduler spec.

    Raises ModelError when the sampler does not fit the model's training objective or the step
    count is out of range.
    """
    objective = str(spec.get("objective", "ddpm"))
    if objective not in _SAMPLERS_OF:
        raise ModelError(f"{source}: unknown diffusion objective '{objective}' (known: ddpm, rflow).")
    if sampler not in SAMPLERS:
        raise ModelError(f"Unknown sampler '{sampler}': use one of {', '.join(SAMPLERS)}.")
    if sampler not in _SAMPLERS_OF[objective]:
        raise ModelError(f"{source} was trained with the '{objective}' objective: it samples with "
                         f"{' or '.join(_SAMPLERS_OF[objective])}, not '{sampler}'.")
    kwargs = {k: v for k, v in spec.items() if k != "objective" and k not in _NOT_FOR[sampler]}
    n_train = int(kwargs.get("num_train_timesteps", 1000))
    if not 1 <= int(steps) <= n_train:
        raise ModelError(f"Number of steps must be between 1 and {n_train} for {source}, got {steps}.")
    try:
        if sampler == "rflow":
            sched: Scheduler = RFlowScheduler(**kwargs)
        elif sampler == "ddim":
            sched = DDIMScheduler(**kwargs)
        else:
            sched = DDPMScheduler(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: scheduler settings {spec} are not valid for MONAI: {exc}") from None
    sched.set_timesteps(int(steps))
    return sched


def load_diffusion(path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """Load a shipped/trained model (``NAME.safetensors`` + ``NAME.json``) of family "diffusion"."""
    modules, card = load_model(path, device)
    if card.get("family") != "diffusion":
        raise ModelError(f"Model '{path}' is of family '{card.get('family')}', not a diffusion model.")
    shape = card.get("shape")
    if not isinstance(shape, list) or len(shape) not in (2, 3) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ModelError(f"Model card '{path}' needs 'shape': the spatial shape of one sample, (y, x) or (z, y, x).")
    labels = card.get("label_names")
    return DiffusionModel(
        unet=modules["unet"],
        scheduler=dict(card.get("scheduler", {"objective": "ddpm"})),
        shape=tuple(shape),
        in_channels=int(card["network"].get("in_channels", 1)),
        spacing=tuple(card.get("spacing", (1.0, 1.0, 1.0))),
        normalization=card.get("normalization"),
        label_names={int(k): str(v) for k, v in labels.items()} if labels else None,
        source=str(path),
        extra={"card": card},
    )


def speed_up(unet: torch.nn.Module, memory_format: torch.memory_format | None = None) -> torch.nn.Module:
    """Inference-only speed-ups that keep the weights: PyTorch's fused attention (SDPA) in every
    MONAI attention block, and optionally a memory format (e.g. ``torch.channels_last``)."""
    for m in unet.modules():
        if hasattr(m, "use_flash_attention") and not getattr(m, "save_attn", False) \
                and getattr(m, "rel_positional_embedding", None) is None:
            m.use_flash_attention = True
    if memory_format is not None:
        unet.to(memory_format=memory_format)
    return unet
