"""Open a MONAI model-zoo generative bundle folder as published, without running any of its code.

A bundle folder holds ``configs/metadata.json``, ``configs/inference.json`` (or ``.yaml``, optionally
``configs/common.*``) and its weights under ``models/``. :mod:`.bundle_config` resolves the config's
references and recognises its wiring lines (:mod:`.bundle_wiring`); this module finds, in order:

* the diffusion network: the one the config's sampling lambda names, else the first of
  ``diffusion_unet_def``, ``diffusion_def``, ``network_def`` that is a diffusion UNet (MONAI's
  ``DiffusionModelUNet``, ``SPADEDiffusionModelUNet`` or MAISI's ``DiffusionModelUNetMaisi``);
* ``autoencoder_def`` (``AutoencoderKL`` or ``AutoencoderKlMaisi``): a latent bundle;
* ``controlnet_def`` (``ControlNetMaisi``): MAISI's label-map -> CT path (:mod:`.bundle_maisi`), with
  its mask-generation networks (``mask_generation_diffusion_def``, ``mask_generation_autoencoder_def``,
  ``mask_generation_noise_scheduler``; :mod:`.bundle_maisi_masks`), which are optional: without their
  weights the bundle opens and refuses only sampling without a label map;
* the scheduler (the sampling lambda's, else ``noise_scheduler`` or ``scheduler``): DDPM, DDIM or RFlow.

Each network's parameter count is taken from a copy built on PyTorch's ``meta`` device (nothing
allocated); a bundle whose weights alone would take more than half the free memory of the device is
refused with the estimate. Weights come from the config's own loading lines (``torch.load`` paths,
``['key']`` entries of a checkpoint dict) or, without such lines, ``models/model.pt`` and
``models/autoencoder.pt``/``model_autoencoder.pt`` (:mod:`.bundle_weights`). Arrays of a bundle are
in MONAI's (x, y[, z]) order, RAS for 3D.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi
from monai.apps.generation.maisi.networks.controlnet_maisi import ControlNetMaisi
from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi
from monai.inferers import DiffusionInferer, LatentDiffusionInferer
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, SPADEDiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

from ..errors import ModelError
from .bundle_config import BundleConfig, ConditionField, read_file
from .bundle_maisi import maisi_fields, open_maisi, open_masks, region_choices
from .bundle_weights import build, check_memory, load_into, scale_factor
from .bundle_wiring import Component, ConditionVector, SampleCall
from .diffusion import DiffusionModel

UNETS = {c.__name__: c for c in (DiffusionModelUNet, SPADEDiffusionModelUNet, DiffusionModelUNetMaisi)}
AUTOENCODERS = {c.__name__: c for c in (AutoencoderKL, AutoencoderKlMaisi)}
CONTROLNETS = {ControlNetMaisi.__name__: ControlNetMaisi}
SCHEDULERS = {DDPMScheduler.__name__: "ddpm", DDIMScheduler.__name__: "ddpm", RFlowScheduler.__name__: "rflow"}
_SCHEDULER_CLASSES = {c.__name__: c for c in (DDPMScheduler, DDIMScheduler, RFlowScheduler)}
INFERERS = {c.__name__: c for c in (DiffusionInferer, LatentDiffusionInferer)}
ALLOWED = {**UNETS, **AUTOENCODERS, **CONTROLNETS, **_SCHEDULER_CLASSES, **INFERERS}
PREFIXES = tuple(f"monai.{p}." for p in (
    "networks.nets", "networks.nets.diffusion_model_unet", "networks.nets.spade_diffusion_model_unet",
    "networks.nets.autoencoderkl", "networks.schedulers", "networks.schedulers.ddpm", "networks.schedulers.ddim",
    "networks.schedulers.rectified_flow", "inferers", "inferers.inferer",
    "apps.generation.maisi.networks.autoencoderkl_maisi", "apps.generation.maisi.networks.controlnet_maisi",
    "apps.generation.maisi.networks.diffusion_model_unet_maisi")) + (
    "generative.networks.nets.", "generative.networks.schedulers.", "generative.inferers.")
MASK_KEYS = {"unet": ("mask_generation_diffusion_def", UNETS), "autoencoder": ("mask_generation_autoencoder_def",
             AUTOENCODERS), "scheduler": ("mask_generation_noise_scheduler", _SCHEDULER_CLASSES)}
_VOXEL_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*x\s*(\d+(?:\.\d+)?)\s*x\s*(\d+(?:\.\d+)?)\s*mm")


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle offers, read from its configs alone (no weights): ``objective`` ("ddpm" | "rflow"),
    ``condition_fields``, and ``mask``: "" (none), "labels" (SPADE one-hot) or "maisi" (MAISI label map)."""

    objective: str
    condition_fields: tuple[ConditionField, ...]
    mask: str


