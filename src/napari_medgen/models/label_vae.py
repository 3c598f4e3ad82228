"""Family "label_vae": a small MONAI VarAutoEncoder on one-hot 2D label slices.

Network config (card["network"]): n_classes, slice_shape [y, x], latent_size, channels, strides,
num_res_units. Input: one-hot (n, n_classes, y, x) float; output: per-class logits of the same
shape (no sigmoid); latent: (n, latent_size). :class:`LabelVAE` wraps a loaded model for
encoding integer label slices and decoding latents back to labels (argmax).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import VarAutoEncoder

from ..device import resolve_device
from ..errors import InputError
from .store import load_family, resolve_model

FAMILY = "label_vae"
DEFAULT_NETWORK: dict[str, Any] = {"n_classes": 8, "slice_shape": [128, 128], "latent_size": 32,
                                   "channels": [16, 32, 64, 64], "strides": [2, 2, 2, 2], "num_res_units": 0}


def build_label_vae(cfg: dict[str, Any]) -> VarAutoEncoder:
    """VarAutoEncoder(2D) mapping one-hot (n, C, y, x) to logits (n, C, y, x) through a latent vector."""
    c = {**DEFAULT_NETWORK, **cfg}
    n = int(c["n_classes"])
    return VarAutoEncoder(spatial_dims=2, in_shape=(n, *[int(s) for s in c["slice_shape"]]), out_channels=n,
                          latent_size=int(c["latent_size"]), channels=[int(v) for v in c["channels"]],
                          strides=[int(v) for v in c["strides"]], num_res_units=int(c["num_res_units"]),
                          use_sigmoid=False, use_mean_at_inference=True)


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n, y, x) integer labels -> (n, n_classes, y, x) float one-hot."""
    return F.one_hot(labels.long(), n_classes).permute(0, 3, 1, 2).float()


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, y, x) label slices -> (n, *shape) by nearest-neighbour resampling (unchanged if equal)."""
    if tuple(labels.shape[-2:]) == tuple(shape):
        return labels
    t = torch.from_numpy(np.ascontiguousarray(labels)).float()[:, None]
    return F.interpolate(t, size=tuple(shape), mode="nearest-exact")[:, 0].numpy().astype(labels.dtype)


class LabelVAE:
    """A loaded label VAE: encode (n, y, x) label slices to (n, d) latents and decode them back."""

    def __init__(self, model_path: str | Path, device: str = "auto"):
        """model_path: NAME, NAME.json, NAME.safetensors or a shipped model's name."""
        self.device = resolve_device(device)
        modules, self.card = load_family(resolve_model(model_path), FAMILY, build_label_vae, self.device)
        self.net: VarAutoEncoder = modules["model"]
        net = {**DEFAULT_NETWORK, **self.card.get("network", {})}
        self.n_classes = int(net["n_classes"])
        self.slice_shape = tuple(int(s) for s in net["slice_shape"])
        self.latent_size = int(net["latent_size"])
        names = self.card.get("label_names") or {str(i): str(i) for i in range(self.n_classes)}
        self.label_names = {int(k): v for k, v in names.items()}

    def check(self, labels: np.ndarray) -> np.ndarray:
        """Return (n, y, x) label slices; InputError if any value is outside the model's classes."""
        labels = np.asarray(labels)
        bad = np.unique(labels[(labels < 0) | (labels >= self.n_classes)])
        if bad.size:
            raise InputError(f"Label values {bad[:10].tolist()} are outside this label VAE's classes "
                             f"0..{self.n_classes - 1} ({', '.join(self.label_names.values())}).")
        return labels.reshape(-1, *labels.shape[-2:])

    @torch.inference_mode()
    def encode(self, labels: np.ndarray) -> np.ndarray:
        """(n, y, x) integer labels -> (n, latent_size) latent means (slices resized to the model's shape)."""
        x = torch.from_numpy(resize_nearest(self.check(labels), self.slice_shape).astype(np.int64)).to(self.device)
        mu, _ = self.net.encode_forward(one_hot(x, self.n_classes))
        return mu.cpu().numpy()

    @torch.inference_mode()
    def decode(self, z: np.ndarray, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """(n, latent_size) latents -> (n, y, x) uint8 labels (argmax), resized to out_shape if given."""
        logits = self.net.decode_forward(torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device),
                                         use_sigmoid=False)
        labels = logits.argmax(1).to(torch.uint8).cpu().numpy()
        return resize_nearest(labels, out_shape) if out_shape else labels

    def random_latents(self, n: int, seed: int) -> np.ndarray:
        """(n, latent_size) latents drawn (seeded) from the card's fitted Gaussian "latent_prior"
        (mean, Cholesky factor of the covariance of the training latents), else from N(0, I)."""
        eps = np.random.default_rng(seed).standard_normal((n, self.latent_size))
        prior = self.card.get("latent_prior")
        if prior:
            eps = np.asarray(prior["mean"]) + eps @ np.asarray(prior["chol"]).T
        return eps.astype(np.float32)
