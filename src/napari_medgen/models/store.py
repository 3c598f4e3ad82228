"""A model on disk: ``NAME.safetensors`` (weights) + ``NAME.json`` (its card, see :mod:`.card`).

Cards are checked (:class:`.card.ModelCard`) on every read and write; a card written before the
current names is migrated on read (:func:`.card.migrate`). Weights load with safetensors only:
nothing is ever unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..atomic import atomic_write_bytes
from ..errors import ModelError
from .card import ModelCard, migrate

Builder = Callable[[dict[str, Any]], torch.nn.Module | dict[str, torch.nn.Module]]
# The project's networks take < 10 MB; a card asking for more than 512 MiB is refused before building.
MAX_NETWORK_BYTES = 2**29


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "models"


def shipped_models(family: str | tuple[str, ...] | None = None) -> dict[str, Path]:
    """The models shipped with the package, {name: card path}: all of them by name, or those of
    ``family`` (one family, or several: in their order, each by name)."""
    wanted = (family,) if isinstance(family, str) else family
    found: list[tuple[int, str, Path]] = []
    for card_path in sorted(SHIPPED_DIR.glob("*.json")):
        if card_path.name.endswith(".directions.json"):
            continue
        try:
            name = load_card(card_path)["family"]
        except ModelError:
            continue
        if wanted is None or name in wanted:
            found.append((0 if wanted is None else wanted.index(name), card_path.stem, card_path))
    return {stem: path for _, stem, path in sorted(found)}


def resolve_model(model: str | Path) -> Path:
    """A model given as a path (``NAME``, ``NAME.json``, ``NAME.safetensors``, a bundle folder) or as a
    shipped model's name (e.g. "spade_brain") -> its path (the path itself when neither is found)."""
    p = Path(model)
    if p.is_dir() or p.is_file() or p.with_suffix(".json").is_file():
        return p
    return shipped_models().get(str(model), p)


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """Return (weights, card) paths for ``NAME``, ``NAME.json`` or ``NAME.safetensors``."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_model(path: str | Path, modules: dict[str, torch.nn.Module] | torch.nn.Module, card: dict[str, Any],
               half: bool = False) -> tuple[Path, Path]:
    """Write weights and card atomically.

    modules: one module, or several by name (e.g. {"generator": g, "encoder": e}); their
    parameters are stored as ``name.param``. half: store floating tensors as float16 (they
    are restored to float32 on load).
    """
    weights_path, card_path = model_paths(path)
    if isinstance(modules, torch.nn.Module):
        modules = {"model": modules}
    tensors: dict[str, torch.Tensor] = {}
    for mname, module in modules.items():
        for k, v in module.state_dict().items():
            t = v.detach().cpu().contiguous()
            if half and t.is_floating_point():
                t = t.half()
            tensors[f"{mname}.{k}"] = t
    card = migrate(card)
    card.setdefault("modules", sorted(modules))
    card["weights_dtype"] = "float16" if half else "float32"
    _check_json(card)
    ModelCard.from_json(card, str(card_path))
    atomic_write_bytes(weights_path, save(tensors))
    atomic_write_bytes(card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return weights_path, card_path


def load_card(path: str | Path) -> dict[str, Any]:
    """A model card's JSON object, migrated and checked (ModelError naming the card and the key
    when it is missing, malformed, or has an unknown or wrongly typed entry)."""
    _, card_path = model_paths(path)
    if not card_path.is_file():
        raise ModelError(f"Model card '{card_path}' does not exist.")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"Model card '{card_path}' is not valid JSON: {exc}") from None
    card = migrate(raw) if isinstance(raw, dict) else raw
    ModelCard.from_json(card, str(card_path))
    return card


def read_card(path: str | Path) -> ModelCard:
    """A model card, typed (see :func:`load_card`)."""
    return ModelCard.from_json(load_card(path), str(model_paths(path)[1]))


def record_metrics(path: str | Path, section: str, metrics: dict[str, Any]) -> None:
    """Write measured figures into the card's ``metrics[section]`` (atomically; weights untouched)."""
    card = load_card(path)
    card.setdefault("metrics", {})[section] = metrics
    _check_json(card)
    atomic_write_bytes(model_paths(path)[1], (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())


def load_state(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Load weights as {module_name: state_dict}, floats as float32. Never unpickles."""
    weights_path, _ = model_paths(path)
    if not weights_path.is_file():
        raise ModelError(f"Model weights '{weights_path}' do not exist.")
    try:
        flat = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"Model weights '{weights_path}' are not a valid safetensors file: {exc}") from None
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in flat.items():
        mname, _, pname = key.partition(".")
        out.setdefault(mname, {})[pname] = t.float() if t.is_floating_point() else t
    return out


def load_family(path: str | Path, family: str, build: Builder,
                device: torch.device | str = "cpu") -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """Build ``family``'s modules with ``build(card["network"])`` and load their weights; eval mode, on ``device``.

    Returns ({module_name: module}, card). ``build`` returns either one module or a dict of modules
    matching the names stored in the weights. A card of another family, network settings that do
    not build, or a network over MAX_NETWORK_BYTES (estimated on the meta device) is a ModelError.
    """
    card = load_card(path)
    if card["family"] != family:
        raise ModelError(f"Model '{path}' is of family '{card['family']}', not '{family}'.")
    network = card.get("network", {})
    with torch.device("meta"):  # sizes and types checked without taking memory
        size = sum(t.numel() * t.element_size() for m in _build(path, family, build, network).values()
                   for t in (*m.parameters(), *m.buffers()))
    if size > MAX_NETWORK_BYTES:
        raise ModelError(f"Model card '{model_paths(path)[1]}': its 'network' settings make a '{family}' network "
                         f"of {size / 2**30:.3g} GiB, over the {MAX_NETWORK_BYTES / 2**30:.3g} GiB a model of this "
                         f"project may take: refused before building it.")
    modules = _build(path, family, build, network)
    state = load_state(path)
    for mname, module in modules.items():
        if mname not in state:
            raise ModelError(f"Model weights for '{path}' lack module '{mname}' (found: {', '.join(sorted(state))}).")
        try:
            module.load_state_dict(state[mname])
        except RuntimeError as exc:
            raise ModelError(f"Model weights for '{path}' do not fit the network in its card: {str(exc)[:300]}") from None
        module.to(device).eval()
    return modules, card


def _build(path: str | Path, family: str, build: Builder, network: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """{module_name: module} built from the card's network settings; ModelError when they do not build."""
    try:
        built = build(network)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, ZeroDivisionError) as exc:
        raise ModelError(f"Model card '{model_paths(path)[1]}': its 'network' settings do not build a "
                         f"'{family}' network ({type(exc).__name__}: {str(exc)[:200]}).") from None
    return built if isinstance(built, dict) else {"model": built}


def _check_json(obj: Any) -> None:
    try:
        json.dumps(obj)
    except TypeError as exc:
        raise ModelError(f"Model card must hold plain JSON values only: {exc}") from None
