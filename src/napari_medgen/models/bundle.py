"""Read a MONAI model-zoo generative bundle from disk without running any of its code.

A bundle folder holds ``configs/metadata.json``, ``configs/inference.json`` (or ``.yaml``/``.yml``,
optionally with ``configs/common.*``) and ``models/model.pt``. MONAI's ConfigParser would evaluate
``$`` expressions and imports from those files; here only these entries are read:

* the diffusion network (``network_def`` or ``diffusion_def``; ``diffusion_def`` first in latent
  bundles, whose ``network_def`` may be the autoencoder): ``_target_`` must be MONAI's
  ``DiffusionModelUNet`` or ``SPADEDiffusionModelUNet``; weights ``models/model.pt``;
* the scheduler (``scheduler`` or ``noise_scheduler``): MONAI's ``DDPMScheduler``,
  ``DDIMScheduler`` or ``RFlowScheduler``;
* latent bundles (MONAI's brain_image_synthesis_latent_diffusion_model layout): ``autoencoder_def``,
  MONAI's ``AutoencoderKL``, weights ``models/autoencoder.pt`` (or ``models/model_autoencoder.pt``);
  ``scale_factor`` (1 when absent: the bundle's sampler then decodes latents unscaled) and
  ``latent_shape`` ([channels,] *spatial) when they are plain numbers.

Their arguments must be plain JSON values: any string starting with ``$``, ``@`` or ``%``
(expression, reference, macro) or any ``_key_`` other than ``_requires_``/``_desc_`` (evaluation
order and description, ignored) is refused with a message naming the key. Weights load with
``torch.load(weights_only=True)``: a file holding pickled objects is refused; weights saved by MONAI
Generative (before MONAI 1.4) are renamed with MONAI's own ``load_old_state_dict``.
The spatial shape of a sample comes from ``metadata.json`` (``network_data_format`` inputs or
outputs ``spatial_shape``, divided by the autoencoder's downsampling in latent bundles) when it is a
list of numbers; otherwise the caller gives it. Where a latent bundle's ``scale_factor`` is an
expression, the model's ``scale_factor`` is None and the caller gives the value.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
from pathlib import Path
from typing import Any

import torch
import yaml
from monai.networks.nets import AutoencoderKL

from ..errors import ModelError
from .diffusion import CONFIG_ERRORS, DiffusionModel, build_unet

_PREFIXES = ("monai.networks.nets.", "monai.networks.schedulers.", "generative.networks.nets.",
             "generative.networks.schedulers.", "monai.networks.nets.diffusion_model_unet.")
NETWORKS = {"DiffusionModelUNet", "SPADEDiffusionModelUNet"}
AUTOENCODERS = {"AutoencoderKL"}
SCHEDULERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddpm", "RFlowScheduler": "rflow"}
# MONAI Generative (before MONAI 1.4) argument names
_RENAMED = {"num_channels": "channels", "use_checkpointing": "use_checkpoint"}
_IGNORED = ("_requires_", "_desc_")  # config-parser evaluation order and description: nothing to build
_CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
_AUTOENCODER_WEIGHTS = ("autoencoder.pt", "model_autoencoder.pt")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"Bundle config '{path}' cannot be read: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ModelError(f"Bundle config '{path}' must hold a mapping of keys, not {type(data).__name__}.")
    return data


def _plain(value: Any, key: str, where: Path) -> Any:
    """Check that ``value`` is a plain JSON value with no expression/reference/macro strings."""
    if isinstance(value, str):
        if value[:1] in ("$", "@", "%"):
            raise ModelError(f"Bundle config '{where}': '{key}' is '{value[:60]}', an expression or reference that "
                             "napari-medgen does not evaluate (bundle configs are code); only plain values are read.")
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        return [_plain(v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _plain(v, f"{key}.{k}", where) for k, v in value.items()}
    raise ModelError(f"Bundle config '{where}': '{key}' is not a plain value.")


def _component(config: dict[str, Any], keys: tuple[str, ...], allowed: set[str] | dict[str, str], what: str,
               where: Path) -> tuple[str, dict[str, Any]]:
    """(class name, plain kwargs) of the first of ``keys`` in the config; refuses anything else."""
    key = next((k for k in keys if k in config), None)
    if key is None:
        raise ModelError(f"Bundle config '{where}' has no {what} definition (looked for {', '.join(keys)}).")
    entry = config[key]
    if not isinstance(entry, dict) or not isinstance(entry.get("_target_"), str):
        raise ModelError(f"Bundle config '{where}': '{key}' must be a mapping with a '_target_' class name.")
    target = entry["_target_"]
    name = target
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if name not in allowed:
        raise ModelError(f"Bundle config '{where}': '{key}._target_' is '{target}', which is not allowed; "
                         f"napari-medgen builds only MONAI's {', '.join(sorted(allowed))}.")
    kwargs: dict[str, Any] = {}
    for k, v in entry.items():
        if k == "_target_" or k in _IGNORED:
            continue
        if k.startswith("_"):
            raise ModelError(f"Bundle config '{where}': '{key}.{k}' is a config-parser directive; it is not supported.")
        kwargs[_RENAMED.get(k, k)] = _plain(v, f"{key}.{k}", where)
    return name, kwargs


def _data_formats(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """metadata.json's ``network_data_format`` output specs, then input specs (mappings only)."""
    fmt = meta.get("network_data_format", {}) if isinstance(meta, dict) else {}
    fmt = fmt if isinstance(fmt, dict) else {}
    return [spec for part in ("outputs", "inputs") if isinstance(fmt.get(part), dict)
            for spec in fmt[part].values() if isinstance(spec, dict)]