@dataclass
class _Plan:
    """The components a bundle's config wires together, with their plain constructor arguments."""

    cfg: BundleConfig
    meta: dict[str, Any]
    wiring: list[Any]
    unet: Component
    scheduler: Component
    autoencoder: Component | None
    controlnet: Component | None
    masks: dict[str, Component]  # MAISI's mask generation: "unet", "autoencoder", "scheduler"
    kwargs: dict[str, dict[str, Any]]

    @property
    def components(self) -> list[Component]:
        return [c for c in (self.unet, self.autoencoder, self.controlnet) if c is not None]

    def info(self) -> BundleInfo:
        unet = self.kwargs[self.unet.id]
        if self.controlnet is not None:
            regions = region_choices(self.meta) if unet.get("include_top_region_index_input") else None
            return BundleInfo(self.objective, maisi_fields(_spacing(self.cfg, self.meta), regions, bool(self.masks)),
                              "maisi")
        cross = int(unet.get("cross_attention_dim") or 0) if unet.get("with_conditioning") else 0
        size = cross or int(unet.get("in_channels", 1)) - int(unet.get("out_channels", 1))
        fields = _condition_fields(self.cfg, self.meta, self.wiring, size)
        return BundleInfo(self.objective, fields, "labels" if "label_nc" in unet else "")

    @property
    def objective(self) -> str:
        return SCHEDULERS[self.scheduler.name]


def _plan(folder: Path, device: torch.device | str, overrides: dict[str, Any] | None) -> _Plan:
    if not (folder / "configs" / "metadata.json").is_file():
        raise ModelError(f"'{folder}' is not a complete MONAI bundle: configs/metadata.json is missing.")
    meta = read_file(folder / "configs" / "metadata.json")
    meta = meta if isinstance(meta, dict) else {}
    cfg = BundleConfig(folder, ALLOWED, PREFIXES, overrides)
    if "vqvae_def" in cfg.data and "autoencoder_def" not in cfg.data:
        raise ModelError(f"Bundle config '{cfg.path}' defines 'vqvae_def': VQ-VAE latent bundles are not supported.")
    wiring = _wiring(cfg)
    call = next((w for w in wiring if isinstance(w, SampleCall)), None)
    unet = (call and call.network) or _find(cfg, ("diffusion_unet_def", "diffusion_def", "network_def"), UNETS,
                                            "diffusion network")
    sched = (call and call.scheduler) or _find(cfg, ("noise_scheduler", "scheduler"), _SCHEDULER_CLASSES, "scheduler")
    ae = _find(cfg, ("autoencoder_def",), AUTOENCODERS, "autoencoder") if "autoencoder_def" in cfg.data else None
    cn = _find(cfg, ("controlnet_def",), CONTROLNETS, "ControlNet") if "controlnet_def" in cfg.data else None
    masks = {}
    if cn is not None and all(key in cfg.data for key, _ in MASK_KEYS.values()):
        masks = {name: _find(cfg, (key,), classes, f"mask-generation {name}") for name, (key, classes) in MASK_KEYS.items()}
    nets = [unet, ae, cn, masks.get("unet"), masks.get("autoencoder")]
    kwargs = {c.id: _runnable(cfg.arguments(c), device) for c in nets if c is not None}
    if ae is not None:
        _check_latent(kwargs[unet.id], kwargs[ae.id], cfg.path)
    return _Plan(cfg, meta, wiring, unet, sched, ae, cn, masks, kwargs)


def describe_bundle(folder: str | Path, overrides: dict[str, Any] | None = None) -> BundleInfo:
    """A bundle's objective, conditioning fields and mask kind, from its configs (nothing built or loaded)."""
    return _plan(Path(folder), "cpu", overrides).info()


