"""The typed handle of families "vae" and "gan" (:class:`LatentModel`), and what any of their generators does:
draw latents from the prior and decode them.

Latents z: (d,) or (B, d) float32. ``decode`` gives (B, 1 + C, H, W) float32 numpy: channel 0 the image in
[0, 1] (the card's normalised units), channels 1..C the label probabilities (see :mod:`.latent`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from . import latent
from .store import load_card, load_family, model_paths, resolve_model

FAMILIES = ("vae", "gan")


def latent_dim(model: nn.Module) -> int:
    """The latent dimension d of a vae or gan module."""
    return int(model.latent_dim)


def sample_latents(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    """n latents from the prior N(0, I), (n, d)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim(model), generator=g)


@torch.inference_mode()
def decode(model: nn.Module, z: np.ndarray | torch.Tensor, batch: int = 64) -> np.ndarray:
    """Latents (B, d) -> generated (B, 1 + C, H, W) float32 numpy."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1, latent_dim(model))
    return torch.cat([model.decode(z[i:i + batch]) for i in range(0, len(z), batch)]).numpy()


class LatentModel:
    """An opened "vae" or "gan" model, in eval mode on ``device``.

    model: the generator module (``decode``; a vae's also ``encode``, giving the posterior (mu, logvar),
    (B, d) each). card: the card's JSON object. size: the generated image's side (pixels); pixel_mm: its
    pixel size (mm, the card's ``voxel_mm``). Directions discovered for the model live next to it
    (:meth:`directions_path`).
    """

    def __init__(self, model_path: str | Path, device: str = "cpu"):
        """model_path: NAME, NAME.json, NAME.safetensors or a shipped model's name."""
        path = resolve_model(model_path)
        family = load_card(path)["family"]
        if family not in FAMILIES:
            raise ModelError(f"Model '{model_path}' is a '{family}' model; latent editing needs a 'vae' or 'gan' "
                             "model.")
        modules, card = load_family(path, family, latent.build_vae if family == "vae" else latent.build_gan, device)
        self.card: dict[str, Any] = card
        self.path = path
        self.model: nn.Module = modules.get("model") or modules["generator"]
        self.size = int(self.model.size)
        self.pixel_mm = float((self.card.get("voxel_mm") or [384.0 / self.size])[0])

    def directions_path(self) -> Path:
        """NAME.directions.json, next to the model's card."""
        return model_paths(self.path)[1].with_suffix(".directions.json")

    def sample(self, n: int, seed: int) -> np.ndarray:
        """n latents (n, d) from the prior N(0, I), seeded."""
        return sample_latents(self.model, n, seed).numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Latents (B, d) -> generated (B, 1 + C, size, size), see :func:`decode`."""
        return decode(self.model, z)
