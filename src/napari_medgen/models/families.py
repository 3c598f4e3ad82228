"""The registry of model families: each family's builder, imported here where it is registered.

A family module defines ``build(network_config) -> nn.Module | {name: nn.Module}`` and knows
nothing of this registry; add one line to :data:`BUILDERS` per family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from . import anomaly_ae, diffusion, features, label_vae, latent, spade, temporal
from .store import Builder, load_card, load_family

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