def load_bundle(folder: str | Path, device: torch.device | str = "cpu",
                overrides: dict[str, Any] | None = None) -> DiffusionModel:
    """Open a bundle folder: its networks built from the config, weights loaded, on ``device``.
    overrides: {config id: plain value} over the config files' values (``a::b`` paths).

    Returns a DiffusionModel (a ``MaisiModel`` for MAISI's ControlNet bundle) whose ``extra`` holds
    ``condition_fields`` (tuple of ConditionField), ``array_axes`` ("xyz") and the bundle's name."""
    folder = Path(folder)
    plan = _plan(folder, device, overrides)
    cfg, kwargs = plan.cfg, plan.kwargs
    masks = [plan.masks[k] for k in ("unet", "autoencoder") if k in plan.masks]
    check_memory({c.id: (c.cls, kwargs[c.id]) for c in [*plan.components, *masks]}, device, cfg.path)
    nets = {c.id: build(c, kwargs[c.id], cfg.path) for c in plan.components}
    defaults = {plan.unet.id: ("model.pt",)}
    if plan.autoencoder is not None:
        defaults[plan.autoencoder.id] = ("autoencoder.pt", "model_autoencoder.pt")
    for c in plan.components:
        load_into(cfg, c, nets[c.id], plan.wiring, defaults.get(c.id, ()))
    unet_kwargs = kwargs[plan.unet.id]
    info = plan.info()
    common: dict[str, Any] = {
        "unet": nets[plan.unet.id].to(device).eval(),
        "scheduler": {"objective": plan.objective, **cfg.arguments(plan.scheduler)},
        "shape": (),
        "in_channels": int(unet_kwargs.get("out_channels", unet_kwargs.get("in_channels", 1))),
        "spacing": _spacing(cfg, plan.meta),
        "source": str(folder),
        "extra": {"bundle_name": plan.meta.get("name", folder.name), "version": plan.meta.get("version"),
                  "notes": {}, "array_axes": "xyz", "condition_fields": info.condition_fields},
    }
    if plan.autoencoder is not None:
        common["autoencoder"] = nets[plan.autoencoder.id].to(device).eval()
        common["scale_factor"] = scale_factor(cfg)
    if plan.controlnet is not None:
        model = open_maisi(cfg, common, nets[plan.controlnet.id].to(device).eval(),
                           kwargs[plan.autoencoder.id] if plan.autoencoder else {}, unet_kwargs)
        scheduler = plan.masks.get("scheduler")
        spec = {"objective": SCHEDULERS[scheduler.name], **cfg.arguments(scheduler)} if scheduler else {}
        model.masks, model.masks_missing = open_masks(cfg, plan.masks, kwargs, plan.wiring, spec, device)
        return model
    model = DiffusionModel(**common)
    model.shape = _shape(cfg, plan.meta, model, int(unet_kwargs.get("spatial_dims", 2)))
    model.condition_names = tuple(f.label for f in info.condition_fields)
    return model


