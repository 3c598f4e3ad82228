"""Read a MONAI model-zoo generative bundle from disk without running any of its code.

A bundle folder holds ``configs/metadata.json``, ``configs/inference.json`` (or ``.yaml``/``.yml``,
optionally with ``configs/common.*``) and ``models/model.pt``. MONAI's ConfigParser would evaluate
``$`` expressions and imports from those files; here only two entries are read:

* the network (``network_def``, or ``diffusion_def``): ``_target_`` must be MONAI's
  ``DiffusionModelUNet`` or ``SPADEDiffusionModelUNet``;
* the scheduler (``scheduler`` or ``noise_scheduler``): MONAI's ``DDPMScheduler``,
  ``DDIMScheduler`` or ``RFlowScheduler``.

Their arguments must be plain JSON values: any string starting with ``$``, ``@`` or ``%``
(expression, reference, macro) or any other ``_key_`` is refused with a message naming the key.
Weights load with ``torch.load(weights_only=True)``: a file holding pickled objects is refused.
The spatial shape of a sample comes from ``metadata.json`` (``network_data_format`` inputs or
outputs ``spatial_shape``) when it is a list of numbers; otherwise the caller gives it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import ModelError
from .diffusion import DiffusionModel, build_unet

_PREFIXES = ("monai.networks.nets.", "monai.networks.schedulers.", "generative.networks.nets.",
             "generative.networks.schedulers.", "monai.networks.nets.diffusion_model_unet.")
NETWORKS = {"DiffusionModelUNet", "SPADEDiffusionModelUNet"}
SCHEDULERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddpm", "RFlowScheduler": "rflow"}
_RENAMED = {"num_channels": "channels"}  # MONAI Generative (before MONAI 1.4) argument names
_CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


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
        if k == "_target_":
            continue
        if k.startswith("_"):
            raise ModelError(f"Bundle config '{where}': '{key}.{k}' is a config-parser directive; it is not supported.")
        kwargs[_RENAMED.get(k, k)] = _plain(v, f"{key}.{k}", where)
    return name, kwargs


def _shape_from_metadata(meta: dict[str, Any]) -> tuple[int, ...] | None:
    fmt = meta.get("network_data_format", {}) if isinstance(meta, dict) else {}
    for part in ("outputs", "inputs"):
        for spec in (fmt.get(part) or {}).values() if isinstance(fmt.get(part), dict) else []:
            shp = spec.get("spatial_shape") if isinstance(spec, dict) else None
            if isinstance(shp, list) and shp and all(isinstance(s, int) and s > 0 for s in shp):
                return tuple(shp)
    return None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``model.pt`` with ``torch.load(weights_only=True)``; unwraps {"model": sd}-style
    checkpoints and DistributedDataParallel's ``module.`` prefixes. Pickled code -> ModelError."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError, OSError) as exc:
        raise ModelError(f"Bundle weights '{path}' hold more than plain tensors (pickled objects or code), or are "
                         f"damaged; they were not loaded and nothing in them was run. ({str(exc).splitlines()[0][:160]})") from None
    for key in ("state_dict", "model", "network", "diffusion"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"Bundle weights '{path}' are not a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


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
    latent = [k for k in ("autoencoder_def", "autoencoder", "vqvae_def") if k in config]
    if latent:
        raise ModelError(f"Bundle config '{config_path}' defines '{latent[0]}': latent-diffusion bundles "
                         "(autoencoder + diffusion network) are not supported yet.")
    net_name, net_kwargs = _component(config, ("network_def", "diffusion_def"), NETWORKS, "network", config_path)
    sched_name, sched_kwargs = _component(config, ("scheduler", "noise_scheduler"), SCHEDULERS, "scheduler", config_path)
    if (net_name == "SPADEDiffusionModelUNet") != ("label_nc" in net_kwargs):
        raise ModelError(f"Bundle config '{config_path}': SPADEDiffusionModelUNet needs 'label_nc'.")
    unet = build_unet(net_kwargs)["unet"]
    weights = folder / "models" / "model.pt"
    try:
        unet.load_state_dict(load_weights(weights))
    except RuntimeError as exc:
        raise ModelError(f"Bundle weights '{weights}' do not fit the network in '{config_path}': {str(exc)[:300]}") from None
    shape = _shape_from_metadata(meta)
    spatial_dims = int(net_kwargs.get("spatial_dims", 2))
    if shape is not None and len(shape) != spatial_dims:
        shape = None
    return DiffusionModel(
        unet=unet.to(device).eval(),
        scheduler={"objective": SCHEDULERS[sched_name], **sched_kwargs},
        shape=shape or (),
        in_channels=int(net_kwargs.get("in_channels", 1)),
        normalization=None,
        source=str(folder),
        extra={"bundle_name": meta.get("name", folder.name), "version": meta.get("version")},
    )
