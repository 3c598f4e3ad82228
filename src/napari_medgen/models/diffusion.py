"""Family "diffusion": a MONAI ``DiffusionModelUNet`` (or ``SPADEDiffusionModelUNet`` for label-map
conditioning) in 2D or 3D, with the noise schedule it was trained on.

Card keys besides the store's common ones:

* ``network``: ``DiffusionModelUNet`` keyword arguments (``spatial_dims``, ``in_channels``,
  ``out_channels``, ``channels``, ``attention_levels``, ``num_res_blocks``, ``norm_num_groups``,
  ``num_head_channels``); ``label_nc`` (number of label classes) makes it a SPADE model; ``patch``
  p > 1 runs the UNet on p^d blocks folded into channels (:class:`PatchedUNet`).
* ``scheduler``: ``{"objective": "ddpm" | "rflow", "num_train_timesteps": 1000, ...}`` plus the
  MONAI scheduler arguments used in training (``schedule``, ``beta_start``, ``beta_end``,
  ``prediction_type`` for DDPM). A "ddpm" model samples with DDPM or DDIM; an "rflow" model
  (velocity ``x0 - noise``) with rectified flow.
* ``shape``: spatial shape of one sample, (y, x) or (z, y, x); ``spacing`` (x, y, z) mm.
* ``default_sampler``, ``default_steps``: how :func:`..tasks.sample.sample` samples when not told.

A :class:`DiffusionModel` may also be latent (MONAI bundles, :mod:`.bundle`): the UNet then samples
latents of ``shape`` with ``in_channels`` channels, and a MONAI ``AutoencoderKL`` decodes
``latent / scale_factor`` into the image, as MONAI's ``LatentDiffusionInferer`` does. A network
built ``with_conditioning`` takes a numeric conditioning vector as cross-attention context
(1, 1, cross_attention_dim); a network with more input channels than the sample has takes the same
vector broadcast over space as extra input channels (the layout of MONAI's brain LDM bundle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import (
    AutoencoderKL,
    DiffusionModelUNet,
    SPADEDiffusionModelUNet,
)
from monai.networks.schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    RFlowScheduler,
    Scheduler,
)
from monai.utils import OptionalImportError

from ..errors import InputError, ModelError
from .store import load_family

SAMPLERS = ("ddpm", "ddim", "rflow")
SAMPLERS_OF = {"ddpm": ("ddim", "ddpm"), "rflow": ("rflow",)}
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "rflow": 30}
_NOT_FOR = {"ddpm": ("set_alpha_to_one", "steps_offset"), "ddim": ("variance_type",), "rflow": ()}
# what MONAI's network constructors raise on arguments of the wrong type or value
CONFIG_ERRORS = (TypeError, ValueError, KeyError, IndexError, ArithmeticError)


class RespacedDDPMScheduler(DDIMScheduler):
    """DDPM's ancestral sampling on an evenly spaced subset of the training timesteps: DDIM with eta = 1
    (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 16), whose noise at each step is the
    posterior variance between the two timesteps it joins. MONAI's ``DDPMScheduler`` with fewer inference
    steps than training steps moves each step as if it joined t and t - 1 (``alphas_cumprod[t - 1]``,
    ``betas[t]``), so most of the noise stays; used by :func:`make_scheduler` for sampler "ddpm" then."""

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, eta: float = 1.0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return super().step(model_output, timestep, sample, eta, generator)


class PatchedUNet(torch.nn.Module):
    """A ``DiffusionModelUNet`` run on non-overlapping blocks of ``patch`` voxels per axis folded into
    channels (space to depth, as in Hoogeboom et al. 2023, "simple diffusion"): x (B, C, *S) ->
    (B, C patch^d, *S / patch) -> UNet -> the prediction (B, C_out, *S). The full-resolution levels, most
    of a 3D network's cost, go; each axis of S must be a multiple of patch x the UNet's downsampling."""

    def __init__(self, patch: int, spatial_dims: int, in_channels: int, out_channels: int, **unet: Any) -> None:
        super().__init__()
        if int(patch) < 1:
            raise ValueError(f"patch must be 1 or more, not {patch}")
        self.patch, self.spatial_dims = int(patch), int(spatial_dims)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        k = self.patch ** self.spatial_dims
        self.unet = DiffusionModelUNet(spatial_dims=spatial_dims, in_channels=in_channels * k,
                                       out_channels=out_channels * k, **unet)
        self.block_out_channels = self.unet.block_out_channels
        self.with_conditioning = self.unet.with_conditioning

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C p^d, *S / p)."""
        p, d = self.patch, self.spatial_dims
        b, c, sizes = x.shape[0], x.shape[1], x.shape[2:]
        x = x.reshape(b, c, *[v for s in sizes for v in (s // p, p)])
        order = [0, 1, *range(3, 2 + 2 * d, 2), *range(2, 2 + 2 * d, 2)]
        return x.permute(order).reshape(b, c * p ** d, *[s // p for s in sizes])

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C p^d, *S / p) -> (B, C, *S), the inverse of :meth:`_fold`."""
        p, d = self.patch, self.spatial_dims
        b, sizes = x.shape[0], x.shape[2:]
        x = x.reshape(b, -1, *[p] * d, *sizes)
        order = [0, 1, *[v for i in range(d) for v in (2 + d + i, 2 + i)]]
        return x.permute(order).reshape(b, -1, *[s * p for s in sizes])

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self._unfold(self.unet(self._fold(x), timesteps=timesteps, **kwargs))


def build_unet(config: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """Network config -> {"unet": DiffusionModelUNet | SPADEDiffusionModelUNet | PatchedUNet}."""
    cfg = dict(config)
    label_nc = cfg.pop("label_nc", None)
    try:
        patch = int(cfg.pop("patch", 1))
        if label_nc:
            if patch != 1:
                raise ModelError(f"Diffusion network config {config}: patch is for networks without label "
                                 "conditioning (label_nc).")
            return {"unet": SPADEDiffusionModelUNet(label_nc=int(label_nc), **cfg)}
        return {"unet": PatchedUNet(patch, **cfg) if patch != 1 else DiffusionModelUNet(**cfg)}
    except OptionalImportError as exc:
        raise ModelError(f"This diffusion network (attention layers) needs an optional package: {str(exc).splitlines()[0]}. "
                         "Install it (e.g. pip install einops) or use a model without attention.") from None
    except CONFIG_ERRORS as exc:
        raise ModelError(f"Diffusion network config {config} is not valid for MONAI: {exc!r}") from None


@dataclass
class DiffusionModel:
    """A loaded diffusion model, from a napari-medgen card or a MONAI bundle.

    unet: predicts noise (epsilon), x0 or velocity from (x (B, C, *shape), t (B,)[, seg][, context]).
    scheduler: {"objective": ..., MONAI scheduler kwargs}. shape: spatial shape of one network sample
    (the latent's for latent models); in_channels: its channels C.
    label_names: {class index: name} for mask-conditioned (SPADE) models, else None.
    autoencoder: decoder of latent models (None: the UNet samples images); scale_factor: latents are
    divided by it before decoding (None: unknown, the caller must give it).
    condition_names: names of the conditioning values, when the bundle states them.
    """

    unet: torch.nn.Module
    scheduler: dict[str, Any]
    shape: tuple[int, ...]
    in_channels: int = 1
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    normalization: dict[str, Any] | None = None
    label_names: dict[int, str] | None = None
    source: str = ""
    autoencoder: AutoencoderKL | None = None
    scale_factor: float | None = 1.0
    condition_names: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        concat, cross = self.concat_channels, self.cross_attention_dim
        if concat < 0 or (concat and cross and concat != cross):
            raise ModelError(f"Model '{self.source}': the network takes {self.unet_in_channels} input channels for "
                             f"samples of {self.in_channels}" + (f" and a context of {cross} values" if cross else "")
                             + "; napari-medgen cannot tell what the extra channels are.")

    @property
    def spatial_dims(self) -> int:
        return len(self.shape)

    @property
    def label_nc(self) -> int | None:
        return getattr(self.unet, "label_nc", None) if isinstance(self.unet, SPADEDiffusionModelUNet) else None

    @property
    def objective(self) -> str:
        return str(self.scheduler.get("objective", "ddpm"))

    @property
    def unet_in_channels(self) -> int:
        return int(getattr(self.unet, "in_channels", self.in_channels))

    @property
    def concat_channels(self) -> int:
        """Input channels of the network beyond the sample's: the conditioning vector, broadcast over space."""
        return self.unet_in_channels - self.in_channels

    @property
    def cross_attention_dim(self) -> int:
        """Length D of the cross-attention context (B, 1, D) the network takes; 0 when it takes none."""
        if not getattr(self.unet, "with_conditioning", False):
            return 0
        return next((int(m.context_input_size) for name, m in self.unet.named_modules()
                     if name.endswith("attn2") and hasattr(m, "context_input_size")), 0)

    @property
    def condition_size(self) -> int:
        """Number of conditioning values a sample needs (0: unconditioned)."""
        return self.cross_attention_dim or self.concat_channels

    @property
    def latent_factor(self) -> int:
        """Image voxels per latent voxel along each axis (the autoencoder's downsampling; 1 without one)."""
        return 2 ** (len(self.autoencoder.decoder.channels) - 1) if self.autoencoder is not None else 1

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape of one decoded sample."""
        return tuple(s * self.latent_factor for s in self.shape)

    def network_shape(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """The network's sample shape for an output image shape. InputError unless each axis is a positive
        multiple of the latent factor times the UNet's downsampling."""
        f = self.latent_factor
        multiple = f * getattr(self.unet, "patch", 1) * 2 ** (len(getattr(self.unet, "block_out_channels", [0])) - 1)
        if any(int(s) <= 0 or int(s) % multiple for s in image_shape):
            why = f" (latents are decoded to {f}x their size)" if f > 1 else ""
            raise InputError(f"Model '{self.source}' cannot sample the shape {' x '.join(map(str, image_shape))}: each "
                             f"axis must be a positive multiple of {multiple}{why}.")
        return tuple(int(s) // f for s in image_shape)

    def condition_tensor(self, values: Sequence[float] | str | None, n: int) -> torch.Tensor | None:
        """Conditioning values ("0.5,0.3" or [0.5, 0.3]) -> context (n, 1, D) float32; None for unconditioned
        models. InputError when the model needs values and none, too few/many or non-numbers are given."""
        size = self.condition_size
        names = f" ({', '.join(self.condition_names)})" if len(self.condition_names) == size else ""
        if isinstance(values, str):
            try:
                values = [float(v) for v in values.replace(";", ",").split(",") if v.strip()] or None
            except ValueError:
                raise InputError(f"Conditioning '{values}' must be numbers separated by commas.") from None
        if values is None:
            if size:
                raise InputError(f"Model '{self.source}' is conditioned on {size} values{names}: give them, e.g. "
                                 f"condition={[0.5] * size} (medgen sample --condition {','.join(['0.5'] * size)}).")
            return None
        if not size:
            raise InputError(f"Model '{self.source}' takes no conditioning values: sample it without a condition.")
        vec = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
        if vec.numel() != size or not torch.isfinite(vec).all():
            raise InputError(f"Model '{self.source}' is conditioned on {size} values{names}; got {vec.numel()} "
                             f"({', '.join(f'{v:g}' for v in vec.tolist())}): give {size} finite numbers.")
        return vec.reshape(1, 1, size).expand(n, 1, size).contiguous()

    def predict(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """One network evaluation: x (B, C, *shape), t (B,) float timesteps, seg (B, label_nc, *shape),
        context (B, 1, D) conditioning values (cross-attention and/or extra input channels)."""
        if self.concat_channels:
            cond = context[:, 0].reshape(len(context), -1, *([1] * (x.ndim - 2)))
            x = torch.cat([x, cond.expand(-1, -1, *x.shape[2:]).to(x.dtype)], dim=1)
        kwargs: dict[str, torch.Tensor] = {"seg": seg} if self.label_nc else {}
        if self.cross_attention_dim:
            kwargs["context"] = context
        return self.unet(x, timesteps=t, **kwargs)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, *shape) -> images (B, C_img, *image_shape) with the autoencoder; identity without one."""
        if self.autoencoder is None:
            return z
        if self.scale_factor is None:
            raise ModelError(f"Model '{self.source}' has no known latent scale factor: give it (scale_factor).")
        return self.autoencoder.decode_stage_2_outputs(z / self.scale_factor)


def make_scheduler(spec: dict[str, Any], sampler: str, steps: int, source: str = "the model") -> Scheduler:
    """A MONAI scheduler for ``sampler`` with ``steps`` inference steps, from a card's scheduler spec
    ("ddpm" with fewer steps than training: :class:`RespacedDDPMScheduler`).

    Raises ModelError when the sampler does not fit the model's training objective or the step
    count is out of range.
    """
    objective = str(spec.get("objective", "ddpm"))
    if objective not in SAMPLERS_OF:
        raise ModelError(f"{source}: unknown diffusion objective '{objective}' (known: ddpm, rflow).")
    if sampler not in SAMPLERS:
        raise ModelError(f"Unknown sampler '{sampler}': use one of {', '.join(SAMPLERS)}.")
    if sampler not in SAMPLERS_OF[objective]:
        raise ModelError(f"{source} was trained with the '{objective}' objective: it samples with "
                         f"{' or '.join(SAMPLERS_OF[objective])}, not '{sampler}'.")
    n_train = int(spec.get("num_train_timesteps", 1000))
    if not 1 <= int(steps) <= n_train:
        raise ModelError(f"Number of steps must be between 1 and {n_train} for {source}, got {steps}.")
    respaced = sampler == "ddpm" and int(steps) < n_train
    if respaced and spec.get("variance_type", "fixed_small") != "fixed_small":
        raise ModelError(f"{source} samples DDPM with variance_type '{spec['variance_type']}': it runs with all "
                         f"{n_train} steps only (fewer steps are respaced with the posterior variance).")
    kwargs = {k: v for k, v in spec.items() if k != "objective" and k not in _NOT_FOR["ddim" if respaced else sampler]}
    try:
        if sampler == "rflow":
            sched: Scheduler = RFlowScheduler(**kwargs)
        elif sampler == "ddim":
            sched = DDIMScheduler(**kwargs)
        elif respaced:
            sched = RespacedDDPMScheduler(**kwargs)
        else:
            sched = DDPMScheduler(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: scheduler settings {spec} are not valid for MONAI: {exc}") from None
    sched.set_timesteps(int(steps))
    return sched


def load_diffusion(path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """Load a shipped/trained model (``NAME.safetensors`` + ``NAME.json``) of family "diffusion"."""
    modules, card = load_family(path, "diffusion", build_unet, device)
    shape = card.get("shape")
    if not isinstance(shape, list) or len(shape) not in (2, 3) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ModelError(f"Model card '{path}' needs 'shape': the spatial shape of one sample, (y, x) or (z, y, x).")
    labels = card.get("label_names")
    return DiffusionModel(
        unet=modules["unet"],
        scheduler=dict(card.get("scheduler", {"objective": "ddpm"})),
        shape=tuple(shape),
        in_channels=int(card["network"].get("in_channels", 1)),
        spacing=tuple(card.get("voxel_mm") or (1.0, 1.0, 1.0)),
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
