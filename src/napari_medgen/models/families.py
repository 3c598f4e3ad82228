"""The registry of model families, and the one way to open a model: :func:`open_model`.

A family module defines ``build(network_config) -> nn.Module | {name: nn.Module}`` (and, where
the family has one, its typed handle) and knows nothing of this registry; each is imported here,
where it is registered: one line in :data:`BUILDERS`, and one in :data:`OPENERS` for a handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, ModelError
from . import anomaly_ae, bundle, diffusion, features, label_vae, latent, spade, temporal
from .synthesizer import Synthesizer
from .card import ModelCard
from .latent_handle import LatentModel
from .store import Builder, load_card, load_family, read_card, resolve_model

BUILDERS: dict[str, Builder] = {
    "anomaly_ae": anomaly_ae.build_anomaly_ae,
    "diffusion": diffusion.build_unet,
    "feature_encoder": features.build_feature_encoder,
    "gan": latent.build_gan,
    "label_vae": label_vae.build_label_vae,
    "spade": spade.build_spade,
    "temporal": temporal.build_temporal,
    "vae": latent.build_vae,
}


def families() -> list[str]:
    """The family names this version can build, sorted."""
    return sorted(BUILDERS)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """Build the card's family and load its weights (eval mode, on ``device``): ({module_name: module}, card)."""
    family = load_card(path)["family"]
    build = BUILDERS.get(family)
    if build is None:
        raise ModelError(f"Model '{path}' is of family '{family}', which this version does not know "
                         f"(known: {', '.join(families())}).")
    return load_family(path, family, build, device)


@dataclass
class LoadedModel:
    """A model of a family without a handle of its own: its modules (eval mode) and card."""

    modules: dict[str, torch.nn.Module]
    card: ModelCard
    path: Path


Handle = (diffusion.DiffusionModel | label_vae.LabelVAE | features.FeatureExtractor | temporal.TemporalModel | Synthesizer
          | LatentModel | LoadedModel)

# family -> opener(path, device) of its typed handle
OPENERS: dict[str, Callable[[Path, str], Handle]] = {
    "diffusion": lambda path, device: diffusion.load_diffusion(path, device),
    "feature_encoder": lambda path, device: features.load_extractor(path, device),
    "gan": lambda path, device: LatentModel(path, device),
    "label_vae": lambda path, device: label_vae.LabelVAE(path, device),
    "spade": lambda path, device: Synthesizer(path, device),
    "temporal": lambda path, device: temporal.TemporalModel.load(path),
    "vae": lambda path, device: LatentModel(path, device),
}


def open_model(name_or_path: str | Path, device: str = "cpu", overrides: dict[str, Any] | None = None) -> Handle:
    """Open a model, on ``device``: a shipped model's name, ``NAME``/``NAME.json``/``NAME.safetensors``,
    or a MONAI bundle folder (``overrides``: {config id: plain value} over its config, as
    ``monai.bundle run --id value``). Returns the family's handle (DiffusionModel for diffusion models
    and bundles, LabelVAE, FeatureExtractor, Synthesizer, TemporalModel, LatentModel for vae and gan),
    else a :class:`LoadedModel`."""
    path = resolve_model(name_or_path)
    if path.is_dir():
        return bundle.load_bundle(path, device, overrides)
    if overrides:
        raise InputError(f"Model '{path}' is not a MONAI bundle folder: config overrides do not apply to it.")
    family = load_card(path)["family"]
    if family in OPENERS:
        return OPENERS[family](path, device)
    modules, _ = load_model(path, device)
    return LoadedModel(modules, read_card(path), path)