def _shape_from_metadata(meta: dict[str, Any]) -> tuple[int, ...] | None:
    for spec in _data_formats(meta):
        shp = spec.get("spatial_shape")
        if isinstance(shp, list) and shp and all(isinstance(s, int) and s > 0 for s in shp):
            return tuple(shp)
    return None


def _condition_names(meta: dict[str, Any], size: int) -> tuple[str, ...]:
    """Names of ``size`` conditioning values: the ``channel_def`` of a tabular input in metadata.json."""
    for spec in _data_formats(meta):
        names = spec.get("channel_def")
        if spec.get("type") == "tabular" and isinstance(names, dict) and len(names) == size:
            return tuple(str(names.get(str(i), names.get(i, i))) for i in range(size))
    return ()


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``model.pt`` with ``torch.load(weights_only=True)``; unwraps {"model": sd}-style
    checkpoints and DistributedDataParallel's ``module.`` prefixes. Pickled code -> ModelError."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError, OSError) as exc:
        raise ModelError(f"Bundle weights '{path}' hold more than plain tensors (pickled objects or code), or are "
                         f"damaged; they were not loaded and nothing in them was run. ({str(exc).splitlines()[0][:160]})") from None
    for key in ("state_dict", "model", "network", "diffusion", "autoencoder"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"Bundle weights '{path}' are not a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(net: torch.nn.Module, weights: Path, config_path: Path) -> None:
    """Load a state dict from ``weights`` into ``net``; keys of MONAI Generative (before MONAI 1.4) are
    renamed by the network's own ``load_old_state_dict``. ModelError when they do not fit."""
    state = load_weights(weights)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        if not _load_old(net, state):
            raise ModelError(f"Bundle weights '{weights}' do not fit the network in '{config_path}': "
                             f"{str(exc)[:300]}") from None


def _load_old(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Load MONAI Generative weights with the network's ``load_old_state_dict``; True when every tensor of
    ``state`` went to exactly one of the network's (MONAI's function would keep random values otherwise)."""
    old = getattr(net, "load_old_state_dict", None)
    remaining = dict(state)  # MONAI's function pops what it uses
    if old is None or len(state) != len(net.state_dict()):
        return False
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its diagnostics
            old(remaining)
    except (RuntimeError, KeyError):
        return False
    return not remaining


def _scale_factor(config: dict[str, Any], where: Path) -> tuple[float | None, str]:
    """(scale factor, "") from the config's plain ``scale_factor`` (1.0 when absent), or (None, why) when it
    is an expression."""
    value = config.get("scale_factor", 1.0)
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        return None, (f"its config '{where}' gives 'scale_factor' as '{value[:60]}', an expression that "
                      "napari-medgen does not evaluate")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelError(f"Bundle config '{where}': 'scale_factor' must be a positive number, got {value!r}.")
    return float(value), ""


def _latent_shape(config: dict[str, Any], meta: dict[str, Any], dims: int, factor: int,
                  where: Path) -> tuple[tuple[int, ...], str]:
    """(latent spatial shape, "") from a plain ``latent_shape`` ([C,] *spatial) or metadata's image shape
    divided by ``factor``; ((), why not) when neither gives it."""
    value = config.get("latent_shape")
    if isinstance(value, list) and len(value) in (dims, dims + 1) \
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return tuple(value[-dims:]), ""
    image = _shape_from_metadata(meta)
    if image is not None and len(image) == dims and all(s % factor == 0 for s in image):
        return tuple(s // factor for s in image), ""
    if value is not None:
        return (), f"its config '{where}' gives 'latent_shape' as {str(value)[:60]}, which napari-medgen does not evaluate"
    return (), f"its metadata gives no image shape that is a multiple of the autoencoder's downsampling {factor}"


def load_bundle(folder: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """Build the bundle's diffusion network and scheduler from plain config values and load its weights."""
    folder = Path(folder)
    configs = folder / "configs"
    config_path = next((configs / n for n in _CONFIG_NAMES if (configs / n).is_file()), None)
    missing = [str(p.relative_to(folder)) for p in (configs / "metadata.json", folder / "models" / "model.pt")
               if not p.is_file()]
    if config_path is None:
        missing.insert(0, "configs/inference.json (or .yaml)")
    if missing:
        raise ModelError(f"'{folder}' is not a complete MONAI bundle: missing {', '.join(missing)}.")
    meta = _read_config(configs / "metadata.json")
    config: dict[str, Any] = {}
    for name in ("common.json", "common.yaml", "common.yml"):
        if (configs / name).is_file():
            config.update(_read_config(configs / name))
    config.update(_read_config(config_path))
    if "vqvae_def" in config and "autoencoder_def" not in config:
        raise ModelError(f"Bundle config '{config_path}' defines 'vqvae_def': VQ-VAE latent bundles are not "
                         "supported (latent bundles with an AutoencoderKL 'autoencoder_def' are).")
    latent = "autoencoder_def" in config
    net_keys = ("diffusion_def", "network_def") if latent else ("network_def", "diffusion_def")
    net_name, net_kwargs = _component(config, net_keys, NETWORKS, "network", config_path)
    sched_name, sched_kwargs = _component(config, ("scheduler", "noise_scheduler"), SCHEDULERS, "scheduler", config_path)
    if (net_name == "SPADEDiffusionModelUNet") != ("label_nc" in net_kwargs):
        raise ModelError(f"Bundle config '{config_path}': SPADEDiffusionModelUNet needs 'label_nc'.")
    if latent and "label_nc" in net_kwargs:
        raise ModelError(f"Bundle config '{config_path}': label-conditioned (SPADE) latent diffusion is not supported.")
    unet = build_unet(net_kwargs)["unet"]
    _load_into(unet, folder / "models" / "model.pt", config_path)
    fields: dict[str, Any] = {"in_channels": int(net_kwargs.get("in_channels", 1))}
    notes: dict[str, str] = {}
    if latent:
        fields, notes["scale_factor"] = _latent_fields(folder, config, net_kwargs, config_path, device)
    model = DiffusionModel(
        unet=unet.to(device).eval(),
        scheduler={"objective": SCHEDULERS[sched_name], **sched_kwargs},
        shape=(),
        normalization=None,
        source=str(folder),
        extra={"bundle_name": meta.get("name", folder.name), "version": meta.get("version"), "notes": notes},
        **fields,
    )
    dims = int(net_kwargs.get("spatial_dims", 2))
    if latent:
        model.shape, notes["shape"] = _latent_shape(config, meta, dims, model.latent_factor, config_path)
    else:
        shape = _shape_from_metadata(meta)
        model.shape = shape if shape is not None and len(shape) == dims else ()
    model.condition_names = _condition_names(meta, model.condition_size)
    return model


def _latent_fields(folder: Path, config: dict[str, Any], net_kwargs: dict[str, Any], config_path: Path,
                   device: torch.device | str) -> tuple[dict[str, Any], str]:
    """DiffusionModel fields of a latent bundle (its AutoencoderKL with weights, on ``device``; in_channels =
    the latent's; scale_factor), and why the scale factor is unknown ("" when it is known)."""
    _, kwargs = _component(config, ("autoencoder_def",), AUTOENCODERS, "autoencoder", config_path)
    try:
        ae = AutoencoderKL(**kwargs)
    except CONFIG_ERRORS as exc:
        raise ModelError(f"Bundle config '{config_path}': 'autoencoder_def' is not valid for MONAI: {exc!r}") from None
    channels, dims = int(ae.latent_channels), int(ae.encoder.spatial_dims)
    net_dims, out = int(net_kwargs.get("spatial_dims", 2)), int(net_kwargs.get("out_channels", 0))
    if dims != net_dims or out != channels:
        raise ModelError(f"Bundle config '{config_path}': the diffusion network ({net_dims}D, {out} output channels) "
                         f"does not fit the autoencoder ({dims}D, {channels} latent channels).")
    weights = next((folder / "models" / n for n in _AUTOENCODER_WEIGHTS if (folder / "models" / n).is_file()), None)
    if weights is None:
        raise ModelError(f"'{folder}' is a latent-diffusion bundle but has no autoencoder weights "
                         f"(looked for {', '.join('models/' + n for n in _AUTOENCODER_WEIGHTS)}).")
    _load_into(ae, weights, config_path)
    scale, note = _scale_factor(config, config_path)
    return {"autoencoder": ae.to(device).eval(), "in_channels": channels, "scale_factor": scale}, note
