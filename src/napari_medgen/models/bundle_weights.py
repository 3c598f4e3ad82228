"""Weights of a MONAI bundle's networks: the memory they need (counted on PyTorch's ``meta`` device,
nothing allocated), and loading them from the config's own loading lines or the zoo's default file
names with ``torch.load(weights_only=True)`` (a file holding pickled objects is refused, nothing in it
runs); MONAI Generative names through the network's own ``load_old_state_dict``."""

from __future__ import annotations

import contextlib
import io
import math
import pickle
from pathlib import Path
from typing import Any

import psutil
import torch
from monai.utils import OptionalImportError

from ..errors import ModelError
from .bundle_config import BundleConfig
from .bundle_wiring import Component, ConfigRefused, CopyState, LoadWeights, WeightFile
from .diffusion import CONFIG_ERRORS

MEMORY_SHARE = 0.5  # the weights may take at most this share of the device's free memory


def weight_bytes(cls: type, kwargs: dict[str, Any]) -> int:
    """float32 bytes of the parameters of ``cls(**kwargs)``, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        net = cls(**kwargs)
    return 4 * sum(p.numel() for p in net.parameters())


def check_memory(nets: dict[str, tuple[type, dict[str, Any]]], device: torch.device | str, where: Path) -> None:
    """ModelError naming the estimate when the networks' weights would take more than MEMORY_SHARE of the
    free memory of ``device``, or when MONAI refuses their arguments."""
    total = 0
    for id_, (cls, kwargs) in nets.items():
        try:
            total += weight_bytes(cls, kwargs)
        except OptionalImportError as exc:
            raise ModelError(f"Bundle network '{id_}' needs an optional package: {str(exc).splitlines()[0]}.") from None
        except (*CONFIG_ERRORS, RuntimeError) as exc:
            raise ModelError(f"Bundle config '{where}': '{id_}' is not valid for MONAI's {cls.__name__}: "
                             f"{str(exc)[:200]!r}") from None
    dev = torch.device(device)
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else psutil.virtual_memory().available
    if total > MEMORY_SHARE * free:
        raise ModelError(f"Bundle '{where.parent.parent}': its networks' weights alone need about {total / 2**30:.3g} GiB "
                         f"({total // 4:,} parameters), more than {MEMORY_SHARE:.0%} of the {free / 2**30:.3g} GiB free "
                         f"on {dev}; they were not built.")


def build(comp: Component, kwargs: dict[str, Any], where: Path) -> torch.nn.Module:
    try:
        return comp.cls(**kwargs)
    except (*CONFIG_ERRORS, RuntimeError) as exc:
        raise ModelError(f"Bundle config '{where}': '{comp.id}' is not valid for MONAI's {comp.name}: {exc!r}") from None


def _inside(folder: Path, rel: str, cfg: BundleConfig) -> Path:
    path = (folder / rel).resolve()
    if folder.resolve() not in path.parents:
        raise ConfigRefused(f"Bundle config '{cfg.path}' loads weights from '{rel}', outside the bundle folder.")
    return path


def weight_file(cfg: BundleConfig, comp: Component, wiring: list[Any], defaults: tuple[str, ...]) -> tuple[WeightFile, Path]:
    """Where ``comp``'s weights are: the config's loading line for it, else the first of ``defaults``
    (names under models/) present, else the first default. ModelError when there is neither."""
    folder = cfg.folder
    line = next((w for w in wiring if isinstance(w, LoadWeights) and w.target is comp), None)
    if line is not None:
        return line.source, _inside(folder, line.source.path, cfg)
    candidates = [folder / "models" / n for n in defaults]
    path = next((p for p in candidates if p.is_file()), candidates[0] if candidates else None)
    if path is None or not path.is_file():
        copy = any(isinstance(w, CopyState) and w.target is comp for w in wiring)
        raise ModelError(f"Bundle '{folder}' has no weights for '{comp.id}' (looked for "
                         f"{', '.join(str(p.relative_to(folder)) for p in candidates) or 'a loading line'})"
                         + (", and it would only copy another network's" if copy else "") + ".")
    return WeightFile(str(path.relative_to(folder))), path


def load_into(cfg: BundleConfig, comp: Component, net: torch.nn.Module, wiring: list[Any],
              defaults: tuple[str, ...] = ()) -> None:
    """Load ``comp``'s weights (:func:`weight_file`) into ``net``."""
    source, path = weight_file(cfg, comp, wiring, defaults)
    if not path.is_file():
        raise ModelError(f"Bundle '{cfg.folder}' is missing the weights file '{source.path}' for '{comp.id}' "
                         "(download the bundle with its weights, e.g. python -m monai.bundle download).")
    state = load_weights(path, source.key)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        if not _load_old(net, state):
            raise ModelError(f"Bundle weights '{path}' do not fit '{comp.id}' in '{cfg.path}': {str(exc)[:300]}") from None


def load_weights(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` with ``torch.load(weights_only=True)``: the ``key`` entry of a checkpoint
    dict, else unwrapped from {"state_dict"/"model"/...: sd}; DistributedDataParallel's ``module.``
    prefixes dropped. ModelError for pickled objects or code, damaged files, or no tensors."""
    obj = _torch_load(path)
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise ModelError(f"Bundle weights '{path}' have no entry '{key}'.")
        obj = obj[key]
    for k in ("state_dict", "model", "network", "diffusion", "autoencoder"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"Bundle weights '{path}'{f' [{key!r}]' if key else ''} are not a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError, OSError) as exc:
        raise ModelError(f"Bundle weights '{path}' hold more than plain tensors (pickled objects or code), or are "
                         f"damaged; they were not loaded and nothing in them was run. ({str(exc).splitlines()[0][:160]})") from None


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


def scale_factor(cfg: BundleConfig, key: str = "scale_factor") -> float:
    """The latent scale factor ``key``: a plain number, an entry of a weights file, or 1 when the config has
    no such entry (the zoo's latent samplers without one decode latents unscaled)."""
    value = cfg.get(key) if key in cfg.data else 1.0
    if isinstance(value, WeightFile) and value.key:
        tensor = _torch_load(_inside(cfg.folder, value.path, cfg))
        value = tensor.get(value.key) if isinstance(tensor, dict) else None
        value = float(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelError(f"Bundle config '{cfg.path}': '{key}' must be a positive number, got {str(value)[:60]}.")
    return float(value)