def _runnable(kwargs: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Constructor arguments that run on ``device``: MAISI's networks refuse ``use_flash_attention`` without
    CUDA (the project turns on PyTorch's fused attention itself, :func:`.diffusion.speed_up`), and its
    autoencoder's ``norm_float16`` (a CUDA memory saving) fails on the CPU."""
    out = dict(kwargs)
    if out.get("use_flash_attention") and not torch.cuda.is_available():
        out["use_flash_attention"] = False
    if out.get("norm_float16") and torch.device(device).type != "cuda":
        out["norm_float16"] = False
    return out


def _check_latent(unet: dict[str, Any], ae: dict[str, Any], where: Path) -> None:
    """ModelError unless the UNet's dimensions and output channels are the autoencoder's latent's."""
    dims, out = unet.get("spatial_dims"), unet.get("out_channels")
    if dims != ae.get("spatial_dims") or out != ae.get("latent_channels", 3):
        raise ModelError(f"Bundle config '{where}': the diffusion network ({dims}D, {out} output channels) does not "
                         f"fit the autoencoder ({ae.get('spatial_dims')}D, {ae.get('latent_channels', 3)} latent channels).")


def _wiring(cfg: BundleConfig) -> list[Any]:
    """The recognised wiring lines among the config's top-level ``$`` entries (others are never used)."""
    found = []
    for id_, raw in cfg.entries():
        if isinstance(raw, str) and raw.startswith("$"):
            with contextlib.suppress(ModelError):
                found.append(cfg.get(id_))
    return found


def _find(cfg: BundleConfig, keys: tuple[str, ...], classes: dict[str, type], what: str) -> Component:
    """The first of ``keys`` that resolves to a component of ``classes`` (refusals of those keys propagate)."""
    for key in keys:
        if key in cfg.data:
            value = cfg.get(key)
            if isinstance(value, Component) and value.name in classes:
                return value
    raise ModelError(f"Bundle config '{cfg.path}' has no {what} napari-medgen can build (looked for "
                     f"{', '.join(keys)} with _target_ one of {', '.join(sorted(classes))}).")


def _spacing(cfg: BundleConfig, meta: dict[str, Any]) -> tuple[float, float, float]:
    """Voxel size (x, y, z) mm: a plain ``spacing`` entry, else metadata's "... AxBxC mm voxel size", else 1."""
    with contextlib.suppress(ModelError):
        value = cfg.get("spacing") if "spacing" in cfg.data else None
        if isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                               and 0 < v < 1e6 for v in value):
            return tuple(float(v) for v in value)  # type: ignore[return-value]
    found = _VOXEL_SIZE.search(str(meta.get("image_classes", "")))
    voxel = tuple(float(g) for g in found.groups()) if found else ()
    return voxel if voxel and all(0 < v < 1e6 for v in voxel) else (1.0, 1.0, 1.0)  # type: ignore[return-value]


def _data_formats(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """metadata.json's ``network_data_format`` output specs, then input specs (mappings only)."""
    fmt = meta.get("network_data_format", {})
    fmt = fmt if isinstance(fmt, dict) else {}
    return [spec for part in ("outputs", "inputs") if isinstance(fmt.get(part), dict)
            for spec in fmt[part].values() if isinstance(spec, dict)]


def _shape(cfg: BundleConfig, meta: dict[str, Any], model: DiffusionModel, dims: int) -> tuple[int, ...]:
    """Network sample shape (x, y[, z]): a plain ``latent_shape`` ([C,] *spatial), else metadata's image shape
    (a leading channel dropped) divided by the latent factor; () when neither gives it."""
    value = None
    with contextlib.suppress(ModelError):
        value = cfg.get("latent_shape") if "latent_shape" in cfg.data else None
    if _ints(value) and len(value) in (dims, dims + 1):
        return tuple(value[-dims:])
    f = model.latent_factor
    for spec in _data_formats(meta):
        shp = spec.get("spatial_shape")
        if _ints(shp) and len(shp) == dims + 1 and shp[0] == spec.get("num_channels", 1):
            shp = shp[1:]
        if _ints(shp) and len(shp) == dims and all(s % f == 0 for s in shp):
            return tuple(s // f for s in shp)
    return ()


def _ints(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                         for v in value)


def _condition_fields(cfg: BundleConfig, meta: dict[str, Any], wiring: list[Any], size: int) -> tuple[ConditionField, ...]:
    """Named conditioning values: the config ids of its conditioning vector (defaults: their values), labelled
    and ranged by metadata's tabular input (``channel_def``, ``value_range``)."""
    if not size:
        return ()
    vec = next((w for w in wiring if isinstance(w, ConditionVector) and len(w.ids) == size), None)
    spec = next((s for s in _data_formats(meta) if s.get("type") == "tabular"
                 and isinstance(s.get("channel_def"), dict) and len(s["channel_def"]) == size), {})
    names = spec.get("channel_def", {})
    rng = spec.get("value_range")
    low, high = (float(rng[0]), float(rng[1])) if isinstance(rng, list) and len(rng) == 2 else (None, None)
    fields = []
    for i in range(size):
        key = vec.ids[i] if vec else f"c{i}"
        default = cfg.get(key) if vec else (low if low is not None else 0.0)
        default = float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else 0.0
        fields.append(ConditionField(key, str(names.get(str(i), key)), default, low, high))
    return tuple(fields)
